"""The ``neo`` command itself: parse, run one command against a :class:`Client`, errors as one line.

It runs in the resident controller for a thin client (:mod:`jupyter_neo.cli.main`), or in-process
when no controller can serve (``NEO_CONTROLLER=off``): the same code either way, so output, exit
codes and ``--json`` documents cannot differ between the two.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from jupyter_neo.cli.parser import UsageError, parser_for
from jupyter_neo.errors import NeoError

if TYPE_CHECKING:
    from jupyter_neo.client import Client


def execute(argv: list[str], make_client: Callable[[], Client], cwd: str | None = None) -> int:
    """Run one command line; ``cwd`` is the caller's directory (relative ``--path`` is against it)."""
    try:
        args = parser_for().parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if cwd is not None and isinstance(getattr(args, "path", None), str):
        args.path = os.path.join(cwd, os.path.expanduser(args.path))
    try:
        client = make_client()
        try:
            return int(args.func(client, args))
        finally:
            client.close()
    except NeoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Exception) as exc:  # the catch-all: one line, the traceback to a file
        from jupyter_neo.errorlog import command_ended_by

        return command_ended_by(exc, argv)


def main_in_process(argv: list[str] | None = None) -> int:
    """The whole stack in this process (what ``neo`` did before the controller existed)."""
    from jupyter_neo.client import Client

    return execute(sys.argv[1:] if argv is None else argv, Client)
