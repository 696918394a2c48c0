"""``neo`` entry point: parse, run one command against a :class:`Client`, render errors as one line.

Whatever goes wrong ends here as one line on stderr and a non-zero exit: a :class:`NeoError` as
its message and hint, anything unexpected as a one-line summary whose traceback goes to
``$NEO_HOME/logs/errors.log`` (:mod:`jupyter_neo.errorlog`). A user never sees a traceback.
"""

from __future__ import annotations

import sys

from jupyter_neo.cli.parser import UsageError, build_parser
from jupyter_neo.errors import NeoError


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("interrupted: whatever was starting or running was stopped", file=sys.stderr)
        return 130
    except Exception as exc:  # the catch-all: one line for the user, the traceback to a file
        from jupyter_neo.errorlog import report

        print(
            f"error: {report(exc, 'neo ' + ' '.join(sys.argv[1:] if argv is None else argv))}",
            file=sys.stderr,
        )
        return 1


def _main(argv: list[str] | None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
