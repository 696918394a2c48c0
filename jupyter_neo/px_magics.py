"""``%%neo px``, ``%neo pull`` / ``push``: notebook cells on every rank of a warm gang.

```
%neo px --start [-r RES] [--nproc-per-node N] [--gpus N --nodes N]   # warm workers, process group up
%%neo px [-r RES] [--ranks all|0,3|node:1]                           # the cell on every selected rank
%neo px [--ranks ...] CODE                                           # one statement
%neo px --auto on|off                                                # every following cell goes to the ranks
%neo px --restart                                                    # workers restarted cold
x = %neo pull NAME [--rank R] [--as VAR] [--max-bytes N]             # a rank's object into the notebook
%neo push NAME [--ranks ...]                                         # a notebook object into the ranks
```

Display: output and values are grouped across ranks, so 32 identical answers are one line
(``ranks 0-31: 10.0``, with an en dash); a failure shows its traceback once per distinct traceback. While a cell
runs, the display updates in place. The kernel's stop button interrupts the cell on every rank.
"""

from __future__ import annotations

import argparse
import html
import shlex
import threading
import time
from typing import TYPE_CHECKING, Any

from IPython.core.completer import CompletionContext, SimpleCompletion, SimpleMatcherResult, context_matcher
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from jupyter_neo.errors import NeoError
from jupyter_neo.interactive import DEFAULT_PULL_LIMIT, Ranks
from jupyter_neo.runs.px import PxResult, group, rank_label

if TYPE_CHECKING:
    from jupyter_neo.magics import NeoMagics

VERBS = ("px", "pull", "push")
REDRAW = 0.1


def parser(verb: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"%neo {verb}", add_help=True, exit_on_error=False)
    p.add_argument("-r", "--reservation", help="reservation id or name (default: the only live one)")
    if verb == "px":
        p.add_argument("--ranks", default=None, help="all (default), a list like 0,3, or node:N")
        p.add_argument("--start", action="store_true", help="start one warm worker per rank")
        p.add_argument("--restart", action="store_true", help="restart the workers cold")
        p.add_argument("--auto", choices=("on", "off"), help="send every following cell to the ranks")
        p.add_argument("--nproc-per-node", type=int, default=None)
        p.add_argument("--gpus", type=int, default=None)
        p.add_argument("--nodes", type=int, default=None)
        p.add_argument("code", nargs=argparse.REMAINDER, help="one statement (line form)")
    elif verb == "pull":
        p.add_argument("name")
        p.add_argument("--rank", type=int, default=0)
        p.add_argument("--as", dest="alias", default=None, help="also bind it to this notebook variable")
        p.add_argument("--max-bytes", type=int, default=DEFAULT_PULL_LIMIT)
    else:
        p.add_argument("name")
        p.add_argument("--ranks", default=None)
    return p


class PxMagics:
    """The px verbs of one shell: its :class:`Ranks` per reservation and the auto mode."""

    def __init__(self, magics: NeoMagics) -> None:
        self.magics = magics
        self.sessions: dict[str | None, Ranks] = {}
        self.auto: list[str] | None = None
        completer = getattr(magics.shell, "Completer", None)
        if completer is not None:
            completer.custom_matchers.append(self.complete)

    def close(self) -> None:
        completer = getattr(self.magics.shell, "Completer", None)
        if completer is not None and self.complete in completer.custom_matchers:
            completer.custom_matchers.remove(self.complete)

    @context_matcher()  # type: ignore[untyped-decorator]
    def complete(self, context: CompletionContext) -> SimpleMatcherResult:
        """Tab completion inside a ``%%neo px`` cell (or in auto mode) from rank 0's namespace."""
        first, _, _ = context.full_text.partition("\n")
        words = shlex.split(first[2:]) if first.startswith("%%neo px") else None
        if words is None and self.auto is not None and not first.lstrip().startswith("%"):
            words = ["neo", *self.auto]
        if words is None or not context.token:
            return {"completions": [], "suppress": False}
        reservation = words[words.index("-r") + 1] if "-r" in words[:-1] else None
        try:
            matches = self.ranks(reservation).complete(context.token)
        except (NeoError, OSError):
            matches = []
        return {
            "completions": [SimpleCompletion(m.rstrip("("), type="rank 0") for m in matches],
            "suppress": bool(matches),
        }

    @property
    def shell(self) -> InteractiveShell:
        shell = self.magics.shell
        assert shell is not None, "the magics are registered on a shell"
        return shell

    def ranks(self, reservation: str | None) -> Ranks:
        if reservation not in self.sessions:
            self.sessions[reservation] = self.magics.client.ranks(reservation)
        return self.sessions[reservation]

    def handle(self, argv: list[str], cell: str | None) -> Any:
        verb = argv[0]
        try:
            args = parser(verb).parse_args(argv[1:])
        except SystemExit:
            return None
        except argparse.ArgumentError as exc:
            raise UsageError(f"%neo {verb}: {exc}") from None
        try:
            if verb == "pull":
                return self.pull(args)
            if verb == "push":
                return self.push(args)
            return self.px(args, cell)
        except NeoError as exc:
            from jupyter_neo.magics import one_line

            raise UsageError(one_line(exc)) from None

    def px(self, args: argparse.Namespace, cell: str | None) -> None:
        ranks = self.ranks(args.reservation)
        if args.auto:
            self.set_auto(args, on=args.auto == "on")
            return
        if args.start or args.restart:
            request = {k: v for k, v in (("gpus", args.gpus), ("nodes", args.nodes)) if v is not None}
            run = ranks.start(args.nproc_per_node, restart=args.restart, **request)
            print(
                f"{run.nodes * run.nproc_per_node} rank workers up on {run.reservation} ({run.session or run.id})"
            )
            if not (cell or args.code):
                return
        code = cell if cell is not None else " ".join(args.code)
        if not code.strip():
            raise UsageError("%neo px: nothing to run (write the code after %neo px, or use %%neo px)")
        self.run_cell(ranks, code, args.ranks)

    def run_cell(self, ranks: Ranks, code: str, selection: str | None) -> PxResult:
        view = LiveView()
        try:
            result = ranks.run(code, selection, on_change=view.changed, pump=view.pump)
        except KeyboardInterrupt:
            view.final(interrupted=True)
            raise UsageError("interrupted on every rank (the workers are still up)") from None
        finally:
            view.close()
        view.final()
        return result

    def set_auto(self, args: argparse.Namespace, on: bool) -> None:
        shell = self.shell
        transforms = shell.input_transformers_cleanup
        if on:
            prefix = ["px"] + (["-r", args.reservation] if args.reservation else [])
            prefix += ["--ranks", args.ranks] if args.ranks else []
            self.auto = prefix
            if self._auto_transform not in transforms:
                transforms.append(self._auto_transform)
            print("px auto: every cell now runs on the ranks (magics still run here); %neo px --auto off")
        else:
            self.auto = None
            if self._auto_transform in transforms:
                transforms.remove(self._auto_transform)
            print("px auto: off")

    def _auto_transform(self, lines: list[str]) -> list[str]:
        """Send the cell to the ranks unless it is a magic or a shell escape (as nbdistributed)."""
        if self.auto is None:
            return lines
        first = next((ln for ln in lines if ln.strip()), "")
        if first.lstrip().startswith(("%", "!")):
            return lines
        return [f"%%neo {shlex.join(self.auto)}\n", *lines]

    def pull(self, args: argparse.Namespace) -> Any:
        """The object (``w = %neo pull w --rank 2``); ``--as VAR`` also binds it in the notebook."""
        value = self.ranks(args.reservation).pull(args.name, args.rank, args.max_bytes)
        if args.alias:
            self.shell.user_ns[args.alias] = value
            print(f"{args.alias} <- rank {args.rank}: {type(value).__name__}")
        return value

    def push(self, args: argparse.Namespace) -> None:
        shell = self.shell
        if args.name not in shell.user_ns:
            raise UsageError(f"%neo push: {args.name!r} is not defined in this notebook")
        result = self.ranks(args.reservation).push(args.name, shell.user_ns[args.name], args.ranks)
        failed = [f"rank {r}: {result.reply(r).error}" for r in result.failed]
        if failed:
            raise UsageError("%neo push: " + "; ".join(failed))
        print(f"{args.name} -> {rank_label(result.ranks)}")


def render_text(result: PxResult) -> str:
    """A cell's merged outcome as text: grouped output, values, errors, and waiting ranks."""
    parts: list[str] = []
    outputs = {r: result.reply(r).text for r in result.ranks if result.reply(r).text}
    for ranks, text in group(outputs):
        parts.append(f"[{rank_label(ranks)}]\n{text.rstrip()}" if len(result.ranks) > 1 else text.rstrip())
    values = {r: v for r, v in result.values().items() if v is not None}
    for ranks, value in group(values):
        parts.append(f"{rank_label(ranks)}: {value}" if len(result.ranks) > 1 else value)
    errors = {r: result.reply(r).traceback or result.reply(r).error or "" for r in result.failed}
    for ranks, text in group(errors):
        parts.append(f"{rank_label(ranks)} raised:\n{text.rstrip()}")
    if result.waiting:
        where = {r: " <- ".join(reversed(s[-2:])) or "?" for r, s in result.waiting.items()}
        lines = [f"  {rank_label(ranks)}: {w}" for ranks, w in group(where)]
        parts.append(
            f"{rank_label(list(result.waiting))} are still in the cell after {rank_label(result.failed)} failed"
            " (likely a collective the failed ranks never entered):\n"
            + "\n".join(lines)
            + "\n  interrupt the kernel to stop them; %neo px --restart if they do not return"
        )
    if result.interrupted:
        parts.append("interrupted: KeyboardInterrupt raised in the cell on every rank")
    pending = [r for r in result.ranks if not result.reply(r).done]
    if pending and not result.waiting and not result.interrupted:
        parts.append(f"({rank_label(pending)} running...)")
    return "\n".join(parts)


def render_html(result: PxResult) -> str | None:
    """Rich display when every rank returned the same rich value (e.g. a DataFrame)."""
    bundles = [result.reply(r).value or {} for r in result.ranks]
    htmls = {b.get("text/html") for b in bundles}
    if len(htmls) == 1 and None not in htmls and result.ok and len(bundles) > 0:
        label = html.escape(rank_label(result.ranks))
        return f"<div><small>{label}</small>{bundles[0]['text/html']}</div>"
    return None


class LiveView:
    """One display that updates in place while a cell runs (throttled to 10 redraws a second)."""

    def __init__(self) -> None:
        self.handle: Any = None
        self.result: PxResult | None = None
        self.dirty = threading.Event()
        self.last = 0.0
        self.closed = False

    def changed(self, result: PxResult) -> None:
        """From the client's loop thread: note the change; the kernel's thread draws it."""
        self.result = result
        self.dirty.set()

    def pump(self) -> None:
        """Called on the kernel's thread while the cell waits (a display must come from there)."""
        now = time.monotonic()
        if self.dirty.is_set() and now - self.last >= REDRAW:
            self.dirty.clear()
            self.last = now
            self._draw()

    def _draw(self) -> None:
        from IPython.display import display

        if self.result is None:
            return
        bundle = {"text/plain": render_text(self.result)}
        if self.handle is None:
            self.handle = display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self.handle.update(bundle, raw=True)

    def final(self, interrupted: bool = False) -> None:
        from IPython.display import display

        if self.result is None:
            if interrupted:
                print("interrupted before any rank answered")
            return
        self.result.interrupted = self.result.interrupted or interrupted
        bundle: dict[str, str] = {"text/plain": render_text(self.result)}
        rich = render_html(self.result)
        if rich:
            bundle["text/html"] = rich
        if self.handle is None:
            display(bundle, raw=True)  # type: ignore[no-untyped-call]
        else:
            self.handle.update(bundle, raw=True)

    def close(self) -> None:
        self.closed = True
