"""``neo clusters``, ``neo reserve``, ``neo status``, ``neo extend``, ``neo release``, ``neo ping``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jupyter_neo.cli import output
from jupyter_neo.cli.parser import add_reserve_flags, positive_float, request_fields
from jupyter_neo.client import Client
from jupyter_neo.durations import format_duration
from jupyter_neo.errors import InvalidRequest


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("clusters", help="clusters, free GPUs and prices")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_clusters)

    p = sub.add_parser("reserve", help="reserve N GPUs as one gang (all or nothing)")
    add_reserve_flags(p)
    p.add_argument(
        "--explain", action="store_true", help="show every candidate cluster and why; reserve nothing"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the Kubernetes objects it would create; create nothing"
    )
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="--dry-run format")
    p.add_argument(
        "--gang", help="--dry-run: gang mechanism (kueue, volcano, coscheduling, none); skips discovery"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_reserve)

    p = sub.add_parser("status", help="active reservations (or one)")
    p.add_argument("id", nargs="?")
    p.add_argument("--all", action="store_true", help="include released reservations")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("extend", help="change a live reservation's idle TTL or budget")
    p.add_argument("id")
    p.add_argument("--idle-ttl", help="new idle TTL (30m, 2h, none)")
    p.add_argument("--budget", type=positive_float, help="new USD cap for the reservation")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_extend)

    p = sub.add_parser("release", help="give a reservation back")
    p.add_argument("id", nargs="?", help="default: the only active reservation")
    p.add_argument("--all", action="store_true", help="release every active reservation")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("cost", help="spend by cluster and reservation (from the ledger)")
    p.add_argument("--since", default="30d", help="window, e.g. 7d, 12h (default 30d)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cost)

    p = sub.add_parser("ping", help="round-trip time to every pod's agent")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ping)


def _request_fields(args: argparse.Namespace) -> dict[str, Any]:
    return request_fields(args)


def cmd_clusters(client: Client, args: argparse.Namespace) -> int:
    rows = client.clusters()
    if args.json:
        output.emit_json([c.model_dump(mode="json") for c in rows])
    else:
        output.out.print(output.clusters_table(rows))
        for row in rows:
            if row.hosts:
                output.out.print()
                output.out.print(output.hosts_table(row))
    return 0


def cmd_reserve(client: Client, args: argparse.Namespace) -> int:
    if args.dry_run:
        sys.stdout.write(
            client.dry_run(args.gang, "json" if args.json else args.output, **_request_fields(args))
        )
        return 0
    if args.explain:
        cands = client.explain(**_request_fields(args))
        if args.json:
            output.emit_json([c.public() for c in cands])
        else:
            horizon = client.config.transfer.horizon
            label = horizon if isinstance(horizon, str) else output.format_duration(horizon)
            with_data = bool(_request_fields(args).get("data"))
            output.out.print(output.explain_table(cands, with_data=with_data, horizon=label))
        return 0
    res = client.reserve(**_request_fields(args), progress=output.progress)
    if args.json:
        output.emit_json(res.public())
    else:
        output.err.print(
            f"[green]ready[/green] {res.id}: {res.nodes} node(s) x {res.gpus_per_node} "
            f"{res.gpu_type} on {res.cluster} at {output.money(res.price_per_hour)}/h"
        )
        output.out.print(res.id)
    return 0


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    rows = client.status(args.id) if args.id else (client.history() if args.all else client.status())
    if args.json:
        output.emit_json(rows[0].public() if args.id else [r.public() for r in rows])
    elif rows:
        output.out.print(output.reservations_table(rows))
        for r in rows:
            if r.active and r.budget_used is not None and r.budget_used >= 0.8:
                output.err.print(
                    f"[yellow]warning:[/yellow] {r.id} has used {r.budget_used:.0%} of its "
                    f"{output.money(r.budget or 0)} budget; it is released at 100%"
                )
    else:
        output.err.print("no active reservations (make one with: neo reserve --gpus N)")
    return 0


def cmd_extend(client: Client, args: argparse.Namespace) -> int:
    if args.idle_ttl is None and args.budget is None:
        raise InvalidRequest("say what to change", "neo extend ID --idle-ttl 2h and/or --budget 50")
    res = client.extend(
        args.id,
        idle_ttl="keep" if args.idle_ttl is None else args.idle_ttl,
        budget="keep" if args.budget is None else args.budget,
    )
    if args.json:
        output.emit_json(res.public())
    else:
        budget = "none" if res.budget is None else output.money(res.budget)
        output.err.print(f"{res.id}: idle TTL {format_duration(res.idle_ttl)}, budget {budget}")
    return 0


def cmd_release(client: Client, args: argparse.Namespace) -> int:
    if args.all and args.id:
        raise InvalidRequest("say which reservation to release", "neo release ID, or neo release --all")
    if not args.all and not args.id:
        live = client.status()
        if len(live) != 1:  # with exactly one, there is nothing to say
            held = f"{len(live)} are active" if live else "none is active"
            raise InvalidRequest(
                f"say which reservation to release ({held})", "neo release ID, or neo release --all"
            )
        args.id = live[0].id
    released = client.release_all() if args.all else [client.release(args.id)]
    if args.json:
        output.emit_json([r.public() for r in released])
    else:
        for r in released:
            output.err.print(f"released {r.id} ({output.money(r.cost)} over {output.age(r.created)})")
        if not released:
            output.err.print("nothing to release")
    return 0


def cmd_ping(client: Client, args: argparse.Namespace) -> int:
    res = client.status(args.id)[0]
    rtts = client.ping(args.id)
    if args.json:
        output.emit_json(
            [{"pod": p.name, "rtt_ms": round(t * 1000, 3)} for p, t in zip(res.pods, rtts, strict=True)]
        )
    else:
        for p, t in zip(res.pods, rtts, strict=True):
            output.out.print(f"{p.name}  {t * 1000:.2f} ms")
    return 0


def cmd_cost(client: Client, args: argparse.Namespace) -> int:
    from jupyter_neo.durations import parse_duration

    window = parse_duration(args.since)
    if window is None:
        raise InvalidRequest("--since needs a duration such as 7d")
    report = client.cost(since_seconds=window)
    if args.json:
        output.emit_json(report)
        return 0
    from rich.table import Table

    t = Table(box=None, header_style="bold", title=f"spend over the last {args.since}")
    for col in ("CLUSTER", "RESERVATIONS", "GPU-HOURS", "COST"):
        t.add_column(col)
    for name, row in report["clusters"].items():
        t.add_row(name, str(row["reservations"]), f"{row['gpu_hours']:.2f}", output.money(row["cost"]))
    t.add_row("[bold]total[/bold]", "", "", f"[bold]{output.money(report['total'])}[/bold]")
    output.out.print(t)
    r = Table(box=None, header_style="bold")
    for col in ("RESERVATION", "CLUSTER", "GPUS", "$/H", "HELD", "COST"):
        r.add_column(col, no_wrap=True)
    for row in report["reservations"]:
        r.add_row(
            row["reservation"],
            row["cluster"],
            str(row["gpus"]),
            output.money(row["price_per_hour"]),
            output.format_duration(row["hours"] * 3600) + ("" if row["ended"] else " (held)"),
            output.money(row["cost"]),
        )
    output.out.print(r)
    return 0
