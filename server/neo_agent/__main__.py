"""Entry point of the agent zip: ``python3 agent.pyz serve AGENT_DIR``."""

import sys

from neo_agent.agent import serve


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] != "serve":
        sys.stderr.write("usage: agent.pyz serve AGENT_DIR\n")
        sys.exit(2)
    serve(sys.argv[2])


if __name__ == "__main__":
    main()
