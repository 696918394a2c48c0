"""The whole flow as a user with only ``server/k8s/rbac.yaml``'s namespaced Role (a static token
user, not the admin), and what a user sees when a permission is missing.

With the Role alone nodes are hidden, so ``allocate`` cannot pre-check capacity: a gang that does
not fit reaches the real scheduler, and the rollback quotes the scheduler's own reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Neo
from tests.engines.kubernetes.harness import KubeCluster
from tests.k8s_real.support import cluster_entry, error_lines, fresh_namespace, left_in, sandbox

pytestmark = pytest.mark.slow

NS = "neo-rbac"
NS_NOEXEC = "neo-rbac-noexec"
RBAC = Path(__file__).resolve().parent.parent.parent / "server" / "k8s" / "rbac.yaml"


def _role_without_exec() -> str:
    """The shipped Role minus ``pods/exec``: the permission users most often lack."""
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d and d["kind"] == "Role"]
    role = docs[0]
    role["rules"] = [r for r in role["rules"] if "pods/exec" not in r["resources"]]
    return yaml.safe_dump(role)


@pytest.fixture(scope="module")
def uneo(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo]:
    home = tmp_path_factory.mktemp("uneo")
    for ns in (NS, NS_NOEXEC):
        fresh_namespace(kube_cluster, ns)
    kube_cluster.kubectl("-n", NS, "apply", "-f", str(RBAC))
    kube_cluster.kubectl("-n", NS_NOEXEC, "apply", "-f", "-", stdin=_role_without_exec())
    for ns in (NS, NS_NOEXEC):
        kube_cluster.kubectl(
            "-n", ns, "create", "rolebinding", "neo-user", "--role=jupyter-neo", "--user=neo-user"
        )
    user_kc = kube_cluster.write_kubeconfig(
        home / "user.kubeconfig", token=kube_cluster.user_token, namespace=NS
    )
    config = (
        cluster_entry("kube", user_kc, NS, nodes=3)
        + cluster_entry("kube-noexec", user_kc, NS_NOEXEC)
        + cluster_entry("kube-default", user_kc, "default")
    )
    neo = sandbox(home, config)
    yield neo
    neo.run("release", "--all")
    for ns in (NS, NS_NOEXEC):
        assert left_in(kube_cluster, ns) == []
        kube_cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_the_whole_flow_works_with_the_namespaced_role_bound_to_a_token_user(
    uneo: Neo, kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    assert (
        kube_cluster.kubectl(
            "--token", kube_cluster.user_token, "auth", "can-i", "list", "nodes", check=False
        ).stdout.strip()
        == "no"
    ), "the user really is not the admin"
    res: Any = uneo.json("reserve", "--cluster", "kube", "--gpus", "16", "--nodes", "2")
    rid = res["id"]
    assert res["state"] == "ready"
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "hello.txt").write_text("hi\n")
    proc = uneo.run(
        "run", "-r", rid, "--ranks", "all", "--path", str(ws), "--cmd", "cat hello.txt", check=True
    )
    assert proc.stdout.count("hi") == 2, proc.stdout
    rows: Any = uneo.json("clusters")
    kube = next(r for r in rows if r["name"] == "kube")
    assert kube["allocatable_gpus"] is None, "nodes are hidden from the Role: no allocatable figure"
    uneo.run("release", rid, check=True)
    assert left_in(kube_cluster, NS) == []


def test_a_gang_that_cannot_be_placed_is_rolled_back_quoting_the_scheduler(
    uneo: Neo, kube_cluster: KubeCluster
) -> None:
    proc = uneo.run("reserve", "--cluster", "kube", "--gpus", "24", "--nodes", "3", timeout=120)
    err = error_lines(proc)
    assert "2/3 pods of the gang were placed" in err[0] and "rolled back" in err[0]
    assert "Scheduler:" in err[0] and "0/2 nodes are available" in err[0], err[0]
    assert left_in(kube_cluster, NS) == []


@pytest.mark.parametrize(
    ("cluster", "namespace", "named"),
    [("kube-noexec", NS_NOEXEC, "(pods/exec)"), ("kube-default", "default", "namespace 'default'")],
    ids=["role-without-pods-exec", "namespace-without-binding"],
)
def test_a_missing_permission_is_one_line_naming_it_and_leaves_nothing(
    uneo: Neo, kube_cluster: KubeCluster, cluster: str, namespace: str, named: str
) -> None:
    proc = uneo.run("reserve", "--cluster", cluster, "--gpus", "8", timeout=120)
    err = error_lines(proc)
    assert named in err[0] and "not allowed" in err[0], err
    assert "rbac.yaml" in err[1]
    assert left_in(kube_cluster, namespace) == []
