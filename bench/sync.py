"""Sync benchmark: jupyter-neo vs rsync (remote protocol) vs tar|exec, edit -> all targets applied.

Run: ``python -m bench.sync`` (``--quick`` for a 1k-file smoke run). Method (docs/sync.md, shared
reference §6): generated trees (fixed seed), one edit at a time, each tool pushing to its own N
targets; rsync goes through a remote-shell shim with ``--no-whole-file`` (the local default would
be a plain copy); tar gets the full tree or the exact changed list through an exec shim. The shims
add ``--spawn-ms`` of latency per remote process (default 0: loopback, flattering the baselines).
jupyter-neo is measured twice: ``neo`` gets the changed paths as its watcher would report them
(debounce excluded), ``neo-scan`` walks the tree (warm stat cache), as a one-shot ``neo sync``.
Metrics: latency median/p90 over the repetitions, CPU seconds of every process involved, bytes
moved. Everything is loopback on this machine: read the numbers as relative, not absolute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from bench.results import pctl, write_csv

HERE = Path(__file__).resolve().parent
SEED = 42
BIG = "assets/weights.bin"
EDITS = ["noop", "line", "touch", "ten", "add", "delete", "rename_file", "rename_dir", "chmod", "append_1mib"]


# ---------------------------------------------------------------------------- tree and edits
def make_tree(root: Path, files: int, seed: int = SEED, big_mib: int = 32) -> None:
    """A repo-like tree: ~20 files per directory, 3 levels, sizes 100 B - 8 KiB, one big binary."""
    rng = random.Random(seed)
    dirs = max(1, files // 20)
    for i in range(files):
        d = i % dirs
        rel = Path(f"pkg{d % 7}/mod{d % 53}/d{d}") / f"f{i}.py"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        lines = rng.randint(3, 200)
        (root / rel).write_text("".join(f"x_{j} = {rng.random()!r}\n" for j in range(lines)))
    (root / BIG).parent.mkdir(parents=True, exist_ok=True)
    (root / BIG).write_bytes(random.Random(seed).randbytes(big_mib * 2**20))


class Editor:
    """Applies one edit of each type; returns (changed paths as hints, files to copy, paths to delete)."""

    def __init__(self, root: Path, seed: int = SEED) -> None:
        self.root = root
        self.rng = random.Random(seed + 1)
        self.n = 0

    def _files(self) -> list[str]:
        return sorted(
            str(p.relative_to(self.root))
            for p in self.root.rglob("*.py")
            if p.is_file() and not p.is_symlink()
        )

    def apply(self, kind: str) -> tuple[set[str], list[str], list[str]]:
        self.n += 1
        root, rng = self.root, self.rng
        files = self._files()
        pick = rng.choice(files)
        if kind == "noop":
            return set(), [], []
        if kind == "line":
            with open(root / pick, "a") as f:
                f.write(f"edited_{self.n} = True\n")
            return {pick}, [pick], []
        if kind == "touch":
            os.utime(root / pick)
            return {pick}, [pick], []
        if kind == "ten":
            picks = rng.sample(files, 10)
            for p in picks:
                with open(root / p, "a") as f:
                    f.write(f"edited_{self.n} = True\n")
            return set(picks), picks, []
        if kind == "add":
            rel = str(Path(pick).parent / f"new_{self.n}.py")
            (root / rel).write_text("NEW = 1\n" * 20)
            return {rel}, [rel], []
        if kind == "delete":
            (root / pick).unlink()
            return {pick}, [], [pick]
        if kind == "rename_file":
            rel = str(Path(pick).parent / f"renamed_{self.n}.py")
            (root / pick).rename(root / rel)
            return {pick, rel}, [rel], [pick]
        if kind == "rename_dir":
            src = str(Path(pick).parent)
            dst = f"{src}_r{self.n}"
            (root / src).rename(root / dst)
            moved = [str(p.relative_to(root)) for p in (root / dst).rglob("*") if p.is_file()]
            return {src, dst}, moved, [src]
        if kind == "chmod":
            mode = (root / pick).stat().st_mode
            (root / pick).chmod(mode ^ 0o111)
            return {pick}, [pick], []
        if kind == "append_1mib":
            with open(root / BIG, "ab") as f:
                f.write(rng.randbytes(2**20))
            return {BIG}, [BIG], []
        raise ValueError(kind)


# ---------------------------------------------------------------------------- measurement
def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            continue
    return total


def own_cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def shim(spawn_ms: float) -> tuple[Path, Path]:
    """``fakersh HOST CMD...`` and ``fakeexec CMD...``: a remote shell / kubectl exec stand-in."""
    d = Path(tempfile.mkdtemp(prefix="neo-bench-shim-"))
    delay = f"sleep {spawn_ms / 1000:.3f}\n" if spawn_ms else ""
    rsh, exe = d / "fakersh", d / "fakeexec"
    rsh.write_text(f'#!/bin/sh\n{delay}shift\nexec "$@"\n')
    exe.write_text(f'#!/bin/sh\n{delay}exec "$@"\n')
    for p in (rsh, exe):
        p.chmod(0o755)
    return rsh, exe


class Rsync:
    name = "rsync"

    def __init__(self, src: Path, targets: list[Path], rsh: Path) -> None:
        self.src, self.targets, self.rsh = src, targets, rsh

    def _one(self, dst: Path) -> int:
        out = subprocess.run(
            ["rsync", "-a", "--delete", "--no-whole-file", "--stats", "-e", str(self.rsh),
             f"{self.src}/", f"target:{dst}/"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        sent = [ln for ln in out.splitlines() if ln.startswith("Total bytes sent")]
        return int(sent[0].split(":")[1].replace(",", "").strip()) if sent else 0

    def sync(self, copy: list[str], delete: list[str]) -> int:
        with ThreadPoolExecutor(len(self.targets)) as pool:  # a star, like SkyPilot's thread pool
            return sum(pool.map(self._one, self.targets))


class Tar:
    def __init__(self, src: Path, targets: list[Path], exe: Path, full: bool) -> None:
        self.src, self.targets, self.exe, self.full = src, targets, exe, full
        self.name = "tar-full" if full else "tar-changed"

    def sync(self, copy: list[str], delete: list[str]) -> int:
        if self.full:
            data = subprocess.run(
                ["tar", "cf", "-", "-C", str(self.src), "."], capture_output=True, check=True
            ).stdout
        else:
            existing = [p for p in copy if (self.src / p).exists()]
            data = (
                subprocess.run(
                    ["tar", "cf", "-", "-C", str(self.src), "--", *existing], capture_output=True, check=True
                ).stdout
                if existing
                else b""
            )

        def one(dst: Path) -> None:
            if self.full:
                subprocess.run([str(self.exe), "rm", "-rf", str(dst)], check=True)
                dst.mkdir()
            elif delete:
                subprocess.run(
                    [str(self.exe), "rm", "-rf", "--", *[str(dst / p) for p in delete]], check=True
                )
            if data:
                subprocess.run([str(self.exe), "tar", "xf", "-", "-C", str(dst)], input=data, check=True)

        with ThreadPoolExecutor(len(self.targets)) as pool:
            list(pool.map(one, self.targets))
        return len(data) * len(self.targets)


# ---------------------------------------------------------------------------- driver
def run(args: argparse.Namespace, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fills ``rows`` as it goes (so a failure still leaves the finished rows to write)."""
    from jupyter_neo.backends.local import procs_under
    from jupyter_neo.client import Client
    from jupyter_neo.config import load_config

    work = Path(tempfile.mkdtemp(prefix="neo-bench-"))
    home = work / "home"
    cfg = work / "neo.yaml"
    cfg.write_text("clusters:\n  - name: bench\n    nodes: 16\n    gpus_per_node: 1\n")
    os.environ["NEO_HOME"] = str(home)
    client = Client(load_config(cfg, home))
    rsh, exe = shim(args.spawn_ms)
    try:
        for files in args.trees:
            src = work / f"src{files}"
            make_tree(src, files, big_mib=args.big_mib)
            for n in args.pods:
                res = client.reserve(gpus=n, nodes=n, cluster="bench", idle_ttl=None)
                tdirs = {t: [work / f"{t}-{i}" for i in range(n)] for t in ("rsync", "tarc", "tarf")}
                for ds in tdirs.values():
                    for d in ds:
                        d.mkdir()
                rs, tc = Rsync(src, tdirs["rsync"], rsh), Tar(src, tdirs["tarc"], exe, full=False)
                tf = Tar(src, tdirs["tarf"], exe, full=True)
                # Each gang sees the tree through its own root (a symlink): its own scanner cache, so its
                # first sync stages the content once for all pods. Through a root the controller already
                # has a manifest for, every fresh pod is "repaired" separately, reading and holding the
                # tree once per pod: MemoryError at 20k files x 4 pods (docs/benchmarks.md, "problems").
                neo_root = work / f"neo{files}-{n}"
                neo_root.symlink_to(src)
                t0 = time.perf_counter()
                client.sync(res, neo_root)
                print(f"[{files} files, N={n}] neo initial sync {time.perf_counter() - t0:.2f}s", flush=True)
                rs.sync([], [])
                subprocess.run(["cp", "-a", f"{tdirs['rsync'][0]}/.", str(tdirs["tarc"][0])], check=True)
                for d in tdirs["tarc"][1:]:
                    subprocess.run(["cp", "-a", f"{tdirs['rsync'][0]}/.", str(d)], check=True)
                res_scan = client.reserve(gpus=n, nodes=n, cluster="bench", idle_ttl=None)
                scan_root = work / f"scan{files}-{n}"
                scan_root.symlink_to(src)
                client.sync(res_scan, scan_root)
                agents = [p.pid for p in procs_under(home)]
                gang = client.run_async(_gang(client, res, neo_root))
                gang_scan = client.run_async(_gang(client, res_scan, scan_root))
                editor = Editor(src)
                for edit in args.edits:
                    samples: dict[str, list[tuple[float, float, int]]] = {}
                    for rep in range(args.reps):
                        hints, copy, delete = editor.apply(edit)
                        time.sleep(0.03)  # out of the racy-timestamp window, for every tool alike
                        tools = _tools(client, gang, gang_scan, rs, tc, hints, copy, delete)
                        if edit == "line" and rep == 0:
                            tools.append(("tar-full", partial(tf.sync, [], [])))
                        k = rep % len(tools)
                        for name, fn in tools[k:] + tools[:k]:  # interleave the order across reps
                            c0, a0 = own_cpu(), cpu_of(agents)
                            t0 = time.perf_counter()
                            moved = fn()
                            dt = time.perf_counter() - t0
                            samples.setdefault(name, []).append(
                                (dt, own_cpu() - c0 + cpu_of(agents) - a0, moved)
                            )
                            if name.startswith("neo"):
                                _wait_spares(client, res if name == "neo" else res_scan)
                    for name, ss in samples.items():
                        lat = [s[0] * 1000 for s in ss]
                        row = {
                            "files": files, "pods": n, "edit": edit, "tool": name, "reps": len(ss),
                            "median_ms": round(statistics.median(lat), 2), "p90_ms": round(pctl(lat, 0.9), 2),
                            "cpu_s": round(statistics.median(s[1] for s in ss), 4),
                            "bytes": int(statistics.median(s[2] for s in ss)),
                            "load1": round(os.getloadavg()[0], 2),
                        }  # fmt: skip
                        rows.append(row)
                        print(
                            f"{files:>6} N={n} {edit:<12} {name:<12} {row['median_ms']:>9.1f} ms "
                            f"p90 {row['p90_ms']:>9.1f}  cpu {row['cpu_s']:.3f}s  {row['bytes']} B",
                            flush=True,
                        )
                client.release(res.id)
                client.release(res_scan.id)
                for ds in tdirs.values():
                    for d in ds:
                        shutil.rmtree(d)
    finally:
        client.release_all()
        client.close()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(rsh.parent, ignore_errors=True)
    return rows


def _tools(
    client: Any,
    gang: Any,
    gang_scan: Any,
    rs: Rsync,
    tc: Tar,
    hints: set[str],
    copy: list[str],
    delete: list[str],
) -> list[tuple[str, Callable[[], int]]]:
    return [
        ("neo", partial(_neo, client, gang, hints)),
        ("neo-scan", partial(_neo, client, gang_scan, None)),
        ("rsync", partial(rs.sync, copy, delete)),
        ("tar-changed", partial(tc.sync, copy, delete)),
    ]


async def _gang(client: Any, res: Any, src: Path) -> Any:
    from jupyter_neo.sync.push import gang_sync_for

    return gang_sync_for(client.core, res, src)


def _neo(client: Any, gang: Any, hints: set[str] | None) -> int:
    report = client.run_async(gang.sync(hints, persist=hints is None))
    return int(report.bytes_sent)


def _wait_spares(client: Any, res: Any) -> None:
    """Let the pods finish their background spare trees (done between edits in real use)."""

    async def wait() -> None:
        conns = await client.core.connect(res)
        await asyncio.gather(*(c.call("ws_state", settle=True) for c in conns))

    client.run_async(wait())
    time.sleep(0.02)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trees", type=int, nargs="+", default=[1000, 20000])
    p.add_argument("--pods", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--edits", nargs="+", default=EDITS)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--spawn-ms", type=float, default=0.0, help="latency the shims add per remote process")
    p.add_argument("--big-mib", type=int, default=32)
    p.add_argument("--quick", action="store_true", help="1k files, N=1,2, 3 reps")
    args = p.parse_args()
    if args.quick:
        args.trees, args.pods, args.reps = [1000], [1, 2], 3
    if not shutil.which("rsync"):
        sys.exit("rsync is not installed (apt-get install rsync); see bench/README.md")
    rows: list[dict[str, Any]] = []
    print("load averages before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    try:
        run(args, rows)
    finally:
        if rows:
            path = write_csv("sync", rows)
            print(f"\nwrote {path}  (machine: {os.cpu_count()} CPUs, {sys.platform}, loopback)")
        print("load averages after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)


if __name__ == "__main__":
    main()
