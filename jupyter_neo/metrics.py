"""``jupyter_neo.log(step=..., loss=...)``: training metrics for the run's live chart.

On a rank started by jupyter-neo the rank entry provides the implementation (``builtins.__neo_log__``,
see ``neo_agent.rank_api``), so a pod without this package behaves the same. Anywhere else (the
same script run with plain ``python``) it does nothing, so scripts need no ``if`` around it.
"""

from __future__ import annotations

import builtins

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (every rank, every CLI start)
if TYPE_CHECKING:
    from typing import Any


def log(step: int | None = None, *, all_ranks: bool = False, **values: Any) -> None:
    """Record named numeric values at ``step`` (rank 0 only unless ``all_ranks``)."""
    hook = getattr(builtins, "__neo_log__", None)
    if hook is not None:
        hook(step, all_ranks=all_ranks, **values)
