"""Rendering for the terminal: tables on stdout, progress on stderr, JSON when asked."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from pydantic import ByteSize
from rich.console import Console
from rich.table import Table

from jupyter_neo.controller import terminal
from jupyter_neo.durations import format_duration
from jupyter_neo.money import money

__all__ = ["format_duration", "money"]
from jupyter_neo.model import ClusterStatus, Reservation, utcnow
from jupyter_neo.placement import Candidate


class _Console:
    """``out``/``err``: a rich Console for whoever runs the command.

    In-process that is this process's terminal; in the controller, the requesting client's
    terminal (is it a tty, how wide, its TERM/NO_COLOR), so the same command renders the same.
    """

    def __init__(self, stderr: bool) -> None:
        self.stderr = stderr
        self._local: Console | None = None

    def _get(self) -> Console:
        term = terminal.CURRENT.get()
        if term is None:
            if self._local is None:
                stream = sys.stderr if self.stderr else sys.stdout
                self._local = Console(
                    stderr=self.stderr, highlight=False, width=None if stream.isatty() else 200
                )
            return self._local
        console = term.consoles.get(self.stderr)
        if console is None:
            tty = term.is_tty(self.stderr)
            env = dict(term.env)
            if tty and term.columns:
                env.setdefault("COLUMNS", str(term.columns))
            console = Console(
                stderr=self.stderr,
                highlight=False,
                width=None if tty else 200,
                force_terminal=tty,
                _environ=env,
            )
            term.consoles[self.stderr] = console
        return console

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self._get().print(*objects, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


out = _Console(stderr=False)
err = _Console(stderr=True)


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


def datasets_table(rows: list[dict[str, Any]]) -> Table:
    """``neo datasets``: one line per location (the bucket last), size and residency on the first."""
    t = Table(box=None, header_style="bold")
    for col in ("DATASET", "SIZE", "RESIDENCY", "CLUSTER", "REGION", "WHERE", "MAY BE COPIED TO"):
        t.add_column(col)
    for d in rows:
        places = [(loc["cluster"], loc["region"], loc["where"]) for loc in d["locations"]]
        if d["bucket"]:
            places.append(("(bucket)", d["bucket"]["region"], d["bucket"]["url"]))
        for i, (cluster, region, where) in enumerate(places):
            first = i == 0
            t.add_row(
                d["name"] if first else "",
                d["size_human"] if first else "",
                (", ".join(d["residency"]) or "anywhere") if first else "",
                cluster,
                region,
                where,
                (", ".join(d["copyable_to"]) or "-") if first else "",
            )
    return t


def data_movement(cand: Candidate) -> str:
    """``--explain``'s DATA cell: present, or the copy (size from where, time, cost), or refused."""
    parts = []
    for fit in cand.data.fits:
        if fit.location is not None:
            parts.append(f"{fit.dataset.name}: present")
        elif fit.copy is not None:
            size = ByteSize(fit.copy.bytes).human_readable(decimal=True, separator=" ")
            parts.append(
                f"{fit.dataset.name}: copy {size} from {fit.copy.source}, "
                f"{format_duration(fit.copy.seconds)}, {money(fit.copy.cost)}"
            )
        else:
            parts.append(f"{fit.dataset.name}: {', '.join(fit.dataset.residency)} only")
    return "; ".join(parts)


def explain_table(cands: list[Candidate], *, with_data: bool, horizon: str) -> Table:
    """``neo reserve --explain``: every cluster, its price, free GPUs and verdict; with ``--data``
    also the data movement and the estimate placement ranks by (see docs/datasets.md)."""
    t = Table(box=None, header_style="bold")
    cols = ["CLUSTER", "REGION", "SHAPE", "$/H"]
    if with_data:
        cols += ["DATA", f"EST. {horizon}"]
    for col in (*cols, "FREE", "VERDICT"):
        t.add_column(col)
    chosen = next(
        (c for c in cands if c.rejected is None and (c.free_gpus or 0) >= c.nodes * c.gpus_per_node), None
    )
    best = "lowest estimate" if with_data else "cheapest"
    for c in cands:
        verdict = c.rejected or (f"chosen ({best} with capacity)" if c is chosen else "fits")
        ok = c.rejected is None
        cells = [c.cluster.name, c.cluster.region, f"{c.nodes}x{c.gpus_per_node}" if ok else "-"]
        cells.append(money(c.price_per_hour) if ok else "-")
        if with_data:
            cells += [data_movement(c) if c.data.fits else "-", money(c.estimate) if ok else "-"]
        cells += ["-" if c.free_gpus is None else str(c.free_gpus), verdict]
        t.add_row(*cells)
    return t


def data_cell(r: Reservation) -> str:
    """A reservation's datasets for a table: ``imagenet ro``, ``scratch rw``, ``web (absent)``."""
    return ", ".join(
        f"{u.name} {'ro' if u.read_only else 'rw'}" if u.present else f"{u.name} (absent)" for u in r.datasets
    )


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
    with_data = any(r.datasets for r in rows)
    cols = ("ID", "NAME", "CLUSTER", "SHAPE", "STATE", "PODS", "AGE", "IDLE TTL", "$/H", "COST")
    for col in (*cols, "DATA") if with_data else cols:
        t.add_column(col)
    for r in rows:
        pods = " ".join("●" if p.state == "ready" else "○" for p in r.pods)
        extra = [data_cell(r)] if with_data else []
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
            *extra,
        )
    return t
