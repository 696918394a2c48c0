"""Reserve, use and release gangs on the embedded local backend, through the real CLI."""

from __future__ import annotations

from typing import Any

from tests.conftest import Neo


def test_reserve_16_gives_two_ready_pods_that_answer_pings(neo: Neo) -> None:
    res: Any = neo.json("reserve", "--gpus", "16")
    assert res["state"] == "ready"
    assert (res["nodes"], res["gpus_per_node"]) == (2, 8)
    for key in (
        "id",
        "cluster",
        "state",
        "nodes",
        "gpus_per_node",
        "gpu_type",
        "pods",
        "created",
        "idle_ttl",
        "price_per_hour",
        "cost",
    ):
        assert key in res
    assert [p["rank"] for p in res["pods"]] == [0, 1]
    assert all({"name", "address", "state"} <= p.keys() and p["state"] == "ready" for p in res["pods"])
    assert len(neo.processes()) == 2, "one resident agent per pod"

    pings: Any = neo.json("ping", res["id"])
    assert [p["pod"] for p in pings] == [p["name"] for p in res["pods"]]
    assert all(p["rtt_ms"] > 0 for p in pings)

    clusters: Any = neo.json("clusters")
    assert clusters[0]["free_gpus"] == 16

    released: Any = neo.json("release", res["id"])
    assert released[0]["state"] == "released"
    assert neo.processes() == []
    assert not (neo.home / "local" / "local" / res["id"]).exists()
    assert neo.json("clusters")[0]["free_gpus"] == 32  # type: ignore[index]
    assert neo.json("status") == []


def test_gangs_on_distinct_slots_and_release_all(neo: Neo) -> None:
    a: Any = neo.json("reserve", "--gpus", "4", "--name", "small")
    b: Any = neo.json("reserve", "--gpus", "8", "--nodes", "2")
    assert a["nodes"] == 1 and b["nodes"] == 2 and b["gpus_per_node"] == 4
    slots_a = {(a["pods"][0]["name"], g) for g in a["pods"][0]["gpus"]}
    assert len(slots_a) == 4
    status: Any = neo.json("status", "small")
    assert status["id"] == a["id"]
    assert neo.json("clusters")[0]["free_gpus"] == 32 - 12  # type: ignore[index]
    neo.run("release", "--all", check=True)
    assert neo.processes() == []
    assert neo.json("status") == []


def test_pod_environment_carries_gpu_slots(neo: Neo) -> None:
    client = neo.client()
    res = client.reserve(gpus=4)
    conns = client.run_async(client.core.connect(res))

    async def env_of() -> str:
        reply = await conns[0].call("exec", argv=["sh", "-c", "echo $CUDA_VISIBLE_DEVICES $NEO_RESERVATION"])
        await conns[0].call("wait", proc=reply["proc"])
        chunks: list[bytes] = []
        await conns[0].request(
            "attach", proc=reply["proc"], follow=False, on_event=lambda h, p: chunks.append(p)
        )
        return b"".join(chunks).decode()

    out = client.run_async(env_of())
    assert out.split() == [",".join(str(g) for g in res.pods[0].gpus), res.id]
    client.release(res.id)
    client.close()


def test_a_script_passes_back_the_reservation_that_reserve_returned(neo: Neo) -> None:
    """``client.release(res)`` (not ``res.id``) is what a script writes; it once reached sqlite as
    an unsupported parameter and was reported as a damaged state store."""
    client = neo.client()
    res = client.reserve(gpus=8)
    assert client.status(res)[0].id == res.id
    assert client.recorded(res).id == res.id
    assert len(client.ping(res)) == 1
    assert client.extend(res, idle_ttl="2h").idle_ttl == 7200
    assert client.release(res).state == "released"
    assert neo.processes() == []
    assert neo.json("status") == []
    client.close()
