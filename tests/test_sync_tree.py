"""Relay tree: with relay fan-out on, a one-file edit costs the controller's uplink the same for 16
pods as for 4 (real agents, real listeners), and a pod the tree cannot reach is synced directly."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from neo_agent import protocol as wire
from neo_agent.workspace_ops import entry_hash, root_hex

from jupyter_neo.sync import tree
from tests.conftest import Neo, use_config
from tests.test_sync_support import assert_pods_match

TWENTY = """
clusters:
  - name: local
    nodes: 20
    gpus_per_node: 1
"""


def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    for i in range(40):
        (ws / f"pkg{i % 4}").mkdir(parents=True, exist_ok=True)
        (ws / f"pkg{i % 4}" / f"m{i}.py").write_text(f"X = {i}\n" * 30)
    return ws


def edit_uplink(neo: Neo, ws: Path, pods: int, tag: str) -> int:
    """Reserve ``pods``, sync, edit one file, sync again through the CLI: that sync's uplink bytes."""
    res: Any = neo.json("reserve", "--gpus", str(pods), "--nodes", str(pods))
    neo.json("sync", res["id"], "--path", str(ws))
    with open(ws / "pkg1" / "m1.py", "a") as f:
        f.write(f"# {tag}\n")
    report: Any = neo.json("sync", res["id"], "--path", str(ws))
    assert report["changed"] == 1
    assert [p["status"] for p in report["pods"]] == ["applied"] * pods
    with neo.client() as client:
        assert_pods_match(client.status(res["id"])[0], ws)
    assert neo.run("release", res["id"]).returncode == 0
    return int(report["uplink_bytes"])


def test_one_file_edit_uplink_does_not_grow_with_the_gang(neo: Neo, tmp_path: Path) -> None:
    use_config(neo, TWENTY)
    ws = workspace(tmp_path)
    neo.env["NEO_SYNC_RELAY"] = "on"
    tree4 = edit_uplink(neo, ws, 4, "four")
    tree16 = edit_uplink(neo, ws, 16, "sixteen")
    assert 0 < tree16 < 2 * tree4, (tree4, tree16)
    # The same edit as a star (relay off) costs one frame per pod: the tree saves most of it.
    assert neo.run("daemon", "stop").returncode == 0
    neo.env["NEO_SYNC_RELAY"] = "off"
    star16 = edit_uplink(neo, ws, 16, "star")
    assert star16 > 8 * tree16, (tree16, star16)


def test_a_pod_the_tree_cannot_reach_is_synced_directly(
    neo: Neo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEO_SYNC_RELAY", "on")
    monkeypatch.setenv("NEO_SYNC_RELAY_FANOUT", "1")  # a chain: 0 -> 1 -> 2 -> 3
    use_config(neo, TWENTY)
    ws = workspace(tmp_path)
    client = neo.client()
    res = client.reserve(gpus=4, nodes=4)
    first = client.sync(res.id, ws)
    assert [p.status for p in first.pods] == ["applied"] * 4
    conns = client.run_async(client.core.connect(res))
    built = tree._trees[conns[0]]
    # Pod 2 revokes its tree token (its listener closes): pods 2 and 3 are cut off from the tree.
    client.run_async(conns[2].call("ws_relay_close", token=built.offers[1]["token"]))
    (ws / "pkg2" / "m2.py").write_text("X = 'cut'\n")
    report = client.sync(res.id, ws)
    assert [p.status for p in report.pods] == ["applied"] * 4
    assert report.pods[1].bytes_sent == 0, "pod 1 got the edit from the root"
    assert report.pods[2].bytes_sent > 0 and report.pods[3].bytes_sent > 0, "sent directly"
    assert_pods_match(client.status(res.id)[0], ws)
    client.release(res.id)
    client.close()


async def _knock(port: int, token: str, header: dict[str, Any], payload: bytes) -> dict[str, Any]:
    """What a peer on the pod network gets from a tree listener: token frame, then one request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(wire.encode({"token": token}))
        await writer.drain()
        answer = await wire.read_frame(reader)
        if answer is None or not answer[0].get("ok"):
            return answer[0] if answer else {"closed": True}
        writer.write(wire.encode(header, payload))
        await writer.drain()
        reply = await wire.read_frame(reader)
        return reply[0] if reply else {"closed": True}
    finally:
        writer.close()


def test_a_forwarded_sync_is_checked_like_the_controllers_own(
    neo: Neo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer holding a child's tree token can make it do nothing the controller could not: a
    path leaving the workspace is refused on that pod and on its subtree, and nothing is written."""
    monkeypatch.setenv("NEO_SYNC_RELAY", "on")
    monkeypatch.setenv("NEO_SYNC_RELAY_FANOUT", "1")
    use_config(neo, TWENTY)
    ws = workspace(tmp_path)
    client = neo.client()
    res = client.reserve(gpus=3, nodes=3)
    first = client.sync(res.id, ws)
    conns = client.run_async(client.core.connect(res))
    built = tree._trees[conns[0]]
    offer = built.offers[0]  # pod 1, parent of pod 2
    data = b"owned\n"
    digest = hashlib.sha256(data).hexdigest()
    entries = [["../../escaped.txt", "f", 0o644, digest]]
    ops = json.dumps(entries).encode("ascii")
    header = {
        "op": "ws_sync",
        "tree": built.id,
        "base": first.root,
        "root": root_hex(sum(entry_hash(p, k, m, r) for p, k, m, r in entries)),
        "generation": 9,
        "full": False,
        "ops_len": len(ops),
        "blobs": [[digest, len(data), False, 0o644]],
    }
    bad = client.run_async(_knock(offer["port"], "0" * 32, header, ops + data))
    assert bad.get("ok") is False and "token" in str(bad.get("error"))
    reply = client.run_async(_knock(offer["port"], offer["token"], header, ops + data))
    results = {r["pod"]: r for r in reply["results"]}
    assert set(results) == {res.pods[1].name, res.pods[2].name}
    assert all(r["status"] == "failed" for r in results.values()), results
    for pod in res.pods:
        pod_dir = Path(pod.handle.dir)
        assert not any(p.name == "escaped.txt" for p in pod_dir.parent.rglob("escaped.txt"))
        assert os.readlink(pod_dir / "ws" / "current") == os.path.join("gens", str(first.generation))
    assert_pods_match(client.status(res.id)[0], ws)
    client.release(res.id)
    client.close()
