"""One argument parser for the ``neo`` CLI and the ``%neo`` magics.

Each command module exposes ``register(subparsers)``; the parser raises :class:`UsageError`
instead of exiting, so a notebook gets a one-line message, not a SystemExit.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any, NoReturn

from jupyter_neo.errors import NeoError
from jupyter_neo.model import REQUEST_FIELDS


class UsageError(NeoError):
    """Bad command-line arguments."""

    code = "usage"


class NeoArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", f"see: {self.prog} --help")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise SystemExit(status) if not message else UsageError(message.strip())


def gpu_count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of GPUs (e.g. --gpus 16)") from None


def limit_count(text: str) -> int:
    """``--limit N``: a whole number in the range the store can answer (see model.parse_limit)."""
    from jupyter_neo.model import parse_limit

    try:
        return parse_limit(text)
    except NeoError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def positive_float(text: str) -> float:
    """A USD amount flag (``--budget``, ``--max-price``) as a number; the money layer
    (:data:`jupyter_neo.money.USD`) then refuses ``nan``, ``inf``, 0 and absurd sums for every surface."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def request_fields(args: argparse.Namespace, *, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """The gang request a parsed command line carries (``--gpus``, ``--nodes``, ...)."""
    return {k: getattr(args, k) for k in REQUEST_FIELDS if k not in without and hasattr(args, k)}


def add_reserve_flags(p: argparse.ArgumentParser, required: bool = True) -> None:
    """The gang-request flags, shared by ``reserve`` and ``run``."""
    g = p.add_argument_group("gang request")
    g.add_argument("--gpus", type=gpu_count, required=required, help="total GPUs, all or nothing")
    g.add_argument("--nodes", type=gpu_count, help="number of nodes (default: fewest that hold --gpus)")
    g.add_argument("--gpu-type", help="e.g. H100, H200 (default: any)")
    g.add_argument("--cluster", help="cluster name (default: the cheapest that fits)")
    g.add_argument("--region", help="only clusters in this region")
    g.add_argument(
        "--residency", action="append", help="data-residency tag the cluster must carry (repeatable)"
    )
    g.add_argument("--max-price", type=positive_float, help="max USD per GPU-hour")
    g.add_argument("--idle-ttl", default="default", help="release after this long idle (30m, 2h, none)")
    g.add_argument("--budget", type=positive_float, help="USD cap for the reservation")
    g.add_argument("--name", help="a name to refer to the reservation by")
    g.add_argument(
        "--data",
        action="append",
        metavar="NAME[:rw]",
        help="a dataset the gang needs (repeatable): placed where it is or may be copied, "
        "mounted read-only at /data/NAME unless :rw (neo datasets)",
    )


def build_parser(prog: str = "neo") -> NeoArgumentParser:
    from jupyter_neo.cli import commands

    parser = NeoArgumentParser(
        prog=prog, description="Reserve GPU gangs, sync your workspace, run across them."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=NeoArgumentParser)
    for module in commands.MODULES:
        module.register(sub)
    return parser


_PARSERS = threading.local()


def parser_for(prog: str = "neo") -> NeoArgumentParser:
    """A parser built once per thread and reused.

    Building the parser (every command's subparser) costs a few milliseconds, paid by every
    command the resident controller runs; parsing does not change a parser, but argparse does not
    promise that it is thread-safe, so each of the controller's worker threads keeps its own.
    """
    cache: dict[str, NeoArgumentParser] | None = getattr(_PARSERS, "by_prog", None)
    if cache is None:
        cache = _PARSERS.by_prog = {}
    parser = cache.get(prog)
    if parser is None:
        parser = cache[prog] = build_parser(prog)
    return parser
