"""``neo sync [ID] [--path DIR] [--dry-run] [--watch] [--json]``: mirror a folder into every pod."""

from __future__ import annotations

import argparse

from jupyter_neo.cli import output
from jupyter_neo.client import Client
from jupyter_neo.sync.report import SyncReport


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sync", help="mirror a folder into every pod (only changed bytes, atomically)")
    p.add_argument("id", nargs="?", help="reservation id or name (default: the only active one)")
    p.add_argument("--path", default=".", help="the workspace folder (default: the current one)")
    p.add_argument("--dry-run", action="store_true", help="list what would move and why; move nothing")
    p.add_argument("--watch", action="store_true", help="keep syncing on every change until Ctrl-C")
    p.add_argument("--json", action="store_true", help="JSON (one object per line with --watch)")
    p.set_defaults(func=cmd_sync)


def _show(report: SyncReport, as_json: bool, verbose: bool) -> None:
    if as_json:
        output.emit_json(report.model_dump(mode="json")) if not verbose else print(
            report.model_dump_json(), flush=True
        )
        return
    if report.dry_run:
        for change in report.changes:
            output.out.print(f"{change.why:>15}  {change.path}", markup=False)
    for path, why in sorted(report.skipped.items()):
        output.err.print(f"[yellow]skipped[/yellow] {path}: {why}", markup=True, highlight=False)
    output.err.print(report.summary(), markup=False)
    for warning in report.warnings:
        output.err.print(f"warning: {warning}", markup=False)
    for pod in report.stragglers:
        output.err.print(f"straggler: {pod.pod} took {pod.latency_ms:.0f} ms", markup=False)


def cmd_sync(client: Client, args: argparse.Namespace) -> int:
    if not args.watch:
        report = client.sync(args.id, args.path, dry_run=args.dry_run)
        _show(report, args.json, verbose=False)
        return 0
    handle = client.watch(args.id, args.path, on_report=lambda r: _show(r, args.json, verbose=True))
    if not args.json:
        output.err.print(f"watching {args.path}; Ctrl-C to stop", markup=False)
    try:
        client.wait(None)
    finally:
        handle.stop()
    return 0
