"""Where every benchmark's numbers go and how they are summarised, so their CSVs and tables agree.

Each benchmark writes one CSV under ``bench/results/`` (gitignored): named with a time stamp when
runs are kept side by side, or a fixed name when only the latest run matters. Rows may carry
different keys (a dropped sample has fewer); the header is the union, in first-seen order.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def write_csv(name: str, rows: list[dict[str, Any]], *, stamp: bool = True) -> Path:
    """Write ``rows`` to ``results/<name>-<stamp>.csv`` (``<name>.csv`` without ``stamp``)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / (f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.csv" if stamp else f"{name}.csv")
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path


def pctl(xs: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``xs``, nearest rank: a value that was measured."""
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load() -> str:
    """The 1-, 5- and 15-minute load averages, printed beside every table (the machine is shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
