"""``neo run``, ``neo runs``, ``neo logs``, ``neo stop``, ``neo check``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from jupyter_neo.cli import output
from jupyter_neo.cli.parser import add_reserve_flags, gpu_count, limit_count, request_fields
from jupyter_neo.client import Client
from jupyter_neo.errors import InvalidRequest
from jupyter_neo.model import Run
from jupyter_neo.runs.spec import RunKind, parse_env


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "run",
        help="run a script on every rank of a gang (torchrun on every node)",
        usage="%(prog)s [flags] [--] SCRIPT [ARGS...] | -m MODULE [ARGS...] | --cmd 'COMMAND'",
    )
    add_reserve_flags(p, required=False)
    p.add_argument("--reservation", "-r", help="run on this reservation (default: a ready one that fits)")
    p.add_argument("--nproc-per-node", type=gpu_count, help="ranks per node (default: the pod's GPUs)")
    p.add_argument("--env", action="append", metavar="K=V", help="environment for every rank (repeatable)")
    p.add_argument("--ranks", default="0", help="whose output to show: 0 (default), all, or 0,3")
    p.add_argument("--timeout", help="stop the run after this long (e.g. 10m)")
    p.add_argument("--no-sync", action="store_true", help="do not sync the workspace first")
    p.add_argument("--path", default=".", help="workspace directory (default: current directory)")
    p.add_argument("-m", dest="module", help="run a module (python -m) instead of a script")
    p.add_argument("--cmd", help="run a plain command once per node instead of torchrun")
    p.add_argument(
        "--hot",
        action="store_true",
        help="keep the rank processes warm; re-running re-executes the script in them (hot reload)",
    )
    p.add_argument(
        "--watch", action="store_true", help="with --hot: re-run on every saved change until Ctrl-C"
    )
    p.add_argument(
        "--detach",
        action="store_true",
        help="start the run and return; it runs on without this process (idle TTL and budget still apply)",
    )
    p.add_argument("--json", action="store_true", help="print only the run record as JSON")
    p.add_argument("script", nargs="?", help="script, relative to the workspace")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("runs", help="recent runs")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=limit_count, default=20)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("logs", help="a rank's output of a run")
    p.add_argument("run", nargs="?", help="default: the last run")
    p.add_argument("--rank", type=int, default=0)
    p.add_argument("--tail", type=int, default=0, help="only the last N lines")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("stop", help="stop a run (every rank on every node)")
    p.add_argument("run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("check", help="all-reduce bandwidth preflight across the gang")
    p.add_argument("id", nargs="?")
    p.add_argument("--sizes", default="4096,65536,1048576,16777216", help="message sizes in bytes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)


def rank_filter(text: str) -> set[int] | None:
    if text == "all":
        return None
    try:
        return {int(x) for x in text.split(",") if x.strip()}
    except ValueError:
        raise InvalidRequest(f"--ranks {text!r}: expected all or a list like 0,3") from None


def _request(args: argparse.Namespace) -> dict[str, Any]:
    return request_fields(args, without=("gpus",))


def script_and_args(args: argparse.Namespace) -> list[str]:
    """``SCRIPT ARGS...`` of a parsed ``neo run`` (a leading ``--`` dropped)."""
    rest = [a for a in ([args.script] if args.script else []) + list(args.args)]
    return rest[1:] if rest and rest[0] == "--" else rest


def run_call(args: argparse.Namespace) -> tuple[str, list[str], dict[str, Any]]:
    """What a parsed ``neo run`` means as :meth:`Client.run` arguments: (target, args, keywords).

    Shared by the CLI and ``%neo run`` so both surfaces run exactly the same thing.
    """
    rest = script_and_args(args)
    if sum(x is not None for x in (args.module, args.cmd)) + (0 if args.module or args.cmd else 1) != 1 or (
        not args.module and not args.cmd and not rest
    ):
        raise InvalidRequest(
            "say what to run", "neo run [flags] train.py [args], -m package.module, or --cmd 'cmd'"
        )
    kind: RunKind
    if args.module:
        kind, target, script_args = "module", args.module, rest
    elif args.cmd:
        kind, target, script_args = "cmd", args.cmd, rest
    else:
        kind, target, script_args = "script", rest[0], rest[1:]
    keywords = {
        "kind": kind,
        "reservation": args.reservation,
        "gpus": args.gpus,
        "nproc_per_node": args.nproc_per_node,
        "env": parse_env(args.env),
        "timeout": args.timeout,
        "workspace": args.path,
        "hot": args.hot,
        "sync": not args.no_sync,
        "detach": args.detach,
        **_request(args),
    }
    return target, script_args, keywords


def cmd_run(client: Client, args: argparse.Namespace) -> int:
    target, script_args, keywords = run_call(args)
    shown = rank_filter(args.ranks)

    def on_line(rank: int | None, node: int, stream: str, line: str) -> None:
        if args.json or rank is None or (shown is not None and rank not in shown):
            return
        target_stream = sys.stderr if stream == "stderr" else sys.stdout
        target_stream.write(f"[node {node} rank {rank}] {line}\n")
        target_stream.flush()

    if args.watch and not args.hot:
        raise InvalidRequest("--watch needs --hot", "neo run --hot --watch train.py")
    held = {r.id for r in client.status()}

    def on_update(run: Run) -> None:
        if run.reservation not in held:  # a gang reserved for this run: say what it costs, once
            held.add(run.reservation)
            output.err.print(f"[bold yellow]{new_gang_notice(client, run.reservation)}[/bold yellow]")

    options: dict[str, Any] = dict(on_line=on_line, on_update=on_update, progress=output.progress, **keywords)
    if args.watch:
        return watch_loop(client, args.path, target, script_args, options)
    run = client.run(target, script_args, **options)
    if args.json:
        output.emit_json(run.public())
    else:
        summarize(run)
    return run.exit_code or 0


def new_gang_notice(client: Client, reservation: str, command: str = "neo") -> str:
    """What a run that reserved its own gang says at once: where, what it costs, how it ends.

    Called from run callbacks, on the client's loop thread: reads the record, never awaits.
    """
    from jupyter_neo import money

    res = client.recorded(reservation)
    offer = money.offer(
        res.cluster,
        nodes=res.nodes,
        gpus_per_node=res.gpus_per_node,
        gpu_type=res.gpu_type,
        price_per_hour=res.price_per_hour,
        idle_ttl=res.idle_ttl,
    )
    return f"reserved a new gang {res.id}: {offer}; it stays warm for the next run ({command} release {res.id} stops it)"


def watch_loop(
    client: Client, path: str, target: str, script_args: list[str], options: dict[str, Any]
) -> int:
    """Run once, then again on every change to the workspace, until Ctrl-C (which stops the gang)."""
    import queue

    changes: queue.Queue[object] = queue.Queue()
    handle = None
    try:
        while True:
            run = client.run(target, script_args, **options)
            summarize(run)
            if handle is None:
                handle = client.watch(
                    run.reservation, path, on_report=lambda r: None if r.noop else changes.put(r)
                )
            output.err.print("[dim]watching for changes (Ctrl-C stops every rank)[/dim]")
            while changes.empty():
                client.wait(0.05)
            while not changes.empty():
                changes.get_nowait()
    finally:
        if handle is not None:
            handle.stop()


def summarize(run: Run) -> None:
    timing = " ".join(f"{k}={v:.2f}s" for k, v in run.timings.items() if not k.endswith("noop"))
    if run.note:
        output.err.print(f"[dim]{run.note}[/dim]")
    if run.detached and not run.done:
        output.err.print(
            f"run {run.id} started detached on {run.reservation} ({run.nodes} node(s) x {run.nproc_per_node}); "
            f"follow: neo logs {run.id} -f; stop: neo stop {run.id}"
        )
        return
    if run.state.value == "succeeded":
        output.err.print(
            f"[green]run {run.id} succeeded[/green] on {run.nodes} node(s) x {run.nproc_per_node} "
            f"in {run.duration:.1f}s ({timing})"
        )
    else:
        output.err.print(
            f"[red]run {run.id} {run.state.value}[/red] (exit {run.exit_code}) after {run.duration:.1f}s"
        )
        if run.error:
            sys.stderr.write(run.error.rstrip() + "\n")
            sys.stderr.flush()
        output.err.print(f"logs: neo logs {run.id} --rank {run.failed_rank or 0}")


def cmd_runs(client: Client, args: argparse.Namespace) -> int:
    runs = client.runs(args.limit)
    if args.json:
        output.emit_json([r.public() for r in runs])
        return 0
    from rich.table import Table

    t = Table(box=None, header_style="bold")
    for col in ("RUN", "RESERVATION", "COMMAND", "SHAPE", "STATE", "EXIT", "DURATION", "STARTED"):
        t.add_column(col, no_wrap=col == "RUN")
    for r in runs:
        t.add_row(
            r.id,
            r.reservation,
            " ".join(r.command)[:40],
            f"{r.nodes}x{r.nproc_per_node}",
            r.state.value,
            "" if r.exit_code is None else str(r.exit_code),
            f"{r.duration:.1f}s",
            output.age(r.started) + " ago",
        )
    output.out.print(t)
    return 0


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    if args.run is None:
        last = client.runs(1)
        if not last:
            raise InvalidRequest("no runs yet", "start one with neo run")
        args.run = last[0].id
    run = client.get_run(args.run)
    if run.not_applied:
        # A skipped hot iteration printed nothing: say why it did nothing.
        sys.stderr.write(run.not_applied + "\n")
    path = Path(run.log_dir) / f"rank{args.rank}.log"
    if not any(r.rank == args.rank for r in run.ranks):
        raise InvalidRequest(f"run {run.id} has no rank {args.rank}", f"ranks are 0..{len(run.ranks) - 1}")
    pos = 0
    lines = client.logs(run.id, args.rank, args.tail)
    for line in lines:
        sys.stdout.write(line + "\n")
    pos = path.stat().st_size if path.exists() else 0
    while args.follow and not client.get_run(run.id).done:
        client.wait(0.2)
        if path.exists() and path.stat().st_size > pos:
            with path.open("rb") as f:
                f.seek(pos)
                chunk = f.read()
            pos += len(chunk)
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
    return 0


def cmd_stop(client: Client, args: argparse.Namespace) -> int:
    run = client.stop_run(args.run)
    if args.json:
        output.emit_json(run.public())
    else:
        output.err.print(f"run {run.id}: {run.state.value}")
    return 0


def cmd_check(client: Client, args: argparse.Namespace) -> int:
    results: list[dict[str, Any]] = []

    def on_line(rank: int | None, node: int, stream: str, line: str) -> None:
        if rank is not None and line.startswith("NEO_CHECK "):
            results.append(json.loads(line[len("NEO_CHECK ") :]))

    run = client.run(
        "neo-check",
        kind="check",
        reservation=args.id,
        on_line=on_line,
        env={"NEO_CHECK_SIZES": args.sizes},
        progress=output.progress,
    )
    report = client.record_check(run, results)
    if args.json:
        output.emit_json({"run": run.id, "reservation": run.reservation, **report})
        return run.exit_code or 0
    from rich.table import Table

    t = Table(box=None, header_style="bold")
    for col in ("BYTES", "BACKEND", "ALGBW GB/s", "BUSBW GB/s", "SLOWEST NODE", "SLOWEST BUSBW"):
        t.add_column(col)
    for row in report["sizes"]:
        t.add_row(
            str(row["bytes"]),
            row["backend"],
            f"{row['algbw_gbps']:.3f}",
            f"{row['busbw_gbps']:.3f}",
            str(row["slowest_node"]),
            f"{row['slowest_busbw_gbps']:.3f}",
        )
    output.out.print(t)
    for flag in report["flags"]:
        output.err.print(f"[yellow]warning:[/yellow] {flag}")
    if run.exit_code:
        summarize(run)
    return run.exit_code or 0
