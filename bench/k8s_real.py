"""``python -m bench.k8s_real``: what a user waits for on the real two-node Kubernetes (issue #16).

Needs root and the harness (``make k8s-harness``); starts the cluster unless it is running
(``NEO_K8S_KEEP=1`` leaves it up afterwards). Measures, each ``--reps`` times, through the CLI a
user types unless said otherwise:

- reserve-to-ready of 1 pod and of a 2-pod whole-node gang (``neo reserve`` wall time, CLI start
  included; pods are created, scheduled, started by containerd and their agents booted over exec);
- exec-stream open: ``KubernetesBackend.open_stream`` in-process (TLS + websocket upgrade through
  the apiserver and kubelet, v4.channel.k8s.io), first and warm; plus ``import kubernetes`` alone;
- one-line edit -> ``neo sync`` CLI wall time to both pods of the gang (a 200-file workspace).

Prints a markdown table and writes ``bench/results/k8s_real.csv``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.engines.kubernetes import harness
from tests.k8s_real.support import cluster_entry, fresh_namespace

NS = "neo-bench"
NEO = [sys.executable, "-m", "jupyter_neo.cli.main"]


def _neo(env: dict[str, str], *args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([*NEO, *args], env=env, capture_output=True, text=True, timeout=300, check=False)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"neo {' '.join(args)} failed: {proc.stderr}")
    return dt, proc.stdout


def _import_kubernetes() -> float:
    code = "import time; t=time.perf_counter(); import kubernetes.client, kubernetes.stream; print(time.perf_counter()-t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out)


async def _exec_open(config_path: Path, home: Path, rid: str, reps: int) -> list[float]:
    from jupyter_neo.config import load_config
    from jupyter_neo.core import Core

    core = Core(load_config(config_path, home))
    res = core.store.reservation(rid)
    backend = core.backend(res.cluster)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        stream = await backend.open_stream(res.pods[0], ["cat"])
        times.append(time.perf_counter() - t0)
        await stream.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    why = harness.cannot_host()
    if why:
        raise SystemExit(f"cannot run: {why}")
    try:
        cluster, started = harness.load_cluster(), False
    except (OSError, AssertionError, KeyError):  # not running: start it for this benchmark
        cluster, started = harness.start_cluster(), True
    rows: list[tuple[str, list[float]]] = []
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="neo-bench-k8s-") as tmp:
        root = Path(tmp)
        fresh_namespace(cluster, NS)
        cfg = root / "neo.yaml"
        cfg.write_text("clusters:\n" + cluster_entry("kube", cluster.kubeconfig, NS))
        env = {
            **os.environ,
            "NEO_HOME": str(root / "home"),
            "NEO_CONFIG": str(cfg),
            "XDG_CONFIG_HOME": str(root),
        }
        help_times = [_neo(env, "--help")[0] for _ in range(args.reps)]
        rows.append(("`neo --help` (CLI start, no cluster touched), s", help_times))
        rows.append(
            ("import kubernetes (client + stream), s", [_import_kubernetes() for _ in range(args.reps)])
        )
        for label, gpus, nodes in (
            ("reserve-to-ready, 1 pod, s", "8", "1"),
            ("reserve-to-ready, 2 pods (one per node), s", "16", "2"),
        ):
            times = []
            for _ in range(args.reps):
                dt, out = _neo(env, "reserve", "--gpus", gpus, "--nodes", nodes, "--json")
                times.append(dt)
                _neo(env, "release", json.loads(out)["id"])
            rows.append((label, times))
        _, out = _neo(env, "reserve", "--gpus", "16", "--nodes", "2", "--json")
        rid = json.loads(out)["id"]
        opens = asyncio.run(_exec_open(cfg, root / "home", rid, args.reps + 1))
        rows.append(("exec-stream open, first in a process, s", opens[:1]))
        rows.append(("exec-stream open, warm client, s", opens[1:]))
        ws = root / "ws"
        for i in range(200):
            (ws / f"pkg{i % 10}").mkdir(parents=True, exist_ok=True)
            (ws / f"pkg{i % 10}" / f"m{i}.py").write_text(f"X = {i}\n" * 20)
        _neo(env, "sync", rid, "--path", str(ws))
        times = []
        for i in range(args.reps):
            (ws / "pkg0" / "m0.py").write_text(f"X = {i}\n" * 20)
            dt, _ = _neo(env, "sync", rid, "--path", str(ws))
            times.append(dt)
        rows.append(("one-line edit -> `neo sync` to 2 pods (CLI wall), s", times))
        rows.append(
            (
                "`neo status` with the gang held (CLI wall), s",
                [_neo(env, "status")[0] for _ in range(args.reps)],
            )
        )
        _neo(env, "release", rid)
        cluster.kubectl("delete", "namespace", NS, "--wait=false")
    if started and os.environ.get("NEO_K8S_KEEP") != "1":
        harness.stop_cluster()
    load = f"1-min load {load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    print(
        f"| measure (real 2-node k8s 1.20.2, {args.reps} reps, {load}) | median | min | max |\n|---|---|---|---|"
    )
    for label, ts in rows:
        print(f"| {label} | {statistics.median(ts):.3f} | {min(ts):.3f} | {max(ts):.3f} |")
    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(exist_ok=True)
    with (out_dir / "k8s_real.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["measure", "seconds"])
        for label, ts in rows:
            w.writerows([label, t] for t in ts)


if __name__ == "__main__":
    main()
