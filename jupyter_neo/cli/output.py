"""Rendering for the terminal: tables on stdout, progress on stderr, JSON when asked."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from jupyter_neo.controller import terminal
from jupyter_neo.durations import format_duration
from jupyter_neo.money import money

__all__ = ["format_duration", "money"]
from jupyter_neo.model import ClusterStatus, Reservation, utcnow


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
