"""Live views of a run for notebooks: one ipywidgets block, or plain text where widgets cannot render.

A view receives the same callbacks the CLI uses (``progress``, ``on_line``, ``on_update``) and
renders them; it decides nothing about the run. The callbacks arrive on the :class:`Client`'s
event-loop thread, not the kernel's main thread, so :class:`RunWidget` keeps its state in plain
Python under one lock and writes widget traits only from under that lock, batched by a small
ticker thread (5 updates a second at most, however chatty the ranks are).

The Stop button stops the gang by raising ``KeyboardInterrupt`` in the thread waiting for the run,
which is exactly what a kernel interrupt does: :meth:`Client.run` cancels the run, and the
supervisor stops every rank on every node. A kernel delivers a widget click only when it can read
its shell channel; while ``%neo run`` blocks a cell, the kernel's interrupt (the ■ button) is the
same gesture.
"""

from __future__ import annotations

import _thread
import html
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
    return f"run {run.id} {run.state.value} (exit {run.exit_code}) after {run.duration:.1f}s"


_COLORS = {
    "starting": "#888",
    "running": "#1a73e8",
    "succeeded": "#188038",
    "failed": "#d93025",
    "stopped": "#e37400",
}


class RunWidget:
    """Status grid per node and rank, elapsed time, a rank's log tail with a selector, and Stop."""

    def __init__(self, shown_rank: int = 0, waiter: int | None = None) -> None:
        import ipywidgets as w

        self._lock = threading.RLock()
        self._waiter = waiter if waiter is not None else threading.get_ident()
        self._t0 = time.monotonic()
        self._run: Run | None = None
        self._tails: dict[int, deque[str]] = {}
        self._status = "starting"
        self._dirty = True
        self._running = True
        self._stop_requested = False
        self.display_handle: Any = None
        """Set by :func:`make_view`; the final state replaces the static (text/plain) render at the end."""
        self.header = w.HTML()
        self.grid = w.HTML()
        self.rank = w.Dropdown(
            options=[shown_rank], value=shown_rank, description="rank", layout={"width": "10em"}
        )
        self.log = w.HTML()
        self.stop_button = w.Button(
            description="Stop", button_style="danger", icon="stop", tooltip="stop every rank"
        )
        self.stop_button.on_click(lambda _b: self.request_stop())
        self.rank.observe(lambda _c: self._mark(), names="value")
        self.chart: MetricsChart | None = None
        """Training curves, added when the first ``jupyter_neo.log`` record arrives."""
        self.box = w.VBox([self.header, self.grid, w.HBox([self.rank, self.stop_button]), self.log])
        self._render()
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
            if rank == self.rank.value:
                self._dirty = True

    def on_update(self, run: Run) -> None:
        with self._lock:
            self._run = run.model_copy(deep=True)
            self._status = run.state.value
            self._dirty = True

    # ------------------------------------------------------------------ main thread
    def finish(self, run: Run | None, error: str | None = None) -> None:
        with self._lock:
            self._running = False
            if run is not None:
                self._run = run
                self._status = summary(run)
            if error:
                self._status = error
            self.stop_button.disabled = True
            self.stop_button.description = "Stopped" if self._stop_requested else "Done"
            self._dirty = True
            self._render()
        if self.display_handle is not None:
            self.display_handle.update(self)

    def request_stop(self) -> None:
        """The Stop button: interrupt the thread waiting for the run, as a kernel interrupt would."""
        with self._lock:
            if not self._running or self._stop_requested:
                return
            self._stop_requested = True
            self.stop_button.disabled = True
            self.stop_button.description = "Stopping…"
            self._status = "stopping every rank"
        if self._waiter == threading.main_thread().ident:
            _thread.interrupt_main()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def tail(self, rank: int) -> list[str]:
        with self._lock:
            return list(self._tails.get(rank, ()))

    # ------------------------------------------------------------------ rendering
    def _mark(self) -> None:
        with self._lock:
            self._dirty = True

    def _tick(self) -> None:
        while True:
            time.sleep(TICK_S)
            with self._lock:
                if not self._running:
                    return
                self._render()

    def _render(self) -> None:
        run = self._run
        elapsed = run.duration if run is not None and not self._running else time.monotonic() - self._t0
        title = f"<b>{html.escape(run.id)}</b>" if run else "<b>neo run</b>"
        self.header.value = (
            f"{title} &middot; {html.escape(self._status)} &middot; elapsed {elapsed:.1f}s"
            + (f" &middot; reservation {html.escape(run.reservation)}" if run else "")
        )
        if not self._dirty:
            return
        self._dirty = False
        if run is not None:
            ranks = [r.rank for r in run.ranks]
            if ranks and list(self.rank.options) != ranks:
                current = self.rank.value if self.rank.value in ranks else ranks[0]
                self.rank.options = ranks
                self.rank.value = current
            self.grid.value = self._grid(run)
            if run.metrics:
                self._chart().update(run.metrics)
        lines = list(self._tails.get(self.rank.value, ()))[-SHOWN_LINES:]
        self.log.value = (
            '<pre style="max-height:18em;overflow:auto;margin:0">'
            + html.escape("\n".join(lines) or "(no output yet)")
            + "</pre>"
        )

    def _chart(self) -> MetricsChart:
        if self.chart is None:
            self.chart = MetricsChart()
            self.box.children = (*self.box.children, self.chart.box)
        return self.chart

    @staticmethod
    def _grid(run: Run) -> str:
        rows = []
        for node in range(run.nodes):
            cells = []
            for r in (r for r in run.ranks if r.node == node):
                color = _COLORS.get(r.state.value, "#888")
                label = html.escape(rank_label(r.state.value, r.exit_code))
                cells.append(f'<td style="padding:2px 8px;color:{color}">rank {r.rank}: {label}</td>')
            rows.append(f'<tr><td style="padding:2px 8px"><b>node {node}</b></td>{"".join(cells)}</tr>')
        return f"<table>{''.join(rows)}</table>"

    def text(self) -> str:
        """The block as plain text (what a static render of the notebook shows)."""
        with self._lock:
            run = self._run
            head = summary(run) if run is not None and not self._running else self._status
            lines = list(self._tails.get(self.rank.value, ()))[-SHOWN_LINES:]
            return "\n".join([head, *(f"[rank {self.rank.value}] {line}" for line in lines)])

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = self.box._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = self.text()
        return bundle


def make_view(widgets: bool | None, shown: set[int] | None, quiet: bool) -> RunView:
    """The widget in a widget-capable kernel (or when asked), else plain text."""
    use = widgets_available() if widgets is None else widgets
    if use and not quiet:
        from IPython.display import display

        first = min(shown) if shown else 0
        widget = RunWidget(shown_rank=first)
        widget.display_handle = display(widget, display_id=True)  # type: ignore[no-untyped-call]
        return widget
    return TextRunView(shown, quiet)


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
            pct = int(100 * moved / planned) if planned else 100
            pct = self._pct = max(pct, self._pct)  # the plan grows as pods start: never go back
            if self.bar is not None:
                self.box.layout.display = ""
                self.bar.value = pct
                self.label.value = f"{moved / 2**20:.1f} / {planned / 2**20:.1f} MiB"
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
