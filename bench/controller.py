"""Resident-controller benchmark (issue #15): the ``neo`` CLI wall time, process start included.

Run: ``python -m bench.controller`` (``--quick``: fewer repetitions, no 64-pod row). Everything
goes through the real ``neo`` command (a thin client of the resident controller), timed from
``fork`` to exit, on the local backend, in one private ``NEO_HOME``:

- the tree: a copy of the installed ``torch`` package without shared libraries and bytecode
  (~12k files in ~960 directories: real code nobody here wrote), 4 pods (4 nodes x 1 GPU);
- ``edit -> neo sync``: append one line to a random ``.py`` file, run ``neo sync``; every pod
  is checked to hold the edit afterwards (outside the timing). Baseline in the same run: 4
  parallel ``rsync -a --no-whole-file`` of the same edit into 4 local copies;
- ``neo sync`` with nothing changed, ``neo status``, and the CLI's import (``python -c 'import
  jupyter_neo.cli.main, jupyter_neo.controller.client'``, what a forwarded command imports, minus
  ``python -c pass``); the package is compiled to bytecode first (:func:`compile_package`);
- watch mode: ``neo sync --watch`` running, 20 edits 0.5 s apart, each timed until every pod's
  ``current`` holds it (polled every 2 ms);
- ``neo run --hot``: edit -> the CLI returns with all 4 ranks (2 x 2) having run the new code,
  vs ``neo run`` (a cold torchrun relaunch) on a second 2 x 2 gang;
- surfaces: from a warm IPython kernel (a real kernel process driven by ``jupyter_client``),
  ``%neo run --hot`` edit -> all 4 ranks (2 x 2) printed the new code, timed from the execute
  request to its reply; and ``GET /jupyter-neo/reservations`` through a real ``jupyter server``
  process (both through the same resident controller as the CLI);
- scale: N = 1, 4, 16, 64 pods (N nodes x 1 GPU), a small tree (this repository's
  ``jupyter_neo`` package): reserve, a one-line edit synced, ``neo run --cmd true``,
  ``neo status`` (wall) and the controller's CPU seconds over those steps, and the bytes the
  controller wrote to pod streams for the edit (``uplink_bytes`` of the sync report), once with
  star fan-out and once with the relay tree (``NEO_SYNC_RELAY=on``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from bench.results import load, pctl, write_csv

HERE = Path(__file__).resolve().parent
NEO = [str(Path(sys.executable).with_name("neo"))]
HOT_SCRIPT = """import os, torch.distributed as dist
VERSION = 0
print("BENCH", os.environ.get("RANK"), VERSION, flush=True)
"""


CLIENT_MODULES = ("jupyter_neo.cli.main", "jupyter_neo.controller.client")  # what a forwarded command imports


def compile_package() -> None:
    """Bytecode for the package, as users run it: a wheel install compiles it at install time and
    an editable one on first import, unless PYTHONDONTWRITEBYTECODE is set (as on this machine),
    when every ``neo`` would compile its modules again (~7 ms of each command)."""
    import compileall

    compileall.compile_dir(str(HERE.parent / "jupyter_neo"), quiet=1)


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.home = work / "home"
        self.env = dict(os.environ, NEO_HOME=str(self.home), NEO_CONFIG=str(work / "neo.yaml"))
        self.env.pop("NEO_CONTROLLER", None)

    def config(self, nodes: int, gpus: int) -> None:
        (self.work / "neo.yaml").write_text(
            f"clusters:\n  - name: local\n    nodes: {nodes}\n    gpus_per_node: {gpus}\n"
        )

    def neo(self, *args: str, cwd: Path | None = None, check: bool = True) -> tuple[float, str]:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [*NEO, *args], env=self.env, cwd=cwd, capture_output=True, text=True, check=False
        )
        dt = (time.perf_counter() - t0) * 1000
        if check and proc.returncode:
            raise SystemExit(f"neo {' '.join(args)} failed: {proc.stderr}")
        return dt, proc.stdout

    def controller_ms(self, command: str, count: int) -> list[float]:
        """The controller's own time for the last ``count`` commands starting with ``command``
        (from its log): what the command costs without the client's interpreter start."""
        lines = (self.home / "controller.log").read_text().splitlines()
        mine = [ln for ln in lines if f"] neo {command}" in ln and ": exit " in ln]
        return [float(ln.rsplit(" in ", 1)[1].split()[0]) for ln in mine[-count:]]

    def call_ms(self, verb: str, count: int) -> list[float]:
        """The controller's own time for its last ``count`` ``call`` requests of ``verb`` (its log)."""
        lines = (self.home / "controller.log").read_text().splitlines()
        mine = [ln for ln in lines if f"] call {verb}: result in " in ln]
        return [float(ln.rsplit(" in ", 1)[1].split()[0]) for ln in mine[-count:]]

    def controller(self) -> psutil.Process:
        return psutil.Process(int((self.home / "controller.pid").read_text()))


def copy_tree(dest: Path) -> int:
    """The torch package without shared libraries or bytecode; returns its file count."""
    import torch

    src = Path(torch.__file__).parent
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.so", "*.so.*", "__pycache__", "lib"))
    return sum(1 for p in dest.rglob("*") if p.is_file())


def pods_hold(home: Path, rel: str, needle: str) -> bool:
    currents = list(home.glob("local/local/*/node*/ws/current"))
    return bool(currents) and all(needle in (c / rel).read_text(errors="replace") for c in currents)


def edit(root: Path, files: list[str], rng: random.Random, tag: str) -> str:
    rel = rng.choice(files)
    with open(root / rel, "a") as f:
        f.write(f"# {tag}\n")
    return rel


def rsync4(src: Path, targets: list[Path]) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(targets)) as pool:
        codes = list(
            pool.map(
                lambda d: (
                    subprocess.run(
                        ["rsync", "-a", "--delete", "--no-whole-file", f"{src}/", f"{d}/"], check=False
                    ).returncode
                ),
                targets,
            )
        )
    assert not any(codes)
    return (time.perf_counter() - t0) * 1000


def headline(b: Bench, reps: int, rows: list[dict[str, Any]]) -> None:
    ws = b.work / "torch-tree"
    nfiles = copy_tree(ws)
    files = [str(p.relative_to(ws)) for p in ws.rglob("*.py")]
    rng = random.Random(15)
    b.config(4, 1)
    _, rid = b.neo("reserve", "--gpus", "4", "--nodes", "4")
    rid = rid.strip()
    first, _ = b.neo("sync", rid, cwd=ws)
    targets = [b.work / f"rsync{i}" for i in range(4)]
    rsync4(ws, targets)
    print(f"tree: {nfiles} files (torch {ws}); first neo sync {first:.0f} ms; load {load()}", flush=True)

    def add(metric: str, values: list[float], inside: list[float] | None = None) -> None:
        add_row(rows, metric, values, inside)

    imp: list[float] = []
    bare: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {', '.join(CLIENT_MODULES)}"], check=True)
        imp.append((time.perf_counter() - t0) * 1000)
    add("python start (reference)", bare)
    add("CLI import (minus start)", [i - s for i, s in zip(imp, bare, strict=True)])
    add("neo status", [b.neo("status")[0] for _ in range(reps)], b.controller_ms("status", reps))
    add(
        "neo sync (no-op)",
        [b.neo("sync", rid, cwd=ws)[0] for _ in range(reps)],
        b.controller_ms("sync", reps),
    )
    neo_edit, rsync_edit = [], []
    for i in range(reps):
        rel = edit(ws, files, rng, f"neo-edit-{i}")
        neo_edit.append(b.neo("sync", rid, cwd=ws)[0])
        assert pods_hold(b.home, rel, f"neo-edit-{i}"), "every pod holds the edit"
        rsync_edit.append(rsync4(ws, targets))
    add("edit -> neo sync", neo_edit, b.controller_ms("sync", reps))
    add("edit -> 4 x rsync", rsync_edit)
    # watch mode
    watch = subprocess.Popen(
        [*NEO, "sync", rid, "--watch", "--json"], env=b.env, cwd=ws, stdout=subprocess.PIPE
    )
    assert watch.stdout is not None
    watch.stdout.readline()  # the first report: watching
    lat = []
    for i in range(20):
        time.sleep(0.5)
        rel = edit(ws, files, rng, f"watch-edit-{i}")
        t0 = time.perf_counter()
        while not pods_hold(b.home, rel, f"watch-edit-{i}"):
            if time.perf_counter() - t0 > 10:
                raise SystemExit("watch: an edit did not arrive within 10 s")
            time.sleep(0.002)
        lat.append((time.perf_counter() - t0) * 1000)
    watch.terminate()
    watch.wait()
    add("watch: edit -> 4 pods", lat)
    b.neo("release", rid)


def hot_workspace(b: Bench, name: str) -> Path:
    """A 4-GPU (2 x 2) cluster and a workspace holding the hot script at version 0."""
    b.config(4, 2)
    ws = b.work / name
    ws.mkdir()
    (ws / "hot.py").write_text(HOT_SCRIPT)
    return ws


def hot(b: Bench, reps: int, rows: list[dict[str, Any]]) -> None:
    ws = hot_workspace(b, "hot-ws")
    _, hot_rid = b.neo("reserve", "--gpus", "4", "--nodes", "2")
    _, cold_rid = b.neo("reserve", "--gpus", "4", "--nodes", "2")
    hot_rid, cold_rid = hot_rid.strip(), cold_rid.strip()
    b.neo("run", "-r", hot_rid, "--hot", "hot.py", cwd=ws)  # cold start of the hot workers
    hots, colds = [], []
    for i in range(1, reps + 1):
        (ws / "hot.py").write_text(HOT_SCRIPT.replace("VERSION = 0", f"VERSION = {i}"))
        dt, out = b.neo("run", "-r", hot_rid, "--hot", "--ranks", "all", "hot.py", cwd=ws)
        assert sum(f"BENCH {r} {i}" in out for r in range(4)) == 4, out
        hots.append(dt)
        if i <= max(2, reps // 3):
            dt, out = b.neo("run", "-r", cold_rid, "--ranks", "all", "hot.py", cwd=ws)
            assert sum(f"BENCH {r} {i}" in out for r in range(4)) == 4, out
            colds.append(dt)
    for metric, values in (("neo run --hot: edit -> 4 ranks", hots), ("neo run (cold relaunch)", colds)):
        add_row(rows, metric, values)
    b.neo("release", "--all")


def surfaces(b: Bench, reps: int, rows: list[dict[str, Any]]) -> None:
    """The notebook surfaces through the controller: a kernel's ``%neo run --hot``, a REST GET."""
    from jupyter_client.manager import KernelManager

    ws = hot_workspace(b, "kernel-ws")
    _, rid = b.neo("reserve", "--gpus", "4", "--nodes", "2")
    rid = rid.strip()
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=dict(b.env), cwd=str(ws))
    kc = km.client()
    kc.start_channels()
    out: list[str] = []

    def cell(code: str) -> str:
        out.clear()

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise SystemExit(f"kernel: {msg['content']['ename']}: {msg['content']['evalue']}")

        kc.execute_interactive(code, timeout=300, output_hook=hook)
        return "".join(out)

    times = []
    try:
        kc.wait_for_ready(timeout=120)
        # Plain text view (the widget shows the same events): the lines prove the new code ran.
        cell(
            "%load_ext jupyter_neo\nfrom jupyter_neo import magics\nmagics._MAGICS[id(get_ipython())].widgets = False"
        )
        cell(f"%neo run -r {rid} --hot hot.py")  # cold start of the hot workers
        for i in range(1, reps + 1):
            (ws / "hot.py").write_text(HOT_SCRIPT.replace("VERSION = 0", f"VERSION = {i}"))
            t0 = time.perf_counter()
            text = cell(f"%neo run -r {rid} --hot --ranks all hot.py")
            times.append((time.perf_counter() - t0) * 1000)
            assert sum(f"BENCH {r} {i}" in text for r in range(4)) == 4, text
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    add_row(rows, "kernel %neo run --hot: edit -> 4 ranks", times, b.call_ms("run", reps))
    rest = rest_round_trips(b, reps)
    add_row(rows, "REST GET reservations (jupyter server)", rest)
    b.neo("release", rid)


def rest_round_trips(b: Bench, reps: int) -> list[float]:
    """``GET /jupyter-neo/reservations`` through a real ``jupyter server`` process, token auth."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = dict(b.env, JUPYTER_CONFIG_DIR=str(b.work / "jcfg"), JUPYTER_RUNTIME_DIR=str(b.work / "jrt"))
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--port={port}", "--ip=127.0.0.1", "--no-browser",
         "--allow-root", "--ServerApp.token=bench", "--ServerApp.jpserver_extensions={'jupyter_neo': True}",
         f"--ServerApp.root_dir={b.work}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/jupyter-neo/reservations"
    req = urllib.request.Request(url, headers={"Authorization": "token bench"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(req, timeout=10).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            body = urllib.request.urlopen(req, timeout=10).read()
            times.append((time.perf_counter() - t0) * 1000)
            assert b'"reservations"' in body
        return times
    finally:
        server.terminate()
        server.wait(30)


def add_row(
    rows: list[dict[str, Any]], metric: str, values: list[float], inside: list[float] | None = None
) -> None:
    row: dict[str, Any] = {
        "metric": metric,
        "median_ms": round(statistics.median(values), 1),
        "p95_ms": round(pctl(values, 0.95), 1),
        "n": len(values),
        "load": load(),
    }
    if inside:
        row["controller_median_ms"] = round(statistics.median(inside), 1)
    rows.append(row)
    print(
        f"{metric:<28} median {statistics.median(values):7.1f} ms  p95 {pctl(values, 0.95):7.1f}"
        + (f"  (in the controller: median {statistics.median(inside):.1f} ms)" if inside else ""),
        flush=True,
    )


def scale(b: Bench, sizes: list[int], rows: list[dict[str, Any]]) -> None:
    """Each size twice: star fan-out (the loopback default) and the relay tree (``NEO_SYNC_RELAY=on``,
    as across a network). The controller restarts between the two so it reads the setting."""
    src = HERE.parent / "jupyter_neo"
    for mode in ("star", "tree"):
        b.env["NEO_SYNC_RELAY"] = "off" if mode == "star" else "on"
        b.neo("daemon", "stop", check=False)
        for n in sizes:
            ws = b.work / f"scale-{mode}-{n}"
            shutil.copytree(src, ws, ignore=shutil.ignore_patterns("__pycache__", "labextension"))
            b.config(n, 1)
            b.neo("clusters")  # the controller is up before we read its CPU time
            cpu0 = sum(b.controller().cpu_times()[:2])
            reserve, rid = b.neo("reserve", "--gpus", str(n), "--nodes", str(n))
            rid = rid.strip()
            b.neo("sync", rid, cwd=ws)
            b.neo("sync", rid, cwd=ws)  # builds the relay tree (once per warm connection set)
            with open(ws / "core.py", "a") as f:
                f.write("# scale edit\n")
            sync, out = b.neo("sync", rid, "--json", cwd=ws)
            report = json.loads(out)
            assert report["changed"] == 1 and pods_hold(b.home, "core.py", "# scale edit")
            run, _ = b.neo("run", "-r", rid, "--cmd", "true", cwd=ws)
            status, _ = b.neo("status")
            cpu = sum(b.controller().cpu_times()[:2]) - cpu0
            row = {
                "metric": f"scale N={n}",
                "fan_out": mode,
                "reserve_ms": round(reserve),
                "edit_sync_ms": round(sync, 1),
                "uplink_bytes": report["uplink_bytes"],
                "run_true_ms": round(run, 1),
                "status_ms": round(status, 1),
                "controller_cpu_s": round(cpu, 2),
                "load": load(),
            }
            rows.append(row)
            print(row, flush=True)
            b.neo("release", rid)
    b.env.pop("NEO_SYNC_RELAY")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reps", type=int)
    p.add_argument("--skip", nargs="*", default=[], choices=["headline", "hot", "surfaces", "scale"])
    p.add_argument("--sizes", type=int, nargs="*")
    args = p.parse_args(argv)
    reps = args.reps or (5 if args.quick else 15)
    sizes = args.sizes or ([1, 4, 16] if args.quick else [1, 4, 16, 64])
    if not shutil.which("rsync"):
        raise SystemExit("rsync is needed for the baseline (apt-get install -y rsync)")
    compile_package()
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="neo-bench-ctl-"))
    b = Bench(work)
    try:
        if "headline" not in args.skip:
            headline(b, reps, rows)
        if "hot" not in args.skip:
            hot(b, reps, rows)
        if "surfaces" not in args.skip:
            surfaces(b, max(reps, 10), rows)
        if "scale" not in args.skip:
            scale(b, sizes, rows)
    finally:
        subprocess.run([*NEO, "release", "--all"], env=b.env, capture_output=True, check=False)
        subprocess.run([*NEO, "daemon", "stop"], env=b.env, capture_output=True, check=False)
        print(f"wrote {write_csv('controller', rows, stamp=False)}")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
