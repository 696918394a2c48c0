"""The Kubernetes backend against a REAL two-node Kubernetes v1.20.2 (no emulator in the loop).

apiserver, scheduler, controller-manager, two kubelets each with its own containerd + runc and
bridge (``tests/engines/kubernetes/``), reached through the official client exactly as on a
provider's cluster. One cluster per session; reservations are shared across tests where a test
only reads them (the whole-node gang), so the tier stays a few minutes long. Every test checks
what is left through the API server, not through our own bookkeeping.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Neo, read_until, use_config
from tests.engines.kubernetes.harness import GPUS_PER_NODE, KubeCluster
from tests.k8s_real.support import (
    cluster_entry,
    error_lines,
    fresh_namespace,
    left_in,
    pods_of,
    python_volumes,
    sandbox,
)

pytestmark = pytest.mark.slow

NS = "neo-real"
MiB = 1 << 20
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def kneo(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo]:
    """A sandboxed neo with two clusters on the real nodes: ``kube`` (both nodes, pod-IP
    rendezvous) and ``kube-n1`` (pinned to the first node, DNS rendezvous)."""
    fresh_namespace(kube_cluster, NS)
    kc = kube_cluster.kubeconfig
    config = cluster_entry("kube", kc, NS, nodes=3) + cluster_entry(
        "kube-n1",
        kc,
        NS,
        rendezvous="dns",
        node_selector={"kubernetes.io/hostname": kube_cluster.nodes[0]},
    )
    neo = sandbox(tmp_path_factory.mktemp("kneo"), config)
    yield neo
    neo.run("release", "--all")
    assert left_in(kube_cluster, NS) == []


def test_pods_sharing_a_node_dns_rendezvous_fails_clearly_and_a_pod_deleted_mid_run_fails_the_run(
    kneo: Neo, kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    res: Any = kneo.json("reserve", "--cluster", "kube-n1", "--gpus", "8", "--nodes", "2")
    rid = res["id"]
    pods = pods_of(kube_cluster, NS, rid)
    assert [p["spec"]["nodeName"] for p in pods] == [kube_cluster.nodes[0]] * 2, "both on the pinned node"
    assert [p["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] for p in pods] == ["4", "4"]

    # No cluster DNS here: torchrun would retry the leader's name until its own timeout; the
    # run is refused up front, naming the pod, the name and the setting to change.
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(EXAMPLES / "train_ddp.py", ws / "train_ddp.py")
    proc = kneo.run("run", "-r", rid, "--nproc-per-node", "1", "--path", str(ws), "train_ddp.py", timeout=120)
    err = error_lines(proc)
    assert f"pod neo-{rid}-1 cannot resolve the leader's address neo-{rid}-0.neo-{rid}.{NS}.svc" in err[0]
    assert "rendezvous: pod-ip" in err[1]

    # A pod deleted mid-run (grace 0, as a preemption or an admin would) fails the run naming it.
    run = kneo.popen(
        "run", "-r", rid, "--ranks", "all", "--no-sync", "--path", str(ws),
        "--cmd", "python3 -c \"import time; print('started', flush=True); time.sleep(300)\"",
    )  # fmt: skip
    try:
        read_until(run.stdout, "started", count=2)
        kube_cluster.kubectl("-n", NS, "delete", "pod", f"neo-{rid}-1", "--grace-period=0", "--force")
        _, stderr = run.communicate(timeout=90)
    finally:
        run.kill()
    assert run.returncode != 0
    assert f"neo-{rid}-1" in stderr and "Traceback" not in stderr, stderr
    kneo.run("release", rid, check=True)
    assert left_in(kube_cluster, NS) == []


def test_a_gang_larger_than_the_nodes_is_refused_before_anything_is_created(
    kneo: Neo, kube_cluster: KubeCluster
) -> None:
    proc = kneo.run("reserve", "--cluster", "kube", "--gpus", "24", "--nodes", "3")
    err = error_lines(proc)
    assert "16 GPUs free, but only 2 node(s) with 8 free; the gang needs 3" in err[0]
    assert left_in(kube_cluster, NS) == []


# ---------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line_each_and_leaves_nothing(
    neo: Neo, kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    fresh_namespace(kube_cluster, "neo-bad")
    kc = kube_cluster.kubeconfig
    unreachable = kube_cluster.write_kubeconfig(
        tmp_path / "unreachable",
        token=kube_cluster.admin_token,
        namespace="neo-bad",
        server="https://127.0.0.1:1",
    )
    expired = kube_cluster.write_kubeconfig(tmp_path / "expired", token="0" * 48, namespace="neo-bad")
    use_config(
        neo,
        "clusters:\n"
        + cluster_entry("unreachable", unreachable, "neo-bad")
        + cluster_entry("expired", expired, "neo-bad")
        + cluster_entry("nocontext", kc, "neo-bad", context="no-such-context")
        + cluster_entry("noimage", kc, "neo-bad", image="localhost/no-such-image:v1"),
    )
    cases = {
        "unreachable": "cannot reach the API server",
        "expired": "the API server rejected the credentials",
        "nocontext": "cannot load kubeconfig context no-such-context",
        "noimage": "ErrImageNeverPull",
    }
    for cluster, expected in cases.items():
        proc = neo.run("reserve", "--cluster", cluster, "--gpus", "8", timeout=120)
        err = error_lines(proc)
        assert expected in err[0], (cluster, proc.stderr)
    assert left_in(kube_cluster, "neo-bad") == []
    status: Any = neo.json("status", "--all")
    assert all(r["state"] == "released" for r in status), status
    kube_cluster.kubectl("delete", "namespace", "neo-bad", "--wait=false")


# ---------------------------------------------------------------------------- a whole-node gang


@pytest.fixture(scope="module")
def gang2(kneo: Neo, kube_cluster: KubeCluster) -> Iterator[dict[str, Any]]:
    """Two whole-node pods, shared by the tests that only use them; released and verified after."""
    res: Any = kneo.json("reserve", "--cluster", "kube", "--gpus", str(2 * GPUS_PER_NODE), "--nodes", "2")
    yield res
    kneo.run("release", res["id"], check=True)
    # the API server, not our bookkeeping: no pod, no Service
    assert left_in(kube_cluster, NS, f"neo.jupyter.org/reservation={res['id']}") == []


def test_whole_node_gang_lands_one_pod_per_node_and_agents_answer_through_real_exec(
    kneo: Neo, kube_cluster: KubeCluster, gang2: dict[str, Any]
) -> None:
    rid = gang2["id"]
    pods = pods_of(kube_cluster, NS, rid)
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(kube_cluster.nodes)
    assert [p["status"]["podIP"] for p in pods] == [p["address"] for p in gang2["pods"]]
    assert kube_cluster.get("-n", NS, "service", f"neo-{rid}")["spec"]["clusterIP"] == "None"
    pings: Any = kneo.json("ping", rid)
    assert [p["pod"] for p in pings] == [f"neo-{rid}-0", f"neo-{rid}-1"]
    assert all(p["rtt_ms"] > 0 for p in pings)


def test_clusters_show_requested_and_allocatable_gpus_of_the_real_nodes(
    kneo: Neo, gang2: dict[str, Any]
) -> None:
    rows: Any = kneo.json("clusters")
    kube = next(r for r in rows if r["name"] == "kube")
    assert (kube["allocatable_gpus"], kube["requested_gpus"], kube["free_gpus"]) == (16, 16, 0)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sync_of_a_large_binary_workspace_relays_between_pods_over_the_pod_network(
    kneo: Neo, kube_cluster: KubeCluster, gang2: dict[str, Any], tmp_path: Path
) -> None:
    rid = gang2["id"]
    ws = tmp_path / "ws"
    (ws / "data").mkdir(parents=True)
    (ws / "data" / "blob.bin").write_bytes(os.urandom(50 * MiB))
    (ws / "data" / "bytes.bin").write_bytes(bytes(range(256)) * 64)
    (ws / "train.py").write_text("print('v1')\n")
    relay = {"NEO_SYNC_RELAY": "on", "NEO_SYNC_RELAY_PODS": "2", "NEO_SYNC_RELAY_MB": "1"}
    relaying = Neo(home=kneo.home, config=kneo.config, env={**kneo.env, **relay})
    proc = relaying.run("sync", rid, "--path", str(ws), "--json", timeout=240)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    leader, other = report["pods"]
    assert other["relayed_bytes"] >= 50 * MiB, "pod 1 pulled the content from pod 0 over the pod network"
    assert other["bytes_sent"] < MiB and leader["bytes_sent"] >= 50 * MiB
    want = {rel: _sha(ws / rel) for rel in ("data/blob.bin", "data/bytes.bin", "train.py")}
    for rank in (0, 1):
        out = kube_cluster.kubectl(
            "-n", NS, "exec", f"neo-{rid}-{rank}", "--", "sha256sum",
            *(f"/tmp/neo/ws/current/{rel}" for rel in want),
        ).stdout  # fmt: skip
        got = {line.split()[1].split("/ws/current/")[1]: line.split()[0] for line in out.splitlines()}
        assert got == want


def test_torchrun_ddp_across_the_two_nodes_with_torch_from_a_read_only_volume(
    kneo: Neo, kube_cluster: KubeCluster, gang2: dict[str, Any], tmp_path: Path
) -> None:
    rid = gang2["id"]
    pod = pods_of(kube_cluster, NS, rid)[0]
    mounts = {m["mountPath"]: m.get("readOnly", False) for m in pod["spec"]["containers"][0]["volumeMounts"]}
    python, _ = python_volumes()
    assert mounts[str(Path(python).parent.parent)] is True, "the venv is mounted read-only"
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(EXAMPLES / "train_ddp.py", ws / "train_ddp.py")
    t0 = time.monotonic()
    proc = kneo.run(
        "run", "-r", rid, "--nproc-per-node", "1", "--ranks", "all", "--path", str(ws),
        "train_ddp.py", "--steps", "3", timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    agree = [line for line in proc.stdout.splitlines() if "ranks agree: True" in line]
    assert len(agree) == 2, proc.stdout
    assert time.monotonic() - t0 < 240


# ---------------------------------------------------------------------------- API quirks of a real 1.20


def test_a_pod_created_right_after_its_namespace_starts_and_its_pid_1_stops_on_sigterm(
    kube_cluster: KubeCluster,
) -> None:
    """A pod created through the backend's own ``create`` the moment its namespace exists (the
    window in which 1.20 can answer 500 "No API token found for service account"; it did not
    reproduce here with or without a token mount, the retry is unit-tested in
    tests/test_k8s_backend.py). Then a graceful delete: the warm PID 1 exits on SIGTERM, so the
    pod is gone long before its 30 s grace period (without the handler it takes all of it)."""
    import asyncio

    from jupyter_neo.backends.kubernetes.api import KubeApi
    from jupyter_neo.backends.kubernetes.manifests import WARM_COMMAND
    from jupyter_neo.backends.kubernetes.options import KubeOptions

    ns = "neo-fresh"
    kube_cluster.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=true")
    api = KubeApi(KubeOptions(kubeconfig=str(kube_cluster.kubeconfig), namespace=ns), "kube")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "first", "namespace": ns},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "localhost/neo-python:v2",
                    "imagePullPolicy": "Never",
                    "command": WARM_COMMAND,
                }
            ],
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 30,
        },
    }

    async def race() -> dict[str, Any]:
        await api.call("create namespace", api.core.create_namespace, {"metadata": {"name": ns}})
        return await api.create(pod)

    try:
        created = asyncio.run(race())
        assert created["metadata"]["name"] == "first"
        kube_cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/first", "--timeout=90s")
        t0 = time.monotonic()
        kube_cluster.kubectl("-n", ns, "delete", "pod", "first", "--wait=true")
        assert time.monotonic() - t0 < 15, "PID 1 ignored SIGTERM: the pod waited out its grace period"
    finally:
        kube_cluster.kubectl("-n", ns, "delete", "pod", "first", "--grace-period=0", "--force", check=False)
        kube_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_release_deletes_the_service_although_1_20_answers_with_a_status_the_client_cannot_parse(
    kube_cluster: KubeCluster,
) -> None:
    """DELETE of a Service on 1.20 returns a ``Status``; the typed client 37.x fails to turn it into
    a V1Service. The backend reads raw bodies: the delete succeeds and the Service is gone."""
    import asyncio

    from kubernetes.client.exceptions import ApiException

    from jupyter_neo.backends.kubernetes.api import KubeApi
    from jupyter_neo.backends.kubernetes.options import KubeOptions

    api = KubeApi(KubeOptions(kubeconfig=str(kube_cluster.kubeconfig), namespace="default"), "kube")
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "neo-svc-probe"},
        "spec": {"clusterIP": "None"},
    }
    for typed in (True, False):
        asyncio.run(api.create(svc))
        if typed:  # what the typed client does with the same answer: it cannot deserialize it
            with pytest.raises((ValueError, TypeError, ApiException)):
                api.core.delete_namespaced_service("neo-svc-probe", "default")
            kube_cluster.kubectl("delete", "service", "neo-svc-probe", "--ignore-not-found")
            continue
        asyncio.run(api.delete_service("neo-svc-probe"))
    assert (
        kube_cluster.kubectl("get", "service", "neo-svc-probe", "--ignore-not-found", "-o", "name").stdout
        == ""
    )
