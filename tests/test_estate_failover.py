"""Placement across backends: an estate of an SSH fleet, a Slurm cluster and a Kubernetes cluster.

``neo reserve --gpus 16`` takes the cheapest cluster with room and falls over to the next when it
is full, whatever the backend: real sshd hosts, the real Slurm test cluster, and the in-repo
Kubernetes API emulator (the stand-in for a control plane). Run it under
``flock /tmp/neo-slurm.lock`` on a shared machine (it starts the Slurm test cluster).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Neo, use_config
from tests.engines.slurm.harness import SlurmCluster
from tests.engines.ssh.harness import SshFleet
from tests.k8s_emulator import Emulator, FakeNode
from tests.slurm_support import neo_jobs, slurm_config
from tests.ssh_support import assert_nothing_left, fleet_yaml

pytest_plugins = ["tests.engines.slurm.conftest_fixture", "tests.engines.ssh.conftest_fixture"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    server = Emulator([FakeNode("gpu-a", 8), FakeNode("gpu-b", 8)]).start()
    yield server
    server.stop()


def estate(neo: Neo, fleet: SshFleet, slurm: SlurmCluster, emu: Emulator, pods: Path) -> None:
    """ssh at $1.50, slurm at $2.00, kubernetes at $3.00 per GPU-hour."""
    slurm_entry = slurm_config(slurm, pods / "slurm", pending_timeout="20s").removeprefix("clusters:\n")
    slurm_entry = slurm_entry.replace(
        "    backend: slurm\n", "    backend: slurm\n    price_per_gpu_hour: 2.0\n"
    )
    kubeconfig = emu.kubeconfig(neo.home.parent / "kubeconfig")
    kube_entry = (
        "  - name: kube\n    backend: kubernetes\n    nodes: 2\n    gpus_per_node: 8\n"
        "    price_per_gpu_hour: 3.0\n"
        f"    options: {{kubeconfig: {kubeconfig}, namespace: neo, pod_root: '{pods}/k8s/{{pod}}', "
        "schedule_timeout_s: 2}\n"
    )
    fleet_entry = fleet_yaml(fleet, pods / "ssh", ["gpu1", "gpu2"], price=1.5)
    use_config(neo, "clusters:\n" + fleet_entry + slurm_entry + kube_entry)
    neo.env["SLURM_CONF"] = str(slurm.conf)


def test_reserve_16_picks_by_price_and_fails_over_across_backends(
    neo: Neo, ssh_fleet: SshFleet, slurm_cluster: SlurmCluster, emu: Emulator, tmp_path: Path
) -> None:
    pods = tmp_path / "pods"
    for host in ("gpu1", "gpu2"):
        for path in ssh_fleet.lease_dir(host).glob("gpu*.lease"):
            path.unlink()
    slurm = slurm_cluster
    estate(neo, ssh_fleet, slurm_cluster, emu, pods)
    try:
        explained = neo.run("reserve", "--gpus", "16", "--explain", check=True).stdout
        order = [line.split()[0] for line in explained.splitlines()[1:4]]
        assert order == ["fleet", "slurm-test", "kube"], explained

        chosen: list[Any] = []
        for _ in range(4):
            got = neo.run("reserve", "--gpus", "16", "--json", timeout=240)
            assert got.returncode == 0, got.stderr + slurm.run("squeue").stdout
            res: Any = json.loads(got.stdout)
            assert res["state"] == "ready"
            chosen.append(res)
        # cheapest first; each full cluster sends the next gang to the next cheapest backend
        assert [r["cluster"] for r in chosen] == ["fleet", "slurm-test", "slurm-test", "kube"]
        assert [r["backend"] for r in chosen] == ["ssh", "slurm", "slurm", "kubernetes"]
        assert [r["price_per_hour"] for r in chosen] == [24.0, 32.0, 32.0, 48.0]
        full = neo.run("reserve", "--gpus", "16")
        assert full.returncode != 0 and "no cluster has the capacity" in full.stderr, full.stderr
        pings: Any = neo.json("ping", chosen[0]["id"])
        assert len(pings) == 2
    finally:
        neo.run("release", "--all", timeout=180)
        ids = [job for job, _ in neo_jobs(slurm_cluster, neo)]
        if ids:
            slurm_cluster.run("scancel", *ids)
        slurm_cluster.wait_all_idle(timeout=30)
    assert neo_jobs(slurm_cluster, neo) == []
    assert emu.remaining() == {"pods": [], "services": [], "customs": []}
    assert_nothing_left(ssh_fleet, pods / "ssh")
