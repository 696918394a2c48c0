"""Entry point of the agent zip: ``serve AGENT_DIR`` (the resident agent) or ``rank ...`` (a rank)."""

import sys

from neo_agent.agent import serve


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1:3] == ["rank", "--hot"]:
        from neo_agent.hot import main as hot_main

        hot_main(sys.argv[3:])
        return
    if len(sys.argv) >= 2 and sys.argv[1] == "rank":
        from neo_agent.rank import main as rank_main

        rank_main(sys.argv[2:])
        return
    if len(sys.argv) != 3 or sys.argv[1] != "serve":
        sys.stderr.write("usage: agent.pyz serve AGENT_DIR | agent.pyz rank SCRIPT [ARGS...]\n")
        sys.exit(2)
    serve(sys.argv[2])


if __name__ == "__main__":
    main()
