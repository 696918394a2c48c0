"""Real-cluster tests of the in-repo Slurm harness (tests/engines/slurm).

They prove the harness gives the Slurm backend what it relies on: gang allocation of whole nodes
with GPUs held without a shell (``salloc --no-shell``), launching on a chosen node of an allocation
(``srun --jobid --overlap -w``), rejection of impossible requests at submit, all-or-nothing
scheduling, release with ``scancel``, and node-to-node name resolution good enough for a real
``torch.distributed`` rendezvous. Needs root; skips otherwise (fails under CI=true).
"""

from __future__ import annotations

import importlib.util
import random
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.engines.slurm.harness import SlurmCluster

pytest_plugins = ["tests.engines.slurm.conftest_fixture"]

pytestmark = pytest.mark.timeout(180)  # the first test may include apt-get install of Slurm

Namer = Callable[[str], str]
"""``job_name`` fixture type: suffix -> unique job name that is cancelled at teardown."""


@pytest.fixture
def job_name(slurm_cluster: SlurmCluster) -> Iterator[Namer]:
    """Hands out unique job names and cancels every job so named at teardown.

    Each test must leave all nodes idle, or the next test's gang arithmetic is wrong.
    """
    prefix = f"neo-t-{uuid.uuid4().hex[:8]}"
    yield lambda suffix: f"{prefix}-{suffix}"
    jobs = slurm_cluster.run("squeue", "-h", "-o", "%i %j").stdout.split("\n")
    ids = [line.split()[0] for line in jobs if line.strip() and line.split()[1].startswith(prefix)]
    if ids:
        slurm_cluster.run("scancel", *ids)
    slurm_cluster.wait_all_idle(timeout=20)


def _job_field(cluster: SlurmCluster, job: int | str, fmt: str) -> str:
    """One ``squeue`` format field for a job, "" when the job is no longer listed."""
    return cluster.run("squeue", "-h", "-j", str(job), "-o", fmt).stdout.strip()


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def test_cluster_shape(slurm_cluster: SlurmCluster) -> None:
    """4 idle nodes with gpu:8 each, in the partition the harness reports."""
    out = slurm_cluster.run("sinfo", "-h", "-N", "-o", "%N %G %P %T", check=True).stdout.split("\n")
    rows = sorted(tuple(line.split()) for line in out if line.strip())
    assert [r[0] for r in rows] == sorted(slurm_cluster.nodes) == ["n1", "n2", "n3", "n4"]
    assert {r[1] for r in rows} == {"gpu:8"}
    assert {r[2].rstrip("*") for r in rows} == {slurm_cluster.partition}
    assert slurm_cluster.conf.is_file() and not str(slurm_cluster.conf).startswith("/etc/slurm")


def test_salloc_no_shell_two_nodes_with_gpus(slurm_cluster: SlurmCluster, job_name: Namer) -> None:
    """A 2-node x 8-GPU gang is granted at once and shows RUNNING in squeue with 2 nodes."""
    job = slurm_cluster.salloc("-N2", "--gres=gpu:8", "-J", job_name("a"))
    state, nnodes, nodelist = _job_field(slurm_cluster, job, "%T %D %N").split()
    assert (state, nnodes) == ("RUNNING", "2")
    assert len(slurm_cluster.hostnames(nodelist)) == 2
    info = slurm_cluster.run("scontrol", "show", "job", str(job), check=True).stdout
    assert "TresPerNode=gres:gpu:8" in info, info


def test_srun_overlap_on_chosen_node(slurm_cluster: SlurmCluster, job_name: Namer) -> None:
    """``srun --jobid J --overlap -N1 -w NODE`` runs on exactly NODE, with the 8 GPUs visible."""
    job = slurm_cluster.salloc("-N2", "--gres=gpu:8", "-J", job_name("a"))
    nodes = slurm_cluster.hostnames(_job_field(slurm_cluster, job, "%N"))
    for node in reversed(nodes):  # the second node first: -w must really pick, not default to node 1
        proc = slurm_cluster.run(
            "srun", f"--jobid={job}", "--overlap", "-N1", "-n1", "-w", node,
            "bash", "-c", "echo $(hostname) $CUDA_VISIBLE_DEVICES",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [node, "0,1,2,3,4,5,6,7"]


def test_nodes_resolve_own_and_peer_names(slurm_cluster: SlurmCluster, job_name: Namer) -> None:
    """Inside a node, getaddrinfo(gethostname()) and every peer's name give the bridge addresses.

    torchrun and gloo need exactly this (own name -> interface to bind, leader's name -> rendezvous).
    """
    job = slurm_cluster.salloc("-N2", "-J", job_name("dns"))
    probe = (
        "import socket,sys; h=socket.gethostname(); "
        "print(h, socket.getaddrinfo(h, None, socket.AF_INET)[0][4][0], "
        "*[socket.gethostbyname(n) for n in sys.argv[1:]])"
    )
    proc = slurm_cluster.run(
        "srun", f"--jobid={job}", "--overlap", "-N2", "--ntasks-per-node=1",
        sys.executable, "-c", probe, *slurm_cluster.nodes,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = sorted(line.split() for line in proc.stdout.splitlines() if line.strip())
    assert len(lines) == 2
    expected_peers = [slurm_cluster.node_addrs[n] for n in slurm_cluster.nodes]
    for host, own_addr, *peers in lines:
        assert own_addr == slurm_cluster.node_addrs[host]
        assert peers == expected_peers


def test_node_reachable_from_login_host(slurm_cluster: SlurmCluster, job_name: Namer) -> None:
    """The test process (the "login host") can connect to a server a job runs on a node.

    Node names do not resolve in the login host's namespace: it must use the node's address
    (``SlurmCluster.node_addrs``, or NodeAddr from ``scontrol show node``).
    """
    job = slurm_cluster.salloc("-N1", "-J", job_name("srv"))
    node = _job_field(slurm_cluster, job, "%N")
    server = (
        "import socket; s=socket.socket(); s.bind(('0.0.0.0', 0)); s.listen(1); "
        "print(s.getsockname()[1], flush=True); c,_=s.accept(); c.sendall(socket.gethostname().encode())"
    )
    srv = subprocess.Popen(
        ["srun", f"--jobid={job}", "--overlap", "-N1", "-n1", sys.executable, "-c", server],
        env=slurm_cluster.environ(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert srv.stdout is not None
        port = int(srv.stdout.readline())
        with socket.create_connection((slurm_cluster.node_addrs[node], port), timeout=10) as conn:
            assert conn.recv(100).decode() == node
        assert srv.wait(timeout=10) == 0
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


def test_nsenter_runs_on_node_outside_slurm(slurm_cluster: SlurmCluster) -> None:
    """``nsenter_argv(node)`` gives a process the node's hostname and name resolution, no job needed."""
    node = slurm_cluster.nodes[-1]
    argv = [*slurm_cluster.nsenter_argv(node), "sh", "-c", "hostname; getent hosts $(hostname) n1"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout.split()
    assert out == [node, slurm_cluster.node_addrs[node], node, slurm_cluster.node_addrs["n1"], "n1"]


def test_oversized_request_rejected_at_submit(slurm_cluster: SlurmCluster, job_name: Namer) -> None:
    """Asking for more nodes than exist fails immediately instead of pending forever."""
    name = job_name("big")
    t0 = time.monotonic()
    proc = slurm_cluster.run(
        "salloc", "--no-shell", f"-N{len(slurm_cluster.nodes) + 1}", "-J", name, timeout=20
    )
    assert proc.returncode != 0
    assert "Granted" not in proc.stderr
    assert time.monotonic() - t0 < 10
    assert slurm_cluster.run("squeue", "-h", "-n", name).stdout.strip() == ""


def test_gang_no_partial_allocation(slurm_cluster: SlurmCluster, job_name: Namer) -> None:
    """Hold 2 of 4 nodes: a 3-node gang pends (Resources) and takes NO node until 3 are free."""
    holder = slurm_cluster.salloc("-N2", "--gres=gpu:8", "-J", job_name("hold"))
    held = set(slurm_cluster.hostnames(_job_field(slurm_cluster, holder, "%N")))
    gang_name = job_name("gang")
    waiter = subprocess.Popen(
        ["salloc", "--no-shell", "-N3", "--gres=gpu:8", "-J", gang_name],
        env=slurm_cluster.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def gang_state() -> str:
            return slurm_cluster.run("squeue", "-h", "-n", gang_name, "-o", "%T %R").stdout.strip()

        _wait_for(lambda: gang_state() == "PENDING (Resources)", 10, "the 3-node gang to pend on Resources")
        time.sleep(1.5)  # > bf_interval: give the backfill scheduler a chance to (wrongly) start it
        assert gang_state() == "PENDING (Resources)"
        assert set(slurm_cluster.idle_nodes()) == set(slurm_cluster.nodes) - held  # free nodes stay idle

        # releasing the holder lets the whole gang start at once, on 3 nodes
        assert slurm_cluster.run("scancel", str(holder)).returncode == 0
        out, _ = waiter.communicate(timeout=20)
        assert waiter.returncode == 0, out
        assert "Granted job allocation" in out
        gang = slurm_cluster.run("squeue", "-h", "-n", gang_name, "-o", "%T %D").stdout.split()
        assert gang == ["RUNNING", "3"]
    finally:
        if waiter.poll() is None:
            slurm_cluster.run("scancel", "-n", gang_name)
            waiter.wait(timeout=10)


def test_scancel_frees_nodes(slurm_cluster: SlurmCluster, job_name: Namer) -> None:
    """``scancel`` ends the allocation and returns its nodes to idle within seconds."""
    job = slurm_cluster.salloc("-N2", "--gres=gpu:8", "-J", job_name("a"))
    assert len(slurm_cluster.idle_nodes()) == len(slurm_cluster.nodes) - 2
    t0 = time.monotonic()
    assert slurm_cluster.run("scancel", str(job)).returncode == 0
    _wait_for(lambda: _job_field(slurm_cluster, job, "%T") == "", 10, "the job to leave squeue")
    slurm_cluster.wait_all_idle(timeout=10)
    assert time.monotonic() - t0 < 10
    state = slurm_cluster.run("scontrol", "show", "job", str(job)).stdout
    assert "JobState=CANCELLED" in state


_GLOO_SCRIPT = textwrap.dedent(
    """
    import datetime, os, socket, sys
    import torch
    import torch.distributed as dist

    leader, port = sys.argv[1], sys.argv[2]
    rank, world = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
    dist.init_process_group(
        "gloo", init_method=f"tcp://{leader}:{port}", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=30),
    )
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    print(f"RESULT {socket.gethostname()} rank={rank} sum={t.item():g}", flush=True)
    # engines.md: gloo may abort ("terminate called without an active exception") while the
    # interpreter finalises; tear the group down ourselves, then skip finalisation.
    dist.destroy_process_group()
    os._exit(0)
    """
)


@pytest.mark.slow
def test_torch_gloo_all_reduce_across_two_nodes(
    slurm_cluster: SlurmCluster, job_name: Namer, tmp_path: Path
) -> None:
    """One process per node under srun; rendezvous on the first node's *hostname*; all_reduce sums."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed in the test Python (pip install torch numpy)")
    job = slurm_cluster.salloc("-N2", "--gres=gpu:8", "-J", job_name("torch"))
    nodes = slurm_cluster.hostnames(_job_field(slurm_cluster, job, "%N"))
    script = tmp_path / "allreduce.py"
    script.write_text(_GLOO_SCRIPT)
    port = str(random.randint(20000, 40000))
    proc = slurm_cluster.run(
        "srun", f"--jobid={job}", "--overlap", "-N2", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
        sys.executable, str(script), nodes[0], port,
        timeout=50, env={"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    results = sorted(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
    assert results == [f"RESULT {nodes[0]} rank=0 sum=3", f"RESULT {nodes[1]} rank=1 sum=3"]
