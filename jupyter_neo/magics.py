"""``%neo`` and ``%%neo``: the ``neo`` CLI inside a notebook, parsed by exactly the CLI's parser.

``%neo run --gpus 4 --nodes 2 train.py --lr 0.1`` means what ``neo run ...`` means: the line goes
through :func:`jupyter_neo.cli.parser.build_parser` and :func:`jupyter_neo.cli.runs.run_call`.
``run`` and ``sync`` are verbs of the resident controller (:mod:`jupyter_neo.kernel_surface`),
whose events drive the widget; every other verb is the CLI's own ``cmd_*`` function, run by the
controller on the same command line. The magics only translate: what a run does is decided by
the core, in the controller the terminal and the Jupyter server share.

``%%neo run [flags] [-- args]`` writes the cell to ``<workspace>/.neo/cell_<hash>.py`` (content
hashed, so an unchanged cell is the same file and the same sync) and runs it as the script on every
rank. ``%neo run`` renders live with :mod:`jupyter_neo.widgets` and returns a :class:`RunResult`.

Every error is one line (IPython's ``UsageError``), never a traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_cell_magic, magics_class

from jupyter_neo.client import Client
from jupyter_neo.controller.api import run_from
from jupyter_neo.controller.client import Refused
from jupyter_neo.errors import NeoError
from jupyter_neo.kernel_surface import KernelSurface
from jupyter_neo.model import Run, RunState
from jupyter_neo.px_magics import VERBS as PX_VERBS
from jupyter_neo.px_magics import PxMagics
from jupyter_neo.widgets import make_view

CELL_DIR = ".neo"


NEO_COMMAND = re.compile(r"(?<![\w%/-])neo (?=[a-z])")


def notebook_words(text: str) -> str:
    """Commands as a notebook user types them: ``neo release ID`` -> ``%neo release ID``."""
    return NEO_COMMAND.sub("%neo ", text)


def one_line(exc: NeoError) -> str:
    """An error as one line: the message, then the hint in parentheses, commands in ``%neo`` form."""
    message = " ".join(exc.message.split())
    return notebook_words(f"{message} (hint: {exc.hint})" if exc.hint else message)


def cell_label(code: str, count: int | None) -> str:
    """A readable name for a cell's run: ``cell [3]: train(model)`` (its first line of code)."""
    first = next(
        (ln.strip() for ln in code.splitlines() if ln.strip() and not ln.strip().startswith("#")), ""
    )
    first = first if len(first) <= 40 else first[:39] + "\u2026"
    where = f"cell [{count}]" if count else "cell"
    return f"{where}: {first}" if first else where


class RunResult:
    """What ``%neo run`` returns: the finished run, for notebooks to script against."""

    def __init__(self, surface: KernelSurface, run: Run) -> None:
        self._client = surface
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

    def stop(self) -> RunResult:
        """Stop the run on every rank (what the widget's Stop and ``%neo stop`` do)."""
        self.record = self._client.stop_run(self.id)
        return self

    def release(self) -> None:
        """Give the run's gang back now, rather than at its idle TTL (``%neo release ID``)."""
        self._client.release(self.reservation)

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
        self.surface = KernelSurface()
        self.widgets: bool | None = None
        """None: the widget inside a widget-capable kernel, plain text elsewhere; True/False: force."""
        self.px = PxMagics(self)

    @property
    def client(self) -> Client:
        """The kernel's in-process client (the px ranks; every verb with ``NEO_CONTROLLER=off``)."""
        return self.surface.client

    def close(self) -> None:
        self.px.close()
        self.surface.close()

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
            self._command(argv, args)
            return None
        except NeoError as exc:
            raise UsageError(one_line(exc)) from None
        except Refused as exc:
            raise UsageError(f"%neo: {exc}") from None

    def _command(self, argv: list[str], args: argparse.Namespace) -> None:
        """A verb the CLI implements, run where the surface runs verbs; its error as one line."""
        code, err = self.surface.command(argv, lambda client: args.func(client, args))
        message = next((i for i, ln in enumerate(err.splitlines()) if ln.startswith("error: ")), None)
        if message is None:
            sys.stderr.write(err)
            if code:
                raise UsageError(f"%neo {argv[0]} failed (exit {code})")
            return
        lines = err.splitlines()
        sys.stderr.write("".join(f"{ln}\n" for ln in lines[:message]))
        text = " ".join(ln.strip() for ln in lines[message:])[len("error: ") :]
        head, _, hint = text.partition(" hint: ")
        raise UsageError(notebook_words(f"{head} (hint: {hint})" if hint else head))

    def _sync(self, args: argparse.Namespace) -> None:
        """``%neo sync`` with a progress bar: the first sync of a large workspace takes a while."""
        from jupyter_neo.widgets import SyncProgress

        bar = SyncProgress(self.widgets)
        done = self.surface.call(
            "sync", {"ref": args.id, "root": os.path.abspath(args.path)}, _transfers(bar)
        )
        bar.done(done["summary"])

    def _run(self, args: argparse.Namespace, cell: str | None) -> RunResult | None:
        from jupyter_neo.cli.runs import rank_filter, run_call, script_and_args

        label = None
        if cell is not None:
            if args.module or args.cmd:
                raise UsageError("%%neo run runs the cell as the script; drop -m / --cmd")
            script = write_cell(Path(args.path), cell)
            args.args = script_and_args(args)
            args.script = script
            label = cell_label(cell, getattr(self.shell, "execution_count", None))
        target, script_args, keywords = run_call(args)
        keywords["workspace"] = os.path.abspath(keywords["workspace"])
        if args.reservation and not args.no_sync:
            # Sync first with a progress bar (shown only if content moves); the run's own sync is
            # then a no-op.
            from jupyter_neo.widgets import SyncProgress

            bar = SyncProgress(self.widgets and not args.json)
            self.surface.call(
                "sync", {"ref": args.reservation, "root": keywords["workspace"]}, _transfers(bar)
            )
        view = make_view(self.widgets, rank_filter(args.ranks), quiet=args.json)
        seen: list[str] = []

        def on_event(event: dict[str, Any]) -> None:
            what = event.get("event")
            if what == "line":
                view.on_line(event["rank"], event["node"], event["stream"], event["line"])
            elif what == "update":
                run = run_from(event["run"])
                if not seen:
                    seen.append(run.id)
                view.on_update(run)
            elif what == "progress":
                view.progress(str(event["message"]))
            elif what == "notice":  # no silent spending: a new gang bills until its idle release
                view.notice(str(event["text"]))

        params = {"target": target, "args": script_args, "label": label, "command": "%neo", **keywords}
        try:
            run = run_from(self.surface.call("run", params, on_event))
        except KeyboardInterrupt:
            # The run was cancelled: its supervisor stopped every rank and recorded it.
            stopped = self.surface.get_run(seen[0]) if seen else None
            view.finish(stopped, None if stopped else "interrupted before the run started")
            return RunResult(self.surface, stopped) if stopped else None
        except NeoError as exc:
            view.finish(None, one_line(exc))
            raise
        view.finish(run)
        if args.json:
            import json

            print(json.dumps(run.public(), indent=2))
        return RunResult(self.surface, run)


def _transfers(bar: Any) -> Any:
    """Sync events -> a progress bar's ``update(moved, planned)``."""

    def on_event(event: dict[str, Any]) -> None:
        if event.get("event") == "transfer":
            bar.update(int(event["moved"]), int(event["planned"]))

    return on_event


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
