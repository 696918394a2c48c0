"""Datasets on the REAL two-node Kubernetes: a hostPath- and a PVC-backed dataset mounted read-only
into a 2-pod gang at ``/data/<name>``, read by every rank, refused writes, left intact on release.

Runs on the real-cluster tier of ``tests/k8s_real/`` (its package-scoped ``kube_cluster``); skips
where that tier is not present or cannot start (see tests/engines/kubernetes/conftest_fixture.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

support = pytest.importorskip("tests.k8s_real.support", reason="the real Kubernetes tier is not in this tree")

from tests.conftest import Neo  # noqa: E402

pytestmark = pytest.mark.slow
NS = "neo-data"


def dataset_config(cluster: Any, host_dir: Path) -> str:
    entry = support.cluster_entry("kube", cluster.kubeconfig, NS, nodes=2)
    return (
        entry
        + "datasets:\n"
        + f"  - {{name: corpus, size: 1GB, locations: [{{cluster: kube, host_path: {host_dir}}}]}}\n"
        + "  - {name: claimed, size: 1GB, locations: [{cluster: kube, pvc: claimed-ro}]}\n"
    )


@pytest.fixture
def dneo(kube_cluster: Any, tmp_path: Path) -> Iterator[Neo]:
    support.fresh_namespace(kube_cluster, NS)
    host_dir = tmp_path / "corpus"
    host_dir.mkdir()
    host_dir.chmod(0o755)
    (host_dir / "shard-0.txt").write_text("corpus shard 0\n")
    claim_dir = tmp_path / "claimed"
    claim_dir.mkdir()
    (claim_dir / "shard-0.txt").write_text("claimed shard 0\n")
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{NS}-claimed"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "hostPath": {"path": str(claim_dir), "type": "Directory"},
            "claimRef": {"namespace": NS, "name": "claimed-ro"},
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "claimed-ro", "namespace": NS},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": f"{NS}-claimed",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    kube_cluster.kubectl(
        "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [pv, pvc]})
    )
    neo = support.sandbox(tmp_path / "neo", dataset_config(kube_cluster, host_dir))
    yield neo
    neo.run("release", "--all")
    assert support.left_in(kube_cluster, NS) == []
    kube_cluster.kubectl("delete", "pv", f"{NS}-claimed", "--ignore-not-found", "--wait=false")
    assert (host_dir / "shard-0.txt").read_text() == "corpus shard 0\n", "release never touches the data"


def test_host_path_and_pvc_datasets_are_mounted_read_only_into_a_two_pod_gang(
    dneo: Neo, kube_cluster: Any, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    script = (
        "import os\n"
        "for name in ('CORPUS', 'CLAIMED'):\n"
        "    p = os.environ['NEO_DATA_' + name]\n"
        "    print(p, open(p + '/shard-0.txt').read().strip())\n"
        "    try:\n"
        "        open(p + '/written', 'w')\n"
        "        print(p, 'WRITABLE')\n"
        "    except OSError as exc:\n"
        "        print(p, 'refused', exc.strerror)\n"
    )
    (ws / "show.py").write_text(script)
    proc = dneo.run(
        "run",
        "--gpus",
        "16",
        "--nodes",
        "2",
        "--data",
        "corpus",
        "--data",
        "claimed",
        "--ranks",
        "all",
        "--cmd",
        "python3 show.py",
        "--path",
        str(ws),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for node in (0, 1):
        assert f"[node {node} rank {node}] /data/corpus corpus shard 0" in out
        assert f"[node {node} rank {node}] /data/claimed claimed shard 0" in out
        assert f"[node {node} rank {node}] /data/corpus refused Read-only file system" in out
        assert f"[node {node} rank {node}] /data/claimed refused Read-only file system" in out
    assert "WRITABLE" not in out
    res: Any = dneo.json("status")
    pods = support.pods_of(kube_cluster, NS, res[0]["id"])
    assert len({p["spec"]["nodeName"] for p in pods}) == 2, "one pod per node"
    for pod in pods:
        mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
        assert mounts["neo-data-corpus"]["readOnly"] and mounts["neo-data-claimed"]["readOnly"]
