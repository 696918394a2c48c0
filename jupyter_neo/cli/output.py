"""Rendering for the terminal: tables on stdout, progress on stderr, JSON when asked."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from jupyter_neo.durations import format_duration
from jupyter_neo.money import money

__all__ = ["format_duration", "money"]
from jupyter_neo.model import ClusterStatus, Reservation, utcnow

out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    sys.stdout.flush()


def progress(message: str) -> None:
    err.print(f"[dim]…[/dim] {message}")


def age(ts: datetime) -> str:
    return format_duration((utcnow() - ts).total_seconds())


def clusters_table(rows: list[ClusterStatus]) -> Table:
    t = Table(box=None, header_style="bold")
    seen = any(c.allocatable_gpus is not None for c in rows)
    cols = ["CLUSTER", "BACKEND", "REGION", "GPU", "FREE/TOTAL", "$/GPU-H", "NODES"]
    for col in [*cols, "REQUESTED/ALLOCATABLE"] if seen else cols:
        t.add_column(col)
    for c in rows:
        cells = [
            c.name,
            c.backend,
            c.region,
            c.gpu_type,
            f"{c.free_gpus}/{c.total_gpus}",
            money(c.price_per_gpu_hour),
            f"{c.nodes}x{c.gpus_per_node}",
        ]
        if seen:
            cells.append("-" if c.allocatable_gpus is None else f"{c.requested_gpus}/{c.allocatable_gpus}")
        t.add_row(*cells)
    return t


def hosts_table(cluster: ClusterStatus) -> Table:
    """An SSH fleet's hosts: GPUs, free, and who holds the rest (from the hosts' lease files)."""
    t = Table(box=None, header_style="bold", title=f"{cluster.name} hosts", title_justify="left")
    for col in ("HOST", "HOSTNAME", "GPU", "FREE/TOTAL", "HELD BY"):
        t.add_column(col)
    for h in cluster.hosts or []:
        held = ", ".join(
            f"{x.owner} {','.join(map(str, x.gpus))} ({x.reservation}, {format_duration(x.expires_in)})"
            for x in h.held
        )
        if h.problem:
            t.add_row(h.name, h.hostname or "-", "-", "-", f"[red]{h.problem}[/red]")
        else:
            t.add_row(h.name, h.hostname or "-", h.gpu_model or cluster.gpu_type, f"{h.free}/{h.gpus}", held)
    return t


def reservations_table(rows: list[Reservation]) -> Table:
    t = Table(box=None, header_style="bold")
    for col in ("ID", "NAME", "CLUSTER", "SHAPE", "STATE", "PODS", "AGE", "IDLE TTL", "$/H", "COST"):
        t.add_column(col)
    for r in rows:
        pods = " ".join("●" if p.state == "ready" else "○" for p in r.pods)
        t.add_row(
            r.id,
            r.name or "",
            r.cluster,
            f"{r.nodes}x{r.gpus_per_node} {r.gpu_type}",
            r.state.value,
            pods,
            age(r.created),
            format_duration(r.idle_ttl),
            money(r.price_per_hour),
            money(r.cost),
        )
    return t
