"""``neo datasets``: where each dataset lives, its size and residency, where it may be copied."""

from __future__ import annotations

import argparse

from jupyter_neo.cli import output
from jupyter_neo.client import Client


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("datasets", help="datasets: where each lives, size, residency")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_datasets)


def cmd_datasets(client: Client, args: argparse.Namespace) -> int:
    rows = client.datasets()
    if args.json:
        output.emit_json(rows)
    elif rows:
        output.out.print(output.datasets_table(rows))
    else:
        output.err.print("no datasets configured (add a datasets: section; see docs/datasets.md)")
    return 0
