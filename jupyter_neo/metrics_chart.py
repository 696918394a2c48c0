"""Live training curves for the run widget, drawn with bqplot (ipywidgets + d3).

The ranks call ``jupyter_neo.log(step=s, loss=l)``; the run record collects the records
(``Run.metrics``). :func:`series` turns them into one curve per metric: the mean over the ranks
that reported at each step, with the min/max band when several ranks report (``all_ranks=True``).
:class:`MetricsChart` shows each metric in its own small figure and updates the marks in place,
so a notebook redraws only the data, not the widget.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

RESERVED = {"rank", "step", "time"}


@dataclass
class Series:
    """One metric over steps: mean, and the min/max over ranks at each step."""

    name: str
    steps: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)

    @property
    def banded(self) -> bool:
        return any(lo != hi for lo, hi in zip(self.low, self.high, strict=True))


def series(records: Iterable[Mapping[str, Any]]) -> dict[str, Series]:
    """Records -> one :class:`Series` per metric name, steps in order.

    A record without ``step`` takes its position among the records of its rank as the step.
    """
    by_metric: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    counters: dict[Any, int] = defaultdict(int)
    for record in records:
        rank = record.get("rank", 0)
        step = record.get("step")
        if not isinstance(step, (int, float)):
            step = counters[rank]
        counters[rank] += 1
        for name, value in record.items():
            if name not in RESERVED and isinstance(value, (int, float)) and not isinstance(value, bool):
                by_metric[name][float(step)].append(float(value))
    out: dict[str, Series] = {}
    for name, points in by_metric.items():
        s = Series(name)
        for step in sorted(points):
            values = points[step]
            s.steps.append(step)
            s.mean.append(sum(values) / len(values))
            s.low.append(min(values))
            s.high.append(max(values))
        out[name] = s
    return out


class MetricsChart:
    """A row of bqplot figures, one per metric, updated in place from ``Run.metrics``."""

    def __init__(self) -> None:
        import ipywidgets as w

        self.box = w.HBox(layout={"flex_flow": "row wrap"})
        self._marks: dict[str, tuple[Any, Any]] = {}

    def update(self, records: Iterable[Mapping[str, Any]]) -> None:
        for name, s in series(records).items():
            if name not in self._marks:
                self._add(name)
            line, band = self._marks[name]
            with line.hold_sync(), band.hold_sync():
                line.x, line.y = s.steps, s.mean
                if s.banded:
                    band.x, band.y = s.steps, [s.low, s.high]

    def _add(self, name: str) -> None:
        import bqplot as bq

        x, y = bq.LinearScale(), bq.LinearScale()
        band = bq.Lines(
            x=[],
            y=[[], []],
            scales={"x": x, "y": y},
            fill="between",
            fill_opacities=[0.2],
            colors=["#9ecae1"],
            stroke_width=0,
        )
        line = bq.Lines(x=[], y=[], scales={"x": x, "y": y}, colors=["#1f77b4"])
        figure = bq.Figure(
            marks=[band, line],
            axes=[bq.Axis(scale=x, label="step"), bq.Axis(scale=y, orientation="vertical", label=name)],
            title=name,
            layout={"width": "320px", "height": "220px"},
            fig_margin={"top": 30, "bottom": 40, "left": 50, "right": 10},
        )
        self._marks[name] = (line, band)
        self.box.children = (*self.box.children, figure)

    @property
    def names(self) -> list[str]:
        return list(self._marks)
