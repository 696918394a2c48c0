"""What user code on a rank calls without jupyter_neo installed in the pod: ``keep`` and ``log``.

A pod needs no copy of the controller's package: the rank entry (``rank.py`` / ``hot.py``) puts
these functions on ``builtins`` where the real ``jupyter_neo.keep`` / ``jupyter_neo.log`` find them,
and, when ``import jupyter_neo`` fails in the pod, a small stand-in module with the same names.
``log`` prints one ``NEO_METRIC {json}`` line on the rank's real stdout; the controller turns those
lines into the run's metrics (``runs/logs.py``), so they never reach a log file or a screen.
"""

import builtins
import json
import math
import os
import sys
import time
import types
from typing import Any, Callable, Dict, Optional

METRIC_MARKER = "NEO_METRIC "


def _number(value: Any) -> Optional[float]:
    item = getattr(value, "item", None)  # a 0-d tensor or numpy scalar
    if callable(item):
        value = item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def log(step: Optional[int] = None, *, all_ranks: bool = False, **values: Any) -> None:
    """Record training metrics for the run's live chart: ``log(step=s, loss=l, lr=...)``.

    Rank 0 reports by default; ``all_ranks=True`` makes every rank report (the chart then shows
    the mean and a min/max band per step). Non-finite and non-numeric values are dropped.
    """
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0 and not all_ranks:
        return
    record: Dict[str, Any] = {"time": round(time.time(), 3)}
    if step is not None:
        record["step"] = int(step)
    for name, value in values.items():
        number = _number(value)
        if number is not None:
            record[name] = number
    out = sys.__stdout__ or sys.stdout
    sys.stdout.flush()
    out.write(METRIC_MARKER + json.dumps(record) + "\n")
    out.flush()


def install() -> Dict[str, Any]:
    """Make ``from jupyter_neo import keep, log`` work on this rank; returns the keep registry."""
    kept: Dict[str, Any] = {}
    setattr(builtins, "__neo_keep__", kept)  # noqa: B010 (names no user code uses)
    setattr(builtins, "__neo_log__", log)  # noqa: B010
    try:
        import jupyter_neo  # noqa: F401 (the real package reads the builtins above)
    except ImportError:
        stub = types.ModuleType("jupyter_neo")

        def keep(name: str, factory: Callable[[], Any]) -> Any:
            if name not in kept:
                kept[name] = factory()
            return kept[name]

        stub.keep = keep  # type: ignore[attr-defined]
        stub.log = log  # type: ignore[attr-defined]
        sys.modules["jupyter_neo"] = stub
    return kept
