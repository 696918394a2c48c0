"""``neo daemon status|stop|logs``: listed in ``neo --help``; served by the thin client itself."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("daemon", help="the resident controller: status, stop, logs")
    p.add_argument("verb", choices=("status", "stop", "logs"))
    p.add_argument("--json", action="store_true")
    p.add_argument("--tail", type=int, default=50, help="logs: the last N lines")
    p.set_defaults(func=cmd_daemon)


def cmd_daemon(client: Any, args: argparse.Namespace) -> int:
    from jupyter_neo.controller import manage

    return manage.main([args.verb, *(["--json"] if args.json else []), "--tail", str(args.tail)])
