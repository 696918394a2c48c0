"""``neo run`` on a Slurm gang: the workspace reaches both nodes, torchrun DDP spans them, and a
node that dies mid-run fails the run at once with that node named.

Real torch (gloo on CPU) under real Slurm steps; each node is its own network namespace, so the
rendezvous really crosses "machines". Needs root and torch (skips otherwise; fails under CI=true
for want of root, as the other Slurm tests).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NEO, Neo
from tests.engines.slurm.harness import SlurmCluster, ensure_slurm_cluster
from tests.slurm_support import live_procs_mentioning, neo_jobs, wait_for

pytest.importorskip("torch")
pytest_plugins = ["tests.engines.slurm.conftest_fixture", "tests.slurm_fixture"]
pytestmark = pytest.mark.timeout(180)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def node_of(cluster: SlurmCluster, address: str) -> str:
    return next(node for node, addr in cluster.node_addrs.items() if addr == address)


def test_sync_and_ddp_step_across_two_slurm_nodes(
    sneo: Neo, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(EXAMPLES / "train_ddp.py", ws / "train_ddp.py")
    (ws / "marker.txt").write_text("synced\n")
    res: Any = sneo.json("reserve", "--gpus", "4", "--nodes", "2")
    nodes = [node_of(slurm_cluster, p["address"]) for p in res["pods"]]
    assert len(set(nodes)) == 2

    # the workspace is on both nodes, and each pod's plain command runs on its own node
    proc = sneo.run(
        "run",
        "-r",
        res["id"],
        "--ranks",
        "all",
        "--cmd",
        "sh -c 'echo $(hostname) $(cat marker.txt)'",
        cwd=ws,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == [
        f"[node 0 rank 0] {nodes[0]} synced",
        f"[node 1 rank 1] {nodes[1]} synced",
    ]

    proc = sneo.run(
        "run", "-r", res["id"], "--ranks", "all", "train_ddp.py", "--steps", "3", cwd=ws, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    agree = [line for line in proc.stdout.splitlines() if "ranks agree" in line]
    assert len(agree) == 4 and all("ranks agree: True" in line for line in agree), proc.stdout
    assert len({line.split("checksum ")[1].split()[0] for line in agree}) == 1
    run: Any = sneo.json("runs")
    assert run[0]["state"] == "succeeded" and run[0]["master"].startswith(
        slurm_cluster.node_addrs[nodes[0]] + ":"
    )
    sneo.run("release", res["id"], check=True)
    assert neo_jobs(slurm_cluster, sneo) == []


def kill_node(cluster: SlurmCluster, node: str) -> None:
    """Power-cut ``node``: SIGKILL its slurmd and every process in its network namespace."""
    pids = subprocess.run(
        ["ip", "netns", "pids", cluster.netns(node)], capture_output=True, text=True, check=True
    ).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_node_killed_mid_run_fails_the_run_with_the_node_named(
    sneo: Neo, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    res: Any = sneo.json("reserve", "--gpus", "4", "--nodes", "2")
    victim = node_of(slurm_cluster, res["pods"][1]["address"])
    marker = f"neo-test-{res['id']}"
    proc = subprocess.Popen(
        # a plain command per node: the gang semantics are torchrun's, without its start-up time
        [
            *NEO,
            "run",
            "-r",
            res["id"],
            "--ranks",
            "all",
            "--cmd",
            f"sh -c 'echo up; sleep 600; echo {marker}'",
        ],
        cwd=ws,
        env=sneo.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = 0
        while seen < 2:
            line = proc.stdout.readline()
            assert line, "the run ended before every rank was up"
            seen += "up" in line
        kill_node(slurm_cluster, victim)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 255, err
        pod = f"pod {res['id']}-1-{victim}"
        # Either the stream broke ("was lost") or the liveness probe gave up first.
        assert f"{pod} was lost" in err or f"{pod} stopped answering" in err, err
        # the surviving node's command was stopped by the runner
        wait_for(lambda: not live_procs_mentioning(marker), 15, "the leader's command to stop")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ensure_slurm_cluster()  # brings the killed node back (idempotent: restarts only what is dead)
    sneo.run("release", "--all", check=True)
    assert neo_jobs(slurm_cluster, sneo) == []
