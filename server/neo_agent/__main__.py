"""Entry point of the agent zip.

``serve AGENT_DIR`` (the resident agent), ``rank ...`` (a rank), and for SSH hosts ``keep``,
``release``, ``pod`` (:mod:`neo_agent.keeper`) and ``leases ...`` (:mod:`neo_agent.gpu_leases`).
"""

import sys

from neo_agent.agent import serve


def main() -> None:
    args = sys.argv[1:]
    if args[:2] == ["rank", "--hot"]:
        from neo_agent.hot import main as hot_main

        hot_main(args[2:])
        return
    if args[:1] == ["rank"]:
        from neo_agent.rank import main as rank_main

        rank_main(args[1:])
        return
    if args[:1] in (["keep"], ["release"], ["pod"]):
        from neo_agent.keeper import main as keeper_main

        keeper_main(args[0], args[1:])
        return
    if args[:1] == ["leases"]:
        from neo_agent.gpu_leases import main as leases_main

        leases_main(args[1:])
        return
    if len(args) != 2 or args[0] != "serve":
        sys.stderr.write(
            "usage: agent.pyz serve AGENT_DIR | rank SCRIPT [ARGS...] | keep|release|pod|leases ...\n"
        )
        sys.exit(2)
    serve(args[1])


if __name__ == "__main__":
    main()
