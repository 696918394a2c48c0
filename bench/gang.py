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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.sync import Rsync, make_tree, pctl, shim

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


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def summary(xs: list[float]) -> tuple[float, float]:
    """(median, p90) in milliseconds of a list of seconds."""
    ms = [x * 1000 for x in xs]
    return round(statistics.median(ms), 1), round(pctl(ms, 0.9), 1)


def write_csv(name: str, rows: list[dict[str, Any]]) -> Path:
    import csv

    out = HERE / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path
