"""Shared harness of ``bench.run_loop`` and ``bench.hot``: a warm 2x2 gang, the timed workload, the baseline.

Three ways to get an edit running on a 2-node x 2-rank gang on the local backend:

- ``neo``: ``Client.run`` on a warm reservation (sync, then torchrun on every pod), optionally
  ``hot=True`` (the persistent rank workers re-run the edited script);
- ``baseline``: what one does by hand: ``rsync`` the workspace to each node's directory (through
  the same remote-shell shim and flags as ``bench.sync``), then start ``torchrun --node-rank i``
  on both "nodes" as subprocesses with a fresh master port, cwd in that node's copy.

Every iteration bumps ``GEN`` in the workspace's ``train_ddp.py`` (a one-line edit) and records,
per rank, when its ``BENCH`` lines (see ``train_ddp_timed.py``) reached the benchmark process.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.results import load, pctl, write_csv
from bench.sync import Rsync, make_tree, shim

HERE = Path(__file__).resolve().parent
SCRIPT = "train_ddp.py"
NODES, PER_NODE = 2, 2
RANKS = NODES * PER_NODE
_FIELD = re.compile(r"(\w+)=(\S+)")


@dataclass
class RankTimes:
    """What one rank reported for one generation; ``*_at`` = arrival at the benchmark process."""

    first_at: float = 0.0
    step_at: float = 0.0
    start: float = 0.0
    imported: float = 0.0
    init: float = 0.0
    step: float = 0.0
    pid: int = 0


class Incomplete(RuntimeError):
    """Some rank's BENCH lines never arrived: the sample is dropped and counted."""


@dataclass
class Recorder:
    """Collects the ``BENCH`` lines of every rank, keyed by generation (thread-safe)."""

    gens: dict[int, dict[int, RankTimes]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    raw: list[str] = field(default_factory=list)

    def feed(self, line: str, at: float | None = None) -> None:
        at = at or time.time()
        with self.lock:
            self.raw = [*self.raw[-200:], line.rstrip("\n")]
        if "BENCH " not in line:
            return
        if line.count("BENCH ") > 1:  # two ranks of one torchrun share its stdout: print() writes
            for part in re.split(r"(?=BENCH )", line):  # text and newline separately, so lines mix
                if part.strip():
                    self.feed(part, at)
            return
        kv = dict(_FIELD.findall(line))
        if "gen" not in kv or "rank" not in kv:
            return
        with self.lock:
            r = self.gens.setdefault(int(kv["gen"]), {}).setdefault(int(kv["rank"]), RankTimes())
            if "BENCH first" in line:
                r.first_at, r.pid = at, int(kv["pid"])
                r.start, r.imported, r.init = float(kv["start"]), float(kv["import"]), float(kv["init"])
            elif "BENCH step" in line:
                r.step_at, r.step = at, float(kv["step"])

    def on_line(self, rank: int | None, node: int, stream: str, line: str) -> None:
        """A ``Client.run`` ``on_line`` callback."""
        self.feed(line)

    def complete(self, gen: int) -> dict[int, RankTimes]:
        ranks = self.gens.get(gen, {})
        missing = [r for r in range(RANKS) if r not in ranks or not ranks[r].step_at]
        if missing:
            tail = "\n  ".join(self.raw[-40:])
            raise Incomplete(f"generation {gen}: ranks {missing} did not report; last lines:\n  {tail}")
        return ranks


class Workspace:
    """The user's workspace: the timed script plus a generated tree of ``files`` modules."""

    def __init__(self, root: Path, files: int) -> None:
        self.root = root
        root.mkdir(parents=True)
        if files:
            make_tree(root / "lib", files, big_mib=0)
        shutil.copy(HERE / "train_ddp_timed.py", root / SCRIPT)
        self.gen = 0

    def edit(self) -> int:
        """The one-line edit: ``GEN = n`` -> ``GEN = n + 1``; returns the new generation."""
        self.gen += 1
        path = self.root / SCRIPT
        text, n = re.subn(r"^GEN = \d+", f"GEN = {self.gen}", path.read_text(), count=1, flags=re.M)
        assert n == 1
        path.write_text(text)
        return self.gen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Baseline:
    """rsync to each node's copy of the workspace, then a fresh ``torchrun`` per node."""

    def __init__(self, work: Path, ws: Workspace, steps: int) -> None:
        rsh, _ = shim(0.0)
        self.shim_dir = rsh.parent
        self.nodes = [work / f"baseline-node{i}" for i in range(NODES)]
        for d in self.nodes:
            d.mkdir()
        self.rsync = Rsync(ws.root, self.nodes, rsh)
        self.steps = steps

    def iterate(self, rec: Recorder) -> dict[str, float]:
        t0 = time.time()
        moved = self.rsync.sync([], [])
        t_sync = time.time()
        port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        procs = []
        for i, d in enumerate(self.nodes):
            argv = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(NODES),
                    "--nproc-per-node", str(PER_NODE), "--node-rank", str(i), "--master-addr", "127.0.0.1",
                    "--master-port", str(port), "--max-restarts", "0", SCRIPT, "--steps", str(self.steps)]  # fmt: skip
            procs.append(
                subprocess.Popen(
                    argv, cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
            )
        tails: list[list[str]] = [[] for _ in procs]

        def pump(i: int, p: subprocess.Popen[str]) -> None:
            assert p.stdout is not None
            for line in p.stdout:
                rec.feed(line)
                tails[i] = [*tails[i][-30:], line]

        threads = [threading.Thread(target=pump, args=(i, p), daemon=True) for i, p in enumerate(procs)]
        for t in threads:
            t.start()
        codes = [p.wait(timeout=300) for p in procs]
        for t in threads:
            t.join()
        if any(codes):
            bad = next(i for i, c in enumerate(codes) if c)
            raise RuntimeError(f"baseline torchrun node {bad} exited {codes[bad]}:\n{''.join(tails[bad])}")
        return {"sync": t_sync - t0, "bytes": float(moved)}

    def close(self) -> None:
        shutil.rmtree(self.shim_dir, ignore_errors=True)


@contextmanager
def local_client(work: Path) -> Iterator[Any]:
    """A client on a private ``NEO_HOME`` with one local cluster of 4 nodes x 2 virtual GPUs."""
    from jupyter_neo.client import Client
    from jupyter_neo.config import load_config

    home = work / "home"
    cfg = work / "neo.yaml"
    cfg.write_text("clusters:\n  - name: bench\n    nodes: 4\n    gpus_per_node: 2\n")
    os.environ["NEO_HOME"] = str(home)
    client = Client(load_config(cfg, home))
    try:
        yield client
    finally:
        try:
            client.release_all()
        finally:
            client.close()


def neo_iterate(
    client: Any, res: Any, ws: Workspace, rec: Recorder, steps: int, hot: bool
) -> dict[str, float]:
    run = client.run(
        SCRIPT, ["--steps", str(steps)], reservation=res.id, workspace=ws.root, on_line=rec.on_line, hot=hot
    )
    if run.exit_code:
        raise RuntimeError(f"neo run {run.id} exited {run.exit_code}: {run.error}")
    return {k: float(v) for k, v in run.timings.items()}


def new_work() -> Path:
    return Path(tempfile.mkdtemp(prefix="neo-bench-gang-"))


def summary(xs: list[float]) -> tuple[float, float]:
    """(median, p90) in milliseconds of a list of seconds."""
    ms = [x * 1000 for x in xs]
    return round(statistics.median(ms), 1), round(pctl(ms, 0.9), 1)


@dataclass
class Sample:
    """One edit made and seen through by one tool: when it was written, what each rank reported."""

    tool: str
    rep: int  # -1: the unmeasured warm-up
    t_edit: float
    info: dict[str, float]  # the tool's own timings (neo's ``run.timings``; the baseline's sync)
    ranks: dict[int, RankTimes]

    @property
    def label(self) -> str:
        return "warm-up" if self.rep < 0 else f"rep {self.rep}"


def measure(
    args: argparse.Namespace, tools: dict[str, bool], row: Callable[[Sample], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Edit, run and record ``args.reps`` rounds of ``tools`` on warm gangs; one row per sample.

    ``tools`` maps a tool to ``hot`` (``Client.run(hot=...)``); each neo tool gets a warm 2x2
    reservation of its own (hot workers keep theirs busy), ``"baseline"`` is rsync + torchrun.
    One unmeasured warm-up edit per tool first (first sync, page cache, hot workers' cold start);
    ``row`` sees it too (rep -1, its result is dropped), so it can keep what later samples are
    checked against. The tool order rotates between rounds, so machine load drifts hit every tool
    alike. A sample whose ranks did not all report is dropped and counted, not fatal.
    """
    work = new_work()
    ws = Workspace(work / "ws", args.files)
    base = Baseline(work, ws, args.steps)
    rec = Recorder()
    rows: list[dict[str, Any]] = []
    order = list(tools)
    try:
        with local_client(work) as client:
            res = {
                t: client.reserve(gpus=RANKS, nodes=2, cluster="bench", idle_ttl=None)
                for t in order
                if t != "baseline"
            }

            def once(tool: str, rep: int) -> Sample:
                gen = ws.edit()
                t_edit = time.time()
                if tool == "baseline":
                    info = base.iterate(rec)
                else:
                    info = neo_iterate(client, res[tool], ws, rec, args.steps, hot=tools[tool])
                return Sample(tool, rep, t_edit, info, rec.complete(gen))

            for tool in order:
                row(once(tool, -1))
            for rep in range(args.reps):
                k = rep % len(order)
                for tool in order[k:] + order[:k]:
                    try:
                        sample = once(tool, rep)
                    except Incomplete as exc:
                        print(f"rep {rep} {tool}: sample dropped: {exc}", flush=True)
                        rows.append({"tool": tool, "rep": rep, "dropped": 1})
                        continue
                    rows.append({"tool": tool, "rep": rep, **row(sample), "load1": load().split()[0]})
    finally:
        base.close()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def kept(rows: list[dict[str, Any]], tools: Iterable[str]) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """Per tool with samples: its name, its sample count (and how many were dropped), its rows."""
    for tool in tools:
        rs = [r for r in rows if r["tool"] == tool and not r.get("dropped")]
        dropped = sum(1 for r in rows if r["tool"] == tool and r.get("dropped"))
        if rs:
            yield tool, f"{len(rs)}" + (f" ({dropped} dropped)" if dropped else ""), rs


def arguments(doc: str) -> argparse.ArgumentParser:
    """The options every warm-gang benchmark takes."""
    p = argparse.ArgumentParser(description=doc.split("\n", maxsplit=1)[0])
    p.add_argument("--reps", type=int, default=10)
    p.add_argument(
        "--files", type=int, default=1000, help="generated modules in the workspace besides the script"
    )
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="3 repetitions")
    return p


def report(
    name: str,
    args: argparse.Namespace,
    tools: dict[str, bool],
    row: Callable[[Sample], dict[str, Any]],
    table: Callable[[list[dict[str, Any]]], str],
    heading: str,
) -> None:
    """Measure, print ``heading`` with the load before and after, the table, and write the CSV."""
    if args.quick:
        args.reps = 3
    before = load()
    rows = measure(args, tools, row)
    print(f"\n{heading}; load {before} -> {load()}")
    print(table(rows))
    print(f"wrote {write_csv(name, rows)}")
