"""``neo`` entry point: parse, run one command against a :class:`Client`, render errors as one line."""

from __future__ import annotations

import sys

from jupyter_neo.cli.parser import UsageError, build_parser
from jupyter_neo.errors import NeoError


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        from jupyter_neo.client import Client

        client = Client()
        try:
            return int(args.func(client, args))
        finally:
            client.close()
    except NeoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: whatever was starting or running was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
