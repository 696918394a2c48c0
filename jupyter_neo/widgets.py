"""Live views of a run for notebooks: one widget block, or plain text where widgets cannot render.

A view receives the same callbacks the CLI uses (``progress``, ``on_line``, ``on_update``) and
renders them; it decides nothing about the run. See :class:`RunWidget` for why the widget's
buttons talk to the Jupyter server rather than to the kernel (docs/jupyter.md, "The run widget").
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from typing import Any, Protocol

from jupyter_neo.metrics_chart import MetricsChart
from jupyter_neo.model import Run, RunState

TAIL_LINES = 200
SHOWN_LINES = 40
TICK_S = 0.2


class RunView(Protocol):
    """What ``%neo run`` needs from a view: the run's callbacks and its end."""

    def progress(self, message: str) -> None: ...
    def on_line(self, rank: int | None, node: int, stream: str, line: str) -> None: ...
    def on_update(self, run: Run) -> None: ...
    def notice(self, text: str) -> None: ...
    def finish(self, run: Run | None, error: str | None = None) -> None: ...


def widgets_available() -> bool:
    """True inside a kernel whose frontend can show ipywidgets (a terminal IPython cannot)."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def rank_label(state: str, code: int | None) -> str:
    """One cell of the grid: the state, or the exit code once the rank has ended."""
    return f"exit {code}" if code is not None else state


class TextRunView:
    """Plain text, as the CLI prints it: ``[node N rank R] line`` for the ranks asked for."""

    def __init__(self, shown: set[int] | None = None, quiet: bool = False) -> None:
        self.shown = shown
        self.quiet = quiet

    def progress(self, message: str) -> None:
        if not self.quiet:
            print(f"… {message}", file=sys.stderr, flush=True)

    def on_line(self, rank: int | None, node: int, stream: str, line: str) -> None:
        if self.quiet or rank is None or (self.shown is not None and rank not in self.shown):
            return
        out = sys.stderr if stream == "stderr" else sys.stdout
        print(f"[node {node} rank {rank}] {line}", file=out, flush=True)

    def on_update(self, run: Run) -> None:
        pass

    def notice(self, text: str) -> None:
        if not self.quiet:
            print(f"!! {text}", file=sys.stderr, flush=True)

    def finish(self, run: Run | None, error: str | None = None) -> None:
        if self.quiet:
            return
        if run is None:
            print(f"run not started: {error}", file=sys.stderr, flush=True)
            return
        print(summary(run), file=sys.stderr if run.exit_code else sys.stdout, flush=True)
        if run.error and run.state is not RunState.SUCCEEDED:
            print(run.error.rstrip(), file=sys.stderr, flush=True)


def summary(run: Run) -> str:
    """One line saying how a run ended."""
    shape = f"{run.nodes} node(s) x {run.nproc_per_node}"
    if run.state is RunState.SUCCEEDED:
        return f"run {run.id} succeeded on {shape} in {run.duration:.1f}s"
    if run.not_applied:
        return f"run {run.id}: the edit was not applied; the ranks run on"
    return f"run {run.id} {run.state.value} (exit {run.exit_code}) after {run.duration:.1f}s"


class RunWidget:
    """The live run block of a notebook: an ipywidgets model whose front end lives in the sidebar's
    labextension (``labextension/src/widget/``), so it can act without the kernel.

    The kernel pushes state (the run document, progress, the new-gang notice, a merged tail of
    every rank); the browser does the rest over the server extension's REST API with the page's
    credentials: a rank's log tail (``GET runs/ID/logs``, polled by the view's model) and Stop
    (``DELETE runs/ID``). That is why Stop and the rank selector work while ``%neo run`` blocks
    the cell: a kernel busy in a cell cannot read widget messages, but the Jupyter server can
    answer the browser. A Stop ends the run exactly as a kernel interrupt, the sidebar's Stop or
    ``neo stop`` do: ``stopped`` with exit code 130 and the same words (see
    :data:`jupyter_neo.runs.supervisor.STOPPED`).

    Callbacks arrive on the :class:`Client`'s loop thread: state lives in plain Python under one
    lock and reaches the traits from a ticker thread (at most 5 updates a second).
    """

    def __init__(self, shown: set[int] | None = None) -> None:
        self._lock = threading.RLock()
        self._t0 = time.monotonic()
        self._run: Run | None = None
        self._tails: dict[int, deque[str]] = {}
        self._merged: deque[str] = deque(maxlen=TAIL_LINES)
        self._status = "starting"
        self._dirty = True
        self._running = True
        self.shown = shown
        self.widget = NeoRunWidget(shown=sorted(shown) if shown is not None else [])
        self.display_handle: Any = None
        """Set by :func:`make_view`; at the end the output is redrawn, so a saved notebook's
        ``text/plain`` says how the run ended."""
        self.chart: MetricsChart | None = None
        """Training curves (issue 18), added when the first ``jupyter_neo.log`` record arrives and
        shown by the front end under the log pane (``RunPanel``'s ``extra`` slot)."""
        self._ticker = threading.Thread(target=self._tick, name="jupyter-neo-widget", daemon=True)
        self._ticker.start()

    # ------------------------------------------------------------------ callbacks (loop thread)
    def progress(self, message: str) -> None:
        with self._lock:
            self._status = message
            self._dirty = True

    def on_line(self, rank: int | None, node: int, stream: str, line: str) -> None:
        if rank is None:
            return
        with self._lock:
            self._tails.setdefault(rank, deque(maxlen=TAIL_LINES)).append(line)
            if self.shown is None or rank in self.shown:
                self._merged.append(f"[rank {rank}] {line}")
            self._dirty = True

    def on_update(self, run: Run) -> None:
        with self._lock:
            self._run = run.model_copy(deep=True)
            self._status = phase_summary(run)
            self._dirty = True

    def notice(self, text: str) -> None:
        """Say something the user must not miss (a new gang that bills until its idle release)."""
        with self._lock:
            self.widget.notice = text

    # ------------------------------------------------------------------ main thread
    def finish(self, run: Run | None, error: str | None = None) -> None:
        with self._lock:
            self._running = False
            if run is not None:
                self._run = run
                self._status = summary(run)
            if error:
                self._status = error
            self._dirty = True
            self._push()
            self.widget.finished = True
        if self.display_handle is not None:
            self.display_handle.update(self)

    def tail(self, rank: int) -> list[str]:
        with self._lock:
            return list(self._tails.get(rank, ()))

    # ------------------------------------------------------------------ pushing state
    def _tick(self) -> None:
        while True:
            time.sleep(TICK_S)
            with self._lock:
                if not self._running:
                    return
                self._push()

    def _push(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        w = self.widget
        w.status = self._status
        w.tail = list(self._merged)[-SHOWN_LINES:]
        if self._run is not None:
            # The curves travel as the chart's own widgets, not with every run document.
            w.run = {k: v for k, v in self._run.public().items() if k != "metrics"}
        if self._run is not None and self._run.metrics:
            self._chart().update(self._run.metrics)

    def _chart(self) -> MetricsChart:
        if self.chart is None:
            self.chart = MetricsChart()
            self.widget.chart = self.chart.box
        return self.chart

    def text(self) -> str:
        """The block as plain text (what a static render of the notebook shows)."""
        with self._lock:
            run = self._run
            head = summary(run) if run is not None and not self._running else self._status
            body = [*([self.widget.notice] if self.widget.notice else []), head]
            return "\n".join([*body, *list(self._merged)[-SHOWN_LINES:]])

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = self.widget._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = self.text()
        return bundle


def phase_summary(run: Run) -> str:
    """The run's state as its ranks live it: ``starting (3 of 4 ranks importing)`` or ``running``."""
    if run.done or not run.ranks:
        return run.state.value
    phases = [r.phase for r in run.ranks]
    if all(p == "running" for p in phases):
        return "running"
    waiting = [p for p in phases if p in ("starting", "importing")]
    importing = phases.count("importing")
    detail = f"{importing} of {len(phases)} ranks importing" if importing else "ranks starting"
    return f"starting ({detail})" if len(waiting) == len(phases) else f"running ({detail})"


def _widget_class() -> type:
    import ipywidgets as w
    from traitlets import Bool, Dict, Instance, List, Unicode

    from jupyter_neo import __version__

    class NeoRunWidget(w.DOMWidget):  # type: ignore[misc]
        """The synced state of a run block (front end: ``NeoRunView`` in the labextension)."""

        _model_name = Unicode("NeoRunModel").tag(sync=True)
        _model_module = Unicode("jupyter-neo").tag(sync=True)
        _model_module_version = Unicode(f"^{__version__}").tag(sync=True)
        _view_name = Unicode("NeoRunView").tag(sync=True)
        _view_module = Unicode("jupyter-neo").tag(sync=True)
        _view_module_version = Unicode(f"^{__version__}").tag(sync=True)
        run = Dict().tag(sync=True)
        status = Unicode("starting").tag(sync=True)
        notice = Unicode("").tag(sync=True)
        tail: List[str] = List().tag(sync=True)
        shown: List[int] = List().tag(sync=True)
        finished = Bool(False).tag(sync=True)
        chart = Instance(w.Widget, allow_none=True).tag(sync=True, **w.widget_serialization)
        """More panes under the log (the metrics chart), as child widgets."""

    return NeoRunWidget


def NeoRunWidget(**kwargs: Any) -> Any:  # noqa: N802 (a class made on first use: ipywidgets loads lazily)
    global _NEO_RUN_WIDGET
    if _NEO_RUN_WIDGET is None:
        _NEO_RUN_WIDGET = _widget_class()
    return _NEO_RUN_WIDGET(**kwargs)


_NEO_RUN_WIDGET: type | None = None


def make_view(widgets: bool | None, shown: set[int] | None, quiet: bool) -> RunView:
    """The widget in a widget-capable kernel (or when asked), else plain text."""
    use = widgets_available() if widgets is None else widgets
    if use and not quiet:
        from IPython.display import display

        widget = RunWidget(shown)
        widget.display_handle = display(widget, display_id=True)  # type: ignore[no-untyped-call]
        return widget
    return TextRunView(shown, quiet)


def human_bytes(n: int) -> str:
    """``62 B``, ``3.4 KiB``, ``12.0 MiB``, ``1.5 GiB``: a small edit is not "0.0 MiB"."""
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


class SyncProgress:
    """A progress bar for a workspace upload (the first sync of a large workspace).

    An ipywidgets bar in a widget frontend, else a line per 10% on stdout; ``update`` is called
    from the Client's loop thread with (bytes moved, bytes planned).
    """

    def __init__(self, widgets: bool | None = None) -> None:
        self.moved = 0
        self.planned = 0
        self._last_decile = -1
        self._pct = 0
        self._lock = threading.Lock()
        self.bar: Any = None
        if widgets_available() if widgets is None else widgets:
            import ipywidgets as w
            from IPython.display import display

            self.bar = w.IntProgress(min=0, max=100, value=0, description="sync", bar_style="info")
            self.label = w.Label("")
            # Hidden until content actually moves: a no-op sync shows nothing.
            self.box = w.HBox([self.bar, self.label], layout=w.Layout(display="none"))
            display(self.box)  # type: ignore[no-untyped-call]

    def update(self, moved: int, planned: int) -> None:
        with self._lock:
            self.moved, self.planned = moved, planned
            if planned <= 0:
                return  # nothing to move (yet): no bar, and never a full one for 0.0 / 0.0 MiB
            pct = int(100 * moved / planned)
            pct = self._pct = max(pct, self._pct)  # the plan grows as pods start: never go back
            if self.bar is not None:
                self.box.layout.display = ""
                self.bar.value = pct
                self.label.value = f"{human_bytes(moved)} / {human_bytes(planned)}"
            elif pct // 10 != self._last_decile:
                self._last_decile = pct // 10
                print(f"sync: {pct}% ({moved / 2**20:.1f} of {planned / 2**20:.1f} MiB)", flush=True)

    def done(self, summary: str) -> None:
        if self.bar is not None:
            self.box.layout.display = ""
            self.bar.value = 100
            self.bar.bar_style = "success"
            self.label.value = summary
        else:
            print(summary, flush=True)
