"""The Kubernetes backend end to end against the in-repo API emulator, through the real CLI.

Every pod's agent is a real local process reached through a real exec websocket opened by the
official ``kubernetes`` client; what the emulator stores afterwards is the truth we assert on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Neo, use_config
from tests.k8s_emulator import Emulator, FakeNode


def k8s_config(neo: Neo, emu: Emulator, *, nodes: int = 2, gpus_per_node: int = 8, extra: str = "") -> None:
    kubeconfig = emu.kubeconfig(neo.home.parent / "kubeconfig")
    use_config(
        neo,
        f"""
clusters:
  - name: kube
    backend: kubernetes
    provider: emulator
    nodes: {nodes}
    gpus_per_node: {gpus_per_node}
    price_per_gpu_hour: 2.0
    options:
      kubeconfig: {kubeconfig}
      namespace: neo
      pod_root: {neo.home}/k8s-pods/{{pod}}
      schedule_timeout_s: 2
{extra}
""",
    )


@pytest.fixture
def emu() -> Iterator[Emulator]:
    server = Emulator([FakeNode("gpu-a", 8), FakeNode("gpu-b", 8)]).start()
    yield server
    server.stop()


@pytest.fixture
def emu_volcano() -> Iterator[Emulator]:
    server = Emulator([FakeNode("gpu-a", 8), FakeNode("gpu-b", 8)], groups=("scheduling.volcano.sh",)).start()
    yield server
    server.stop()


def test_reserve_16_creates_two_pods_and_a_service_whose_agents_answer_through_exec(
    neo: Neo, emu: Emulator
) -> None:
    k8s_config(neo, emu)
    res: Any = neo.json("reserve", "--gpus", "16")
    assert res["state"] == "ready" and res["backend"] == "kubernetes"
    names = [p["name"] for p in res["pods"]]
    assert names == [f"neo-{res['id']}-0", f"neo-{res['id']}-1"]
    assert res["pods"][0]["address"] == f"neo-{res['id']}-0.neo-{res['id']}.neo.svc"
    left = emu.remaining()
    assert left["pods"] == names
    assert left["services"] == [f"neo-{res['id']}"]
    assert len(neo.agents()) == 2, "one resident agent per pod, started through exec"
    assert emu.exec_protocols and set(emu.exec_protocols) <= {"v5.channel.k8s.io"}

    pings: Any = neo.json("ping", res["id"])
    assert [p["pod"] for p in pings] == names and all(p["rtt_ms"] > 0 for p in pings)

    released: Any = neo.json("release", res["id"])
    assert released[0]["state"] == "released"
    assert emu.remaining() == {"pods": [], "services": [], "customs": []}
    assert neo.processes() == []


def test_capacity_shortfall_rolls_back_the_partial_gang(neo: Neo) -> None:
    # One 8-GPU node, two 4-GPU pods that must not share a node: the pre-check passes (8 free),
    # the scheduler binds one pod and never the other, so the client-side gang must roll back.
    server = Emulator([FakeNode("gpu-a", 8)]).start()
    try:
        k8s_config(neo, server, extra="      spread: required")
        proc = neo.run("reserve", "--gpus", "8", "--nodes", "2")
        assert proc.returncode != 0
        assert "1/2 pods of the gang were placed" in proc.stderr
        assert "didn't match pod anti-affinity" in proc.stderr
        assert server.remaining() == {"pods": [], "services": [], "customs": []}
        status: Any = neo.json("status", "--all")
        assert status[0]["state"] == "released" and "rolled back" in status[0]["reason"]
        assert neo.processes() == []
    finally:
        server.stop()


def test_no_capacity_is_refused_before_anything_is_created(neo: Neo, emu: Emulator) -> None:
    k8s_config(neo, emu, nodes=3)
    proc = neo.run("reserve", "--gpus", "24")
    assert proc.returncode != 0 and "GPUs free" in proc.stderr
    assert not [r for r in emu.requests if r[0] == "POST"]


def test_pod_deleted_behind_our_back_releases_the_reservation_with_the_reason(
    neo: Neo, emu: Emulator
) -> None:
    k8s_config(neo, emu)
    res: Any = neo.json("reserve", "--gpus", "16")
    emu.delete_pod_behind_back("neo", res["pods"][1]["name"])
    rows: Any = neo.json("status", "--all")
    row = next(r for r in rows if r["id"] == res["id"])
    assert row["state"] == "released"
    assert f"pod {res['pods'][1]['name']} was deleted" in row["reason"]
    assert "Preempted" in row["reason"]
    assert emu.remaining() == {"pods": [], "services": [], "customs": []}
    assert neo.processes() == []


def test_volcano_gang_is_detected_and_its_podgroup_released(neo: Neo, emu_volcano: Emulator) -> None:
    k8s_config(neo, emu_volcano)
    res: Any = neo.json("reserve", "--gpus", "16")
    left = emu_volcano.remaining()
    assert left["customs"] == [f"podgroups/neo-{res['id']}"]
    neo.run("release", res["id"], check=True)
    assert emu_volcano.remaining() == {"pods": [], "services": [], "customs": []}


@pytest.mark.slow
def test_neo_run_works_end_to_end_through_exec_streams(neo: Neo, emu: Emulator, tmp_path: Any) -> None:
    """Sync and a torchrun DDP step across two emulated pods, every byte through exec websockets."""
    import shutil
    from pathlib import Path

    pytest.importorskip("torch")
    k8s_config(neo, emu, extra="      rendezvous: pod-ip")
    ws = Path(tmp_path) / "ws"
    ws.mkdir()
    shutil.copy(Path(__file__).resolve().parent.parent / "examples" / "train_ddp.py", ws / "train_ddp.py")
    proc = neo.run(
        "run", "--gpus", "4", "--nodes", "2", "--ranks", "all", "train_ddp.py", "--steps", "3", cwd=ws
    )
    assert proc.returncode == 0, proc.stderr
    agree = [line for line in proc.stdout.splitlines() if "ranks agree: True" in line]
    assert len(agree) == 4
    res: Any = neo.json("status")
    assert res[0]["backend"] == "kubernetes" and res[0]["pods"][0]["address"] == "127.0.0.1"
    neo.run("release", "--all", check=True)
    assert emu.remaining() == {"pods": [], "services": [], "customs": []}
    assert neo.processes() == []


def test_clusters_show_requested_and_allocatable_gpus_from_nodes_and_pods(neo: Neo, emu: Emulator) -> None:
    k8s_config(neo, emu)
    before: Any = neo.json("clusters")
    assert (before[0]["allocatable_gpus"], before[0]["requested_gpus"], before[0]["free_gpus"]) == (16, 0, 16)
    neo.json("reserve", "--gpus", "8")
    after: Any = neo.json("clusters")
    assert (after[0]["allocatable_gpus"], after[0]["requested_gpus"], after[0]["free_gpus"]) == (16, 8, 8)
    table = neo.run("clusters", check=True).stdout
    assert "REQUESTED/ALLOCATABLE" in table and "8/16" in table
    neo.run("release", "--all", check=True)


def test_transient_api_answers_are_retried_briefly_and_real_refusals_are_not() -> None:
    """1.20 answers 500 "No API token found for service account" for a pod created within ~50 ms
    of its namespace (and newer versions 403 "serviceaccount not found"); 429/503 mean "later".
    Those are retried for a few seconds; a real refusal (RBAC 403, 409, 422) is not."""
    from kubernetes.client.exceptions import ApiException

    from jupyter_neo.backends.kubernetes.api import KubeApi, transient
    from jupyter_neo.errors import BackendError

    token_race = ApiException(status=500)
    token_race.body = '{"message": "No API token found for service account \\"default\\", retry after the token is automatically created"}'
    rbac = ApiException(status=403)
    rbac.body = '{"message": "pods is forbidden: User \\"neo-user\\" cannot create resource \\"pods\\""}'
    assert transient(token_race) and transient(ApiException(status=503)) and not transient(rbac)

    class Resp:
        data = b'{"kind": "Pod"}'

    answers: list[Any] = [token_race, token_race, Resp()]

    def flaky(*_: Any, **__: Any) -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    api = KubeApi.__new__(KubeApi)
    api.cluster, api.ns = "kube", "neo"
    assert api._call_sync("create Pod p", flaky) == {"kind": "Pod"} and answers == []

    refusals: list[Any] = [rbac, Resp()]

    def refused(*_: Any, **__: Any) -> Any:
        raise refusals.pop(0)

    with pytest.raises(BackendError, match="not allowed"):
        api._call_sync("create Pod p", refused)
    assert len(refusals) == 1, "a real refusal is not retried"
