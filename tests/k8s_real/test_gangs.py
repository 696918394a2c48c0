"""Gang mechanisms' objects against the real apiserver: Volcano and scheduler-plugins PodGroups,
Kueue's Workload/LocalQueue, and ``neo reserve --dry-run | kubectl apply --dry-run=server``.

The CRDs are installed for this module only. No Volcano, coscheduling or Kueue *controller* runs
on 1.20 here, so what is verified is the part jupyter-neo owns: the apiserver accepts every
object the backend creates, the backend creates and deletes them through the official client,
and discovery picks the mechanism. Gang admission itself is the emulator's (docs/kubernetes.md).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Neo
from tests.engines.kubernetes.harness import KubeCluster
from tests.k8s_real.support import cluster_entry, error_lines, fresh_namespace, left_in, sandbox

pytestmark = pytest.mark.slow

NS = "neo-gangs"
TESTS = Path(__file__).resolve().parent.parent
CRDS = [
    TESTS / "k8s_emulator" / "crds" / "scheduling.volcano.sh_podgroups.yaml",
    TESTS / "k8s_emulator" / "crds" / "scheduling.x-k8s.io_podgroups.yaml",
    TESTS / "engines" / "kubernetes" / "crds" / "kueue-minimal.yaml",
]
PODGROUPS = {"volcano": "podgroups.scheduling.volcano.sh", "coscheduling": "podgroups.scheduling.x-k8s.io"}


@pytest.fixture(scope="module")
def gneo(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo]:
    for crd in CRDS:
        kube_cluster.kubectl("apply", "-f", str(crd))
    kube_cluster.kubectl("wait", "--for=condition=established", "--timeout=60s", "crd", "--all")
    fresh_namespace(kube_cluster, NS)
    kc = kube_cluster.kubeconfig
    config = (
        cluster_entry("kube", kc, NS, gang="auto", schedule_timeout_s=3)
        + cluster_entry("kube-volcano", kc, NS, gang="volcano", schedule_timeout_s=3)
        + cluster_entry("kube-coscheduling", kc, NS, gang="coscheduling", schedule_timeout_s=3)
    )
    neo = sandbox(tmp_path_factory.mktemp("gneo"), config)
    yield neo
    neo.run("release", "--all")
    assert left_in(kube_cluster, NS) == []
    kube_cluster.kubectl("delete", "namespace", NS, "--wait=false")
    for crd in CRDS:
        kube_cluster.kubectl("delete", "-f", str(crd), "--wait=false")


@pytest.mark.parametrize("gang", ["kueue", "volcano", "coscheduling", "none"])
def test_dry_run_objects_are_accepted_by_the_real_apiserver(
    gneo: Neo, kube_cluster: KubeCluster, gang: str
) -> None:
    dry = gneo.run("reserve", "--cluster", "kube", "--gpus", "16", "--dry-run", "--gang", gang, check=True)
    proc = kube_cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=dry.stdout, check=False)
    assert proc.returncode == 0, proc.stderr
    created = [line for line in proc.stdout.splitlines() if line.endswith("created (server dry run)")]
    expected = 3 + (gang in PODGROUPS)  # Service + 2 pods (+ PodGroup)
    assert len(created) == expected, proc.stdout
    assert left_in(kube_cluster, NS) == []


@pytest.mark.parametrize("gang", sorted(PODGROUPS))
def test_podgroup_is_created_before_the_pods_and_deleted_on_rollback(
    gneo: Neo, kube_cluster: KubeCluster, gang: str
) -> None:
    """No Volcano / coscheduling scheduler runs here, so the pods stay Pending and the gang rolls
    back after schedule_timeout_s: the PodGroup must have been accepted, then deleted."""
    reserve = gneo.popen("reserve", "--cluster", f"kube-{gang}", "--gpus", "16")
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while not seen and reserve.poll() is None and time.monotonic() < deadline:
        seen = kube_cluster.kubectl("-n", NS, "get", PODGROUPS[gang], "-o", "name").stdout.split()
        time.sleep(0.2)
    _, stderr = reserve.communicate(timeout=60)
    assert len(seen) == 1 and "/neo-r-" in seen[0], f"the PodGroup was never seen: {seen}"
    err = error_lines(subprocess.CompletedProcess([], reserve.returncode, "", stderr))
    assert "0/2 pods of the gang were placed" in err[0] and "rolled back" in err[0]
    assert kube_cluster.kubectl("-n", NS, "get", PODGROUPS[gang], "-o", "name").stdout.split() == []
    assert left_in(kube_cluster, NS) == []


def test_kueue_is_detected_by_its_local_queue_and_the_workload_is_deleted_on_release(
    gneo: Neo, kube_cluster: KubeCluster
) -> None:
    kube_cluster.kubectl(
        "-n", NS, "apply", "-f", "-",
        stdin='{"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue", "metadata": {"name": "team-q"},'
        ' "spec": {"clusterQueue": "cq"}}',
    )  # fmt: skip
    try:
        res: Any = gneo.json("reserve", "--cluster", "kube", "--gpus", "8")
        rid = res["id"]
        pod = kube_cluster.get("-n", NS, "pod", f"neo-{rid}-0")
        labels = pod["metadata"]["labels"]
        assert labels["kueue.x-k8s.io/queue-name"] == "team-q"
        assert labels["kueue.x-k8s.io/pod-group-name"] == f"neo-{rid}"
        # what Kueue's controller would make for the pod group (no controller runs on 1.20)
        kube_cluster.kubectl(
            "-n", NS, "apply", "-f", "-",
            stdin=json.dumps(
                {
                    "apiVersion": "kueue.x-k8s.io/v1beta2",
                    "kind": "Workload",
                    "metadata": {"name": f"neo-{rid}"},
                    "spec": {"queueName": "team-q", "podSets": []},
                }
            ),
        )  # fmt: skip
        gneo.run("release", rid, check=True)
        left = kube_cluster.kubectl("-n", NS, "get", "workloads.kueue.x-k8s.io", "-o", "name").stdout.split()
        assert left == []
        assert left_in(kube_cluster, NS) == []
    finally:
        kube_cluster.kubectl("-n", NS, "delete", "localqueues.kueue.x-k8s.io", "--all")
