"""``%neo`` and ``%%neo``: the ``neo`` CLI inside a notebook, parsed by exactly the CLI's parser.

``%neo run --gpus 4 --nodes 2 train.py --lr 0.1`` means what ``neo run ...`` means: the line goes
through :func:`jupyter_neo.cli.parser.build_parser` and :func:`jupyter_neo.cli.runs.run_call`, and
every other verb runs the CLI's own ``cmd_*`` function against the session's :class:`Client`. The
magics only translate: what a run does is decided by the core.

``%%neo run [flags] [-- args]`` writes the cell to ``<workspace>/.neo/cell_<hash>.py`` (content
hashed, so an unchanged cell is the same file and the same sync) and runs it as the script on every
rank. ``%neo run`` renders live with :mod:`jupyter_neo.widgets` and returns a :class:`RunResult`.

Every error is one line (IPython's ``UsageError``), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_cell_magic, magics_class

from jupyter_neo.client import Client
from jupyter_neo.errors import NeoError
from jupyter_neo.model import Run, RunState
from jupyter_neo.px_magics import VERBS as PX_VERBS
from jupyter_neo.px_magics import PxMagics
from jupyter_neo.widgets import make_view

CELL_DIR = ".neo"


def one_line(exc: NeoError) -> str:
    """An error as one line: the message, then the hint in parentheses."""
    message = " ".join(exc.message.split())
    return f"{message} (hint: {exc.hint})" if exc.hint else message


class RunResult:
    """What ``%neo run`` returns: the finished run, for notebooks to script against."""

    def __init__(self, client: Client, run: Run) -> None:
        self._client = client
        self.record = run

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def reservation(self) -> str:
        return self.record.reservation

    @property
    def state(self) -> str:
        return self.record.state.value

    @property
    def ok(self) -> bool:
        return self.record.state is RunState.SUCCEEDED

    @property
    def exit_code(self) -> int | None:
        return self.record.exit_code

    @property
    def exit_codes(self) -> dict[int, int | None]:
        """Global rank -> exit code (None for a rank stopped before it ended by itself)."""
        return {r.rank: r.exit_code for r in self.record.ranks}

    @property
    def error(self) -> str | None:
        return self.record.error

    @property
    def note(self) -> str | None:
        """How the run started: ``cold start: ...`` or ``hot: iteration N of ...`` (``--hot``)."""
        return self.record.note

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per phase: sync, launch, and for hot iterations reload, first_output, iteration."""
        return dict(self.record.timings)

    def logs(self, rank: int = 0, tail: int = 0) -> list[str]:
        """The lines rank ``rank`` printed (the last ``tail`` of them if given)."""
        return self._client.logs(self.id, rank, tail)

    def refresh(self) -> RunResult:
        self.record = self._client.get_run(self.id)
        return self

    def __repr__(self) -> str:
        return (
            f"<neo run {self.id} {self.state} exit={self.exit_code} "
            f"{self.record.nodes}x{self.record.nproc_per_node} on {self.reservation}>"
        )


@magics_class
class NeoMagics(Magics):
    """The ``%neo`` line magic and ``%%neo`` cell magic, bound to one :class:`Client` per shell."""

    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self._client: Client | None = None
        self.widgets: bool | None = None
        """None: the widget inside a widget-capable kernel, plain text elsewhere; True/False: force."""
        self.px = PxMagics(self)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client()
        return self._client

    def close(self) -> None:
        self.px.close()
        if self._client is not None:
            self._client.close()
            self._client = None

    @line_cell_magic
    def neo(self, line: str, cell: str | None = None) -> Any:
        """Run a ``neo`` command: ``%neo clusters``, ``%neo run --gpus 4 train.py``, ``%%neo run --gpus 4``."""
        from jupyter_neo.cli.parser import build_parser

        try:
            try:
                argv = shlex.split(line)
            except ValueError as exc:
                raise UsageError(f"%neo: cannot split the line: {exc}") from None
            if argv and argv[0] in PX_VERBS:
                return self.px.handle(argv, cell)
            try:
                args = build_parser("%neo").parse_args(argv)
            except SystemExit:  # --help printed the help
                return None
            if cell is not None and args.command != "run":
                raise UsageError(f"%%neo only runs cells (%%neo run [flags]); got %%neo {args.command}")
            if args.command == "run":
                return self._run(args, cell)
            if args.command == "sync" and not (args.dry_run or args.watch or args.json):
                return self._sync(args)
            args.func(self.client, args)
            return None
        except NeoError as exc:
            raise UsageError(one_line(exc)) from None

    def _sync(self, args: argparse.Namespace) -> None:
        """``%neo sync`` with a progress bar: the first sync of a large workspace takes a while."""
        from jupyter_neo.widgets import SyncProgress

        bar = SyncProgress(self.widgets)
        report = self.client.sync(args.id, args.path, on_transfer=bar.update)
        bar.done(report.summary())

    def _run(self, args: argparse.Namespace, cell: str | None) -> RunResult | None:
        from jupyter_neo.cli.runs import rank_filter, run_call, script_and_args

        if cell is not None:
            if args.module or args.cmd:
                raise UsageError("%%neo run runs the cell as the script; drop -m / --cmd")
            script = write_cell(Path(args.path), cell)
            args.args = script_and_args(args)
            args.script = script
        target, script_args, keywords = run_call(args)
        if args.reservation and not args.no_sync:
            # Sync first with a progress bar (shown only if content moves); the run's own sync is
            # then a no-op.
            from jupyter_neo.widgets import SyncProgress

            bar = SyncProgress(self.widgets and not args.json)
            self.client.sync(args.reservation, args.path, on_transfer=bar.update)
        view = make_view(self.widgets, rank_filter(args.ranks), quiet=args.json)
        seen: list[str] = []

        def on_update(run: Run) -> None:
            if not seen:
                seen.append(run.id)
            view.on_update(run)

        try:
            with widget_events(view) as pump:
                run = self.client.run(
                    target,
                    script_args,
                    on_line=view.on_line,
                    on_update=on_update,
                    progress=view.progress,
                    pump=pump,
                    **keywords,
                )
        except KeyboardInterrupt:
            # Client.run cancelled the run; the supervisor stopped every rank and recorded it.
            stopped = self.client.get_run(seen[0]) if seen else None
            view.finish(stopped, None if stopped else "interrupted before the run started")
            return RunResult(self.client, stopped) if stopped else None
        except NeoError as exc:
            view.finish(None, one_line(exc))
            raise
        view.finish(run)
        if args.json:
            import json

            print(json.dumps(run.public(), indent=2))
        return RunResult(self.client, run)


@contextlib.contextmanager
def widget_events(view: object) -> Iterator[Callable[[], None] | None]:
    """While a cell blocks on a run, let the kernel process widget messages (the Stop button).

    A kernel reads comm messages only between cells; jupyter-ui-poll processes them from inside
    a blocking cell. Outside a kernel, or for the plain-text view, there is nothing to pump.
    """
    from jupyter_neo.widgets import RunWidget

    if not isinstance(view, RunWidget):
        yield None
        return
    try:
        from jupyter_ui_poll import ui_events
    except ImportError:
        yield None
        return
    try:
        events = ui_events()
        poll = events.__enter__()
    except (AttributeError, RuntimeError, TypeError):  # not inside an ipykernel
        yield None
        return
    try:
        yield lambda: poll(10)
    finally:
        events.__exit__(None, None, None)


def write_cell(workspace: Path, code: str) -> str:
    """Write a cell's code into the workspace; returns its path relative to the workspace."""
    digest = hashlib.sha256(code.encode()).hexdigest()[:12]
    rel = Path(CELL_DIR) / f"cell_{digest}.py"
    path = workspace / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != code:
        path.write_text(code)
    return rel.as_posix()


_MAGICS: dict[int, NeoMagics] = {}


def load_ipython_extension(shell: InteractiveShell) -> None:
    """``%load_ext jupyter_neo``: register ``%neo`` / ``%%neo`` on this shell."""
    if id(shell) in _MAGICS:
        return
    magics = NeoMagics(shell)
    shell.register_magics(magics)
    _MAGICS[id(shell)] = magics


def unload_ipython_extension(shell: InteractiveShell) -> None:
    """Close the shell's client (its agent connections); the reservations stay as they are."""
    magics = _MAGICS.pop(id(shell), None)
    if magics is not None:
        magics.close()
