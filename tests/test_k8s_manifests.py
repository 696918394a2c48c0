"""Every object the Kubernetes backend creates is valid: official schemas, vendored CRD schemas,
reviewed golden manifests per provider profile, and ``neo reserve --dry-run`` output."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from jupyter_neo.backends.kubernetes.gang import MECHANISMS
from jupyter_neo.backends.kubernetes.manifests import build_objects
from jupyter_neo.backends.kubernetes.options import PROFILES, KubeOptions
from jupyter_neo.model import Reservation
from tests.conftest import Neo, use_config

K8S_VERSION = "1.33"  # schema version checked; kubernetes-validate 1.37.0 ships 1.2x-1.37
GOLDEN = Path(__file__).parent / "golden"
CRDS = Path(__file__).parent / "k8s_emulator" / "crds"
GOLDEN_CASES = {"coreweave": "none", "nebius": "volcano", "generic": "coscheduling"}


def reservation(nodes: int = 2, gpn: int = 8) -> Reservation:
    return Reservation(
        id="r-golden-0001",
        cluster="gpu",
        backend="kubernetes",
        nodes=nodes,
        gpus_per_node=gpn,
        gpu_type="H100",
        idle_ttl=1800,
        price_per_hour=0,
        owner="alice",
    )


def crd_schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        for v in crd["spec"]["versions"]:
            out[f"{crd['spec']['group']}/{v['name']}/{crd['spec']['names']['kind']}"] = v["schema"][
                "openAPIV3Schema"
            ]
    return out


def validate(obj: dict[str, Any]) -> None:
    if obj["apiVersion"] in ("v1",):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        return
    schema = crd_schemas()[f"{obj['apiVersion']}/{obj['kind']}"]
    jsonschema.validate(obj, schema)
    assert set(obj["spec"]) <= set(schema["properties"]["spec"]["properties"]), "unknown spec fields"


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("gang", MECHANISMS)
def test_every_object_validates_against_its_schema(profile: str, gang: str) -> None:
    opts = KubeOptions(
        profile=profile,  # type: ignore[arg-type]
        queue="team-q",
        memory="200Gi",
        cpu="32",
        shm_size="64Gi",
        multus_networks="ib-net",
        priority_class="high",
        gpu_product="H100_NVLINK_80GB",
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
    )
    objs = build_objects("gpu", opts, reservation(), gang=gang, node_gpus=8, env={"FOO": "1"})
    kinds = [o["kind"] for o in objs]
    assert kinds.count("Pod") == 2 and kinds.count("Service") == 1
    assert kinds.count("PodGroup") == (1 if gang in ("volcano", "coscheduling") else 0)
    for obj in objs:
        validate(obj)


def test_crd_schemas_reject_a_wrong_field_type() -> None:
    objs = build_objects("gpu", KubeOptions(), reservation(), gang="volcano", node_gpus=8)
    bad = json.loads(json.dumps(objs[0]))
    bad["spec"]["minMember"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    pod = json.loads(json.dumps(objs[-1]))
    pod["spec"]["restartPolicy"] = 7
    with pytest.raises(Exception):  # noqa: B017 (kubernetes-validate raises its own error types)
        validate(pod)


@pytest.mark.parametrize("profile", sorted(GOLDEN_CASES))
def test_golden_manifests_per_provider_profile(profile: str) -> None:
    opts = KubeOptions(profile=profile, namespace="ml", queue="team-q" if profile == "nebius" else None)  # type: ignore[arg-type]
    objs = build_objects("gpu", opts, reservation(), gang=GOLDEN_CASES[profile], node_gpus=8)
    text = yaml.safe_dump_all(objs, sort_keys=False)
    path = GOLDEN / f"{profile}.yaml"
    if os.environ.get("NEO_UPDATE_GOLDEN"):
        path.write_text(
            f"# Golden manifest: profile {profile}, gang {GOLDEN_CASES[profile]}. Regenerate with NEO_UPDATE_GOLDEN=1.\n"
            + text
        )
    expected = path.read_text().split("\n", 1)[1]
    assert text == expected, f"{path} differs; review and regenerate with NEO_UPDATE_GOLDEN=1"


def test_profiles_put_rdma_and_nccl_settings_on_the_pod() -> None:
    objs = build_objects("gpu", KubeOptions(profile="coreweave"), reservation(), gang="none", node_gpus=8)
    pod = objs[-1]
    c = pod["spec"]["containers"][0]
    assert c["resources"]["limits"]["rdma/ib"] == "1"
    assert c["securityContext"]["capabilities"]["add"] == ["IPC_LOCK"]
    assert {"name": "NCCL_IB_HCA", "value": "ibp"} in c["env"]
    assert pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    generic = build_objects("gpu", KubeOptions(), reservation(), gang="none", node_gpus=8)[-1]
    assert "securityContext" not in generic["spec"]["containers"][0]


def test_dry_run_prints_valid_objects_without_contacting_the_cluster(neo: Neo, tmp_path: Path) -> None:
    use_config(
        neo,
        f"""
clusters:
  - name: kube
    backend: kubernetes
    nodes: 4
    gpus_per_node: 8
    options:
      kubeconfig: {tmp_path / "missing-kubeconfig"}
      profile: nebius
""",
    )
    proc = neo.run("reserve", "--gpus", "16", "--dry-run", "--gang", "volcano", check=True)
    docs = list(yaml.safe_load_all(proc.stdout))
    assert [d["kind"] for d in docs] == ["PodGroup", "Service", "Pod", "Pod"]
    for d in docs:
        validate(d)
    proc = neo.run("reserve", "--gpus", "16", "--dry-run", "--gang", "kueue", "-o", "json", check=True)
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "List" and [i["kind"] for i in doc["items"]] == ["Service", "Pod", "Pod"]
    assert doc["items"][1]["metadata"]["labels"]["kueue.x-k8s.io/pod-group-name"].startswith("neo-r-")


def test_shipped_rbac_manifest_is_valid() -> None:
    path = Path(__file__).parent.parent / "server" / "k8s" / "rbac.yaml"
    kinds = []
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kinds.append(doc["kind"])
    assert {"ServiceAccount", "Role", "RoleBinding"} <= set(kinds)


def test_volumes_option_mounts_host_path_pvc_and_nfs_into_every_pod() -> None:
    opts = KubeOptions.model_validate(
        {
            "volumes": [
                {"name": "venv", "mount_path": "/opt/venv", "read_only": True, "host_path": "/srv/venv"},
                {"name": "data", "mount_path": "/data", "pvc": "imagenet", "read_only": True},
                {"name": "cache", "mount_path": "/cache", "nfs": {"server": "10.0.0.5", "path": "/export/c"}},
            ],
            "image_pull_policy": "Never",
        }
    )
    pod = build_objects("gpu", opts, reservation(), gang="none", node_gpus=8)[-1]
    validate(pod)
    c = pod["spec"]["containers"][0]
    assert c["imagePullPolicy"] == "Never"
    assert c["volumeMounts"][2:] == [
        {"name": "venv", "mountPath": "/opt/venv", "readOnly": True},
        {"name": "data", "mountPath": "/data", "readOnly": True},
        {"name": "cache", "mountPath": "/cache", "readOnly": False},
    ]
    assert pod["spec"]["volumes"][2:] == [
        {"name": "venv", "hostPath": {"path": "/srv/venv", "type": "Directory"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "imagenet", "readOnly": True}},
        {"name": "cache", "nfs": {"server": "10.0.0.5", "path": "/export/c", "readOnly": False}},
    ]


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        ({"name": "a", "mount_path": "/a"}, "exactly one of host_path, pvc, nfs"),
        (
            {"name": "a", "mount_path": "/a", "pvc": "x", "host_path": "/x"},
            "exactly one of host_path, pvc, nfs",
        ),
        ({"name": "neo", "mount_path": "/a", "pvc": "x"}, "reserved"),
        ({"name": "Bad_Name", "mount_path": "/a", "pvc": "x"}, "name"),
        ({"name": "a", "mount_path": "rel", "pvc": "x"}, "mount_path"),
        ({"name": "a", "mount_path": "/dev/shm", "pvc": "x"}, "overlaps /dev/shm"),
        ({"name": "a", "mount_path": "/tmp", "pvc": "x"}, "overlaps /tmp/neo"),
    ],
)
def test_a_bad_volume_is_one_clear_config_error(neo: Neo, volume: dict[str, Any], message: str) -> None:
    use_config(
        neo,
        "clusters:\n  - name: kube\n    backend: kubernetes\n    nodes: 2\n    gpus_per_node: 8\n"
        f"    options: {json.dumps({'volumes': [volume]})}\n",
    )
    proc = neo.run("reserve", "--gpus", "8", "--dry-run", "--gang", "none")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith("error: cluster 'kube': options.volumes") and message in first, proc.stderr
