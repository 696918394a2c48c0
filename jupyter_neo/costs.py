"""``neo cost``'s report: ledger rows summed per cluster and listed per reservation.

A pure function of the ledger so that every surface (the CLI through :meth:`Core.cost`, REST, a
notebook) offers the same figures without copying the arithmetic; the ledger itself (what each
reservation cost, surviving restarts) is the store's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jupyter_neo.store import LedgerEntry


def spend_report(entries: Sequence[LedgerEntry], since_seconds: float, now: float) -> dict[str, Any]:
    """Spend over the ``since_seconds`` before ``now``: total, per cluster (reservations, GPU-hours
    held within the window, cost) and per reservation."""
    window_start = now - since_seconds
    clusters: dict[str, dict[str, float]] = {}
    rows = []
    for e in entries:
        end = e.end or now
        hours = max(0.0, end - max(e.start, window_start)) / 3600.0
        c = clusters.setdefault(e.cluster, {"reservations": 0, "gpu_hours": 0.0, "cost": 0.0})
        c["reservations"] += 1
        c["gpu_hours"] += hours * e.gpus
        c["cost"] += e.cost
        rows.append(
            {
                "reservation": e.reservation,
                "cluster": e.cluster,
                "owner": e.owner,
                "gpus": e.gpus,
                "price_per_hour": e.price_per_hour,
                "hours": hours,
                "cost": e.cost,
                "ended": e.end is not None,
            }
        )
    return {
        "since_seconds": since_seconds,
        "total": sum(e.cost for e in entries),
        "clusters": clusters,
        "reservations": rows,
    }
