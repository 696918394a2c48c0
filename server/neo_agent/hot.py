"""Hot-reload rank worker: run the user's script, then re-run it on each new code generation in
the same process, so imports, the CUDA context, the process group and anything kept with
``jupyter_neo.keep`` stay alive.

Protocol with the controller (through files the agent writes, and the rank's stdout):

- ``$NEO_HOT_CONTROL/gen`` holds the generation to run; the controller bumps it after a sync.
- All ranks agree before switching: each rank checks that every changed ``.py`` file compiles and
  posts ``ok``/``fail`` for the generation to torchrun's TCPStore; the switch happens only when
  every rank said ok, so no rank ever runs collectives with new code while another runs old code.
- Each iteration ends with one ``NEO_HOT {json}`` line per rank: ``done`` (with the outcome) or
  ``skipped`` (the generation did not compile anywhere: the old code stays loaded).

Reload tier: a soft restart. Every module loaded from the workspace is dropped from
``sys.modules`` and the script runs again as ``__main__``; modules from elsewhere (torch, numpy,
the user's site-packages) stay imported. ``torch.distributed.init_process_group`` becomes
idempotent and ``destroy_process_group`` a no-op while the worker lives.
"""

import functools
import importlib
import json
import os
import runpy
import sys
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

from neo_agent.px_worker import PxServer, wait_between
from neo_agent.rank_api import install

MARKER = "NEO_HOT "
POLL = 0.01


def emit(event: str, **fields: Any) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout.write(MARKER + json.dumps(dict(fields, event=event)) + "\n")
    sys.stdout.flush()


def newer(control: str, gen: int) -> bool:
    return read_gen(control) > gen


def read_gen(control: str) -> int:
    try:
        with open(os.path.join(control, "gen")) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def keep_process_group() -> None:
    """Make the user's init/destroy of the default process group safe to repeat."""
    try:
        dist: Any = importlib.import_module("torch.distributed")
    except ImportError:
        return
    real_init = dist.init_process_group

    def init_process_group(*args: Any, **kwargs: Any) -> None:
        if not dist.is_initialized():
            real_init(*args, **kwargs)

    def destroy_process_group(group: Any = None) -> None:
        return None

    dist.init_process_group = init_process_group
    dist.destroy_process_group = destroy_process_group


def _store() -> Any:
    """A client of torchrun's own TCPStore (MASTER_ADDR/PORT point at it under torchrun)."""
    dist: Any = importlib.import_module("torch.distributed")
    return dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        is_master=False,
        timeout=__import__("datetime").timedelta(seconds=300),
    )


_OUTSIDE: Dict[str, str] = {}  # module file -> its real path, for files outside the pod workspace


def workspace_modules(root: str) -> List[str]:
    """The modules loaded from the workspace (to forget before the next generation runs).

    Resolving every loaded module's file (torch alone loads ~1,500) cost ~80 ms of lstat calls per
    reload; a file outside the pod's workspace directory (site-packages) keeps its real path, so it
    is resolved once. Files under the workspace directory are resolved every time: ``current``
    moves with each generation.
    """
    real = os.path.realpath(root)
    pod_ws = os.path.dirname(os.path.dirname(real)) + os.sep  # .../ws of .../ws/gens/N
    names = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path:
            continue
        if path.startswith(root + os.sep):
            names.append(name)
            continue
        full = _OUTSIDE.get(path)
        if full is None:
            full = os.path.realpath(path)
            if not full.startswith(pod_ws) and not path.startswith(pod_ws):
                _OUTSIDE[path] = full
        if full.startswith(real + os.sep):
            names.append(name)
    return names


class CompileCheck:
    """Which workspace ``.py`` files do not compile, re-compiling only files that changed.

    Files are keyed by (inode, size, mtime): a sync materialises unchanged files of a new
    generation as hard links to the same content objects, so only edited files compile again.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.known: Dict[str, Any] = {}  # path -> (key, error or None)

    def errors(self) -> List[str]:
        seen: Dict[str, Any] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
            for name in filenames:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, self.root)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                key = (st.st_ino, st.st_size, st.st_mtime_ns)
                old = self.known.get(rel)
                seen[rel] = old if old is not None and old[0] == key else (key, self._check(path, rel))
        self.known = seen
        return [err for _, err in seen.values() if err]

    @staticmethod
    def _check(path: str, rel: str) -> Optional[str]:
        try:
            with open(path, "rb") as f:
                compile(f.read(), path, "exec")
        except SyntaxError as exc:
            return "%s:%s: %s" % (rel, exc.lineno, exc.msg)
        except (OSError, ValueError) as exc:
            return "%s: %s" % (rel, exc)
        return None


def run_once(target: str, args: List[str], module: bool) -> Tuple[Optional[str], Dict[str, Any]]:
    """Run the user's code as ``__main__``: the error text if it raised (the worker survives), and
    the script's globals when it finished (what px cells see afterwards)."""
    sys.argv = [target, *args]
    try:
        if module:
            return None, runpy.run_module(target, run_name="__main__", alter_sys=True)
        return None, runpy.run_path(target, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            return "SystemExit(%s)" % exc.code, {}
    except BaseException as exc:  # the user's bug is reported; the warm process lives on
        traceback.print_exc()
        return "%s: %s" % (type(exc).__name__, exc), {}
    return None, {}


def agree(store: Any, gen: int, rank: int, world: int, verdict: str) -> List[str]:
    """Post this rank's verdict for ``gen`` and return every rank's, once all have posted."""
    keys = ["neo-hot/%d/%d" % (gen, r) for r in range(world)]
    store.set(keys[rank], verdict)
    store.wait(keys)
    return [store.get(k).decode() for k in keys]


def start_px(control: str, rank: int, world: int) -> Optional[PxServer]:
    """The cell server of ``%%neo px``; a worker without one still hot-reloads (said on stderr)."""
    try:
        return PxServer(control, rank, world, int(os.environ.get("LOCAL_RANK", "0")))
    except OSError as exc:
        sys.stderr.write("neo: notebook cells are unavailable on rank %d: %s\n" % (rank, exc))
        return None


class Entry:
    """The entry point a generation runs: ``SCRIPT ARGS`` or ``-m MODULE ARGS``.

    The controller may send a new one with a generation (``CONTROL/argv.json``), so a different
    script or arguments run in the same warm workers; its directory leads ``sys.path``.
    """

    def __init__(self, argv: List[str], root: str) -> None:
        self.root = root
        self.path_entry: Optional[str] = None
        self.set(argv)

    def set(self, argv: List[str]) -> None:
        self.module = argv[0] == "-m"
        self.target = argv[1] if self.module else argv[0]
        self.args = argv[2:] if self.module else argv[1:]
        self.script = self.target if self.module else os.path.join(self.root, self.target)
        entry = self.root if self.module else os.path.dirname(self.script)
        if self.path_entry is not None and self.path_entry in sys.path:
            sys.path.remove(self.path_entry)
        sys.path.insert(0, entry)
        self.path_entry = entry

    def update(self, control: str) -> None:
        try:
            with open(os.path.join(control, "argv.json")) as f:
                argv = json.load(f)
        except (OSError, ValueError):
            return
        if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv):
            self.set(argv)


def main(argv: List[str]) -> None:
    control = os.environ["NEO_HOT_CONTROL"]
    root = os.environ.get("NEO_WORKSPACE") or os.getcwd()
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    sys.path[:] = [p for p in sys.path if not p.endswith(".pyz")]
    entry = Entry(argv, root)
    install()
    keep_process_group()
    store = _store()
    gen = read_gen(control)
    px = start_px(control, rank, world)
    check = CompileCheck(root)
    while True:
        os.chdir(root)  # the stable path: resolves to the newest generation
        importlib.invalidate_caches()
        t0 = time.time()
        error, script_globals = run_once(entry.script, entry.args, entry.module)
        if px is not None:
            px.merge_script_globals(script_globals)
        emit("done", gen=gen, rank=rank, ok=error is None, error=error, seconds=round(time.time() - t0, 4))
        check.errors()  # while idle: remember what compiles now, so a reload checks only edits
        while True:
            wait_between(px, functools.partial(newer, control, gen), POLL)
            new = read_gen(control)
            t_reload = time.time()
            errors = check.errors()
            verdicts = agree(store, new, rank, world, "fail:" + "; ".join(errors) if errors else "ok")
            bad = [v[5:] for v in verdicts if v != "ok"]
            if bad:
                emit("skipped", gen=new, rank=rank, error=bad[0], kept=gen)
                gen = new
                continue
            for name in workspace_modules(root):
                del sys.modules[name]
            entry.update(control)
            emit("reloaded", gen=new, rank=rank, seconds=round(time.time() - t_reload, 4))
            gen = new
            break
