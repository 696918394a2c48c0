"""Connect cost per backend (issue #15, item 4): a new agent connection vs a warm one.

Run: ``python -m bench.connect [--reps N] [--backends local k8s slurm]`` (k8s and slurm need root
and their harnesses: ``make k8s-harness``; ``tests/engines/slurm``; each is started for the run
if it is not up, under ``flock /tmp/neo-k8s.lock`` / ``/tmp/neo-slurm.lock``, and stopped again
if this run started it). One pod per backend, in one process, through the same code the resident
controller uses:

- *new connection*: ``Core.open_connection`` (the backend's byte stream: a unix socket on the
  local backend, an exec websocket through the API server and kubelet on Kubernetes, an ``srun``
  step on Slurm; then the agent handshake: hello, HMAC challenge) plus one ``ping`` round trip.
  The first one of a fresh process is listed apart (a subprocess timed from its start: imports,
  configuration and client set-up, e.g. the ``kubernetes`` package, kubeconfig, TLS): what a
  command paid per invocation before the resident controller, and what a controller pays once;
- *warm*: a ``ping`` over the connection the controller already holds (what every command after
  the first pays: the resident controller opens one stream per pod per lifetime).

Prints a markdown table and writes ``bench/results/connect.csv``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.results import write_csv

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """The machine-wide lock of a shared harness (the tests take the same one)."""
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def measure(config: str, home: Path, gpus: int, reps: int) -> dict[str, list[float]]:
    """Reserve one pod from ``config`` and time new and warm connections to its agent, in ms."""
    from jupyter_neo.client import Client
    from jupyter_neo.config import load_config

    cfg = home / "neo.yaml"
    cfg.write_text(config)
    client = Client(load_config(cfg, home / "home"))
    res = client.reserve(gpus=gpus, nodes=1, idle_ttl="10m")
    core: Any = client.core
    pod = res.pods[0]

    async def new_conn() -> float:
        t0 = time.perf_counter()
        conn = await core.open_connection(res, pod)
        await conn.call("ping")
        dt = (time.perf_counter() - t0) * 1000
        await conn.close()
        return dt

    async def warm(conn: Any) -> float:
        t0 = time.perf_counter()
        await conn.call("ping")
        return (time.perf_counter() - t0) * 1000

    try:
        first = [cold_process(cfg, home / "home", res.id) for _ in range(3)]
        news = [client.run_async(new_conn()) for _ in range(reps)]
        held = client.run_async(core.connect(res))[0]
        warms = [client.run_async(warm(held)) for _ in range(reps * 4)]
        cli_first, cli_warm = cli_ping(cfg, home / "home", res.id, reps)
    finally:
        client.release(res.id)
        client.close()
    return {
        "first connection of a new process (imports, client set-up)": first,
        "new connection (stream + handshake + ping)": news,
        "warm: ping over the held stream": warms,
        "CLI `neo ping`, first command (starts the controller, which opens the stream)": cli_first,
        "CLI `neo ping`, warm controller (wall)": cli_warm,
    }


def cli_ping(cfg: Path, home: Path, rid: str, reps: int) -> tuple[list[float], list[float]]:
    """What a user waits for: ``neo ping`` as the first command (it starts the resident controller,
    which reads the state, opens the stream and authenticates) vs with the controller holding the
    stream, in ms."""
    neo = str(Path(sys.executable).with_name("neo"))
    env = dict(os.environ, NEO_HOME=str(home), NEO_CONFIG=str(cfg))
    env.pop("NEO_CONTROLLER", None)

    def run(*args: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([neo, *args], env=env, capture_output=True, check=True, timeout=300)
        return (time.perf_counter() - t0) * 1000

    first: list[float] = []
    for _ in range(max(1, reps // 2)):
        run("daemon", "stop")
        first.append(run("ping", rid))
    warm = [run("ping", rid) for _ in range(reps)]
    run("daemon", "stop")
    return first, warm


COLD = """
import asyncio, json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from jupyter_neo.config import load_config
from jupyter_neo.core import Core

async def main():
    core = Core(load_config(Path(sys.argv[1]), Path(sys.argv[2])))
    res = core.store.reservation(sys.argv[3])
    t1 = time.perf_counter()
    core.backend(res.cluster)
    t2 = time.perf_counter()
    conn = await core.open_connection(res, res.pods[0])
    await conn.call("ping")
    return t1, t2, conn

t1, t2, conn = asyncio.run(main())
t3 = time.perf_counter()
print(json.dumps([(t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000]), file=sys.stderr)
print(json.dumps((t3 - t0) * 1000))
"""


def cold_process(cfg: Path, home: Path, rid: str) -> float:
    """A new process's first connection (what a controller pays once when it starts): imports,
    configuration, the backend client's set-up (``kubernetes``, kubeconfig, TLS), stream, handshake."""
    out = subprocess.run(
        [sys.executable, "-c", COLD, str(cfg), str(home), rid],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env=dict(os.environ, NEO_HOME=str(home)),
    )
    print(f"  cold process: core/config/store, backend set-up, connect ms = {out.stderr.strip()}", flush=True)
    return float(out.stdout.strip().splitlines()[-1])


def local(work: Path, reps: int) -> dict[str, list[float]]:
    return measure("clusters:\n  - {name: local, nodes: 1, gpus_per_node: 1}\n", work, 1, reps)


def kubernetes(work: Path, reps: int) -> dict[str, list[float]]:
    from tests.engines.kubernetes import harness
    from tests.k8s_real.support import cluster_entry, fresh_namespace

    why = harness.cannot_host()
    if why:
        raise SystemExit(f"k8s: cannot run: {why}")
    with locked("/tmp/neo-k8s.lock"):
        cluster = harness.already_running()
        started = cluster is None
        if cluster is None:
            cluster = harness.start_cluster()
        try:
            fresh_namespace(cluster, "neo-bench-connect")
            entry = cluster_entry("kube", cluster.kubeconfig, "neo-bench-connect")
            out = measure("clusters:\n" + entry, work, harness.GPUS_PER_NODE, reps)
            cluster.kubectl("delete", "namespace", "neo-bench-connect", "--wait=false")
            return out
        finally:
            if started and os.environ.get("NEO_K8S_KEEP") != "1":
                harness.stop_cluster()


def slurm(work: Path, reps: int) -> dict[str, list[float]]:
    from tests.engines.slurm.harness import (
        SlurmHarnessError,
        cluster_running,
        ensure_slurm_cluster,
        stop_slurm_cluster,
    )
    from tests.slurm_support import slurm_config

    with locked("/tmp/neo-slurm.lock"):
        started = not cluster_running()
        try:
            cluster = ensure_slurm_cluster(nodes=4, gpus_per_node=8)
        except SlurmHarnessError as exc:
            raise SystemExit(f"slurm: cannot run: {exc}") from None
        try:
            os.environ["SLURM_CONF"] = str(cluster.conf)
            return measure(slurm_config(cluster, work / "nodes"), work, 1, reps)
        finally:
            if started and os.environ.get("NEO_SLURM_KEEP") != "1":
                stop_slurm_cluster()


BACKENDS = {"local": local, "k8s": kubernetes, "slurm": slurm}
LABELS = {
    "local": "local (unix socket to the agent)",
    "k8s": "Kubernetes 1.20 harness (exec websocket via the API server)",
    "slurm": "Slurm harness (srun step)",
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--backends", nargs="*", default=list(BACKENDS), choices=list(BACKENDS))
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # the harnesses live in tests/
    rows: list[dict[str, Any]] = []
    for name in args.backends:
        with tempfile.TemporaryDirectory(prefix=f"neo-bench-connect-{name}-") as tmp:
            load0 = os.getloadavg()[0]
            for measure_name, values in BACKENDS[name](Path(tmp), args.reps).items():
                rows.append(
                    {
                        "backend": LABELS[name],
                        "measure": measure_name,
                        "median_ms": round(statistics.median(values), 2),
                        "min_ms": round(min(values), 2),
                        "max_ms": round(max(values), 2),
                        "n": len(values),
                        "load": f"{load0:.1f} -> {os.getloadavg()[0]:.1f}",
                    }
                )
                print(rows[-1], flush=True)
    print(f"\n| backend | connection | median ms | min | max | n | 1-min load ({os.cpu_count()} cores) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['measure']} | {r['median_ms']} | {r['min_ms']} | {r['max_ms']} "
            f"| {r['n']} | {r['load']} |"
        )
    print(f"wrote {write_csv('connect', rows, stamp=False)}")


if __name__ == "__main__":
    main()
