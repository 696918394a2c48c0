"""Datasets on Kubernetes: a volume per dataset at ``/data/<name>``, read-only unless asked.

The objects are checked against the official schemas; the end-to-end test runs a gang on the
in-repo API emulator, whose hostPath mounts are links from the mount path to the host directory,
so the ranks really read the data at ``NEO_DATA_<NAME>``. The real-cluster PVC/hostPath test is
``tests/k8s_real/test_datasets.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from jupyter_neo.backends.kubernetes.manifests import build_objects
from jupyter_neo.backends.kubernetes.options import KubeOptions
from jupyter_neo.datasets.spec import DataLocation, DatasetUse, NfsSource
from jupyter_neo.model import Reservation
from tests.conftest import Neo
from tests.k8s_emulator import Emulator, FakeNode
from tests.test_k8s_backend import k8s_config
from tests.test_k8s_manifests import reservation as golden_reservation


def reservation(*uses: DatasetUse) -> Reservation:
    """test_k8s_manifests' 2 x 8 reservation, holding ``uses``."""
    return golden_reservation().model_copy(update={"datasets": list(uses)})


def use(name: str, read_only: bool = True, **where: Any) -> DatasetUse:
    return DatasetUse(
        name=name, read_only=read_only, present=True, location=DataLocation(cluster="kube", **where)
    )


def test_each_dataset_is_a_volume_at_data_name_read_only_unless_asked() -> None:
    res = reservation(
        use("imagenet", pvc="imagenet-ro"),
        use("scratch", read_only=False, nfs=NfsSource(server="10.0.0.5", path="/exports/scratch")),
        use("weights", host_path="/mnt/weights"),
        DatasetUse(name="absent", present=False),
    )
    opts = KubeOptions(namespace="ml")
    pods = [o for o in build_objects("kube", opts, res, gang="none", node_gpus=8) if o["kind"] == "Pod"]
    assert len(pods) == 2
    for pod in pods:
        kubernetes_validate.validate(pod, "1.33", strict=True)
        mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert mounts["neo-data-imagenet"] == {
            "name": "neo-data-imagenet",
            "mountPath": "/data/imagenet",
            "readOnly": True,
        }
        assert volumes["neo-data-imagenet"]["persistentVolumeClaim"] == {
            "claimName": "imagenet-ro",
            "readOnly": True,
        }
        assert mounts["neo-data-scratch"]["readOnly"] is False
        assert volumes["neo-data-scratch"]["nfs"] == {
            "server": "10.0.0.5",
            "path": "/exports/scratch",
            "readOnly": False,
        }
        assert (
            mounts["neo-data-weights"]["mountPath"] == "/data/weights"
            and mounts["neo-data-weights"]["readOnly"]
        )
        assert volumes["neo-data-weights"]["hostPath"] == {"path": "/mnt/weights", "type": "Directory"}
        assert not any("absent" in name for name in mounts), "a dataset the cluster lacks mounts nothing"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    server = Emulator([FakeNode("gpu-a", 8), FakeNode("gpu-b", 8)]).start()
    yield server
    server.stop()


def kube_estate(neo: Neo, emu: Emulator, data: Path) -> Path:
    """test_k8s_backend's emulator cluster plus two datasets on it; returns the pods' data root."""
    data_root = neo.home.parent / "pod-data"  # stands in for /data: the emulator's pods are local processes
    k8s_config(neo, emu, extra=f"      data_root: {data_root}\n      rendezvous: pod-ip")
    with neo.config.open("a") as f:
        f.write(
            "datasets:\n"
            f"  - {{name: corpus, size: 1TB, locations: [{{cluster: kube, host_path: {data}}}]}}\n"
            "  - {name: other, size: 1TB, locations: [{cluster: kube, pvc: other-ro}]}\n"
        )
    return data_root


def test_ranks_read_a_host_path_dataset_at_its_mount_path_through_exec(
    neo: Neo, emu: Emulator, tmp_path: Path
) -> None:
    data = tmp_path / "corpus"
    data.mkdir()
    (data / "shard-0.txt").write_text("corpus shard 0\n")
    data_root = kube_estate(neo, emu, data)
    ws = tmp_path / "ws"
    ws.mkdir()
    show = 'python3 -c \'import os; p=os.environ["NEO_DATA_CORPUS"]; print(p, open(p+"/shard-0.txt").read().strip())\''
    proc = neo.run("run", "--gpus", "16", "--data", "corpus", "--ranks", "all", "--cmd", show, cwd=ws)
    assert proc.returncode == 0, proc.stderr
    mount = data_root / "corpus"
    lines = sorted(line for line in proc.stdout.splitlines() if "shard 0" in line)
    assert lines == [f"[node 0 rank 0] {mount} corpus shard 0", f"[node 1 rank 1] {mount} corpus shard 0"]
    pods = [p for (ns, _), p in emu.pods.items() if ns == "neo"]
    assert all(
        {"name": "neo-data-corpus", "mountPath": str(mount), "readOnly": True}
        in p["spec"]["containers"][0]["volumeMounts"]
        for p in pods
    )
    neo.run("release", "--all", check=True)
    assert emu.remaining() == {"pods": [], "services": [], "customs": []}
    assert not mount.is_symlink() and (data / "shard-0.txt").exists(), "release unmounts, never deletes data"
    assert neo.processes() == []


def test_dry_run_prints_the_dataset_volumes(neo: Neo, emu: Emulator, tmp_path: Path) -> None:
    kube_estate(neo, emu, tmp_path)
    proc = neo.run("reserve", "--gpus", "16", "--data", "other:rw", "--dry-run", "--gang", "none", check=True)
    pods = [o for o in yaml.safe_load_all(proc.stdout) if o["kind"] == "Pod"]
    assert len(pods) == 2
    for pod in pods:
        assert {
            "name": "neo-data-other",
            "persistentVolumeClaim": {"claimName": "other-ro", "readOnly": False},
        } in pod["spec"]["volumes"]
    assert emu.remaining() == {"pods": [], "services": [], "customs": []}


def test_a_path_location_on_a_kubernetes_cluster_is_refused_with_its_line(
    neo: Neo, emu: Emulator, tmp_path: Path
) -> None:
    kube_estate(neo, emu, tmp_path)
    text = neo.config.read_text().replace("pvc: other-ro", "path: /srv/other")
    neo.config.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "path: /srv/other" in row)
    proc = neo.run("datasets")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (
        f"{neo.config}:{line}: datasets.1.locations.0.cluster: cluster 'kube' is kubernetes: its locations are a pvc, nfs or host_path"
        in proc.stderr
    )
