"""Relay fan-out: the controller uploads large content once; the other pods pull it from the leader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_neo.errors import BackendError
from tests.conftest import Neo

MiB = 2**20


@pytest.fixture(autouse=True)
def relay_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local pods share the controller's loopback, where relay is off by default: force it."""
    monkeypatch.setenv("NEO_SYNC_RELAY", "on")
    yield


def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    for i in range(3):
        (ws / f"shard{i}.bin").write_bytes(bytes([i + 1]) * (4 * MiB))
    (ws / "train.py").write_text("print('hi')\n")
    return ws


def pod_tree(res: Any, pod: int) -> dict[str, bytes]:
    root = Path(res.pods[pod].handle.dir) / "ws" / "current"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_large_content_crosses_the_controller_uplink_once(neo: Neo, tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    client = neo.client()
    res = client.reserve(gpus=4, nodes=4)
    report = client.sync(res.id, ws)
    leader, *others = report.pods
    assert leader.bytes_sent >= 12 * MiB and leader.relayed_bytes == 0
    for pod in others:
        assert pod.relayed_bytes >= 12 * MiB, "content came from the leader"
        assert pod.bytes_sent < 64 * 1024, "only the manifest delta came from the controller"
    assert report.bytes_sent < 13 * MiB, "the controller sent the content once, not four times"
    local = {p.relative_to(ws).as_posix(): p.read_bytes() for p in sorted(ws.rglob("*")) if p.is_file()}
    for i in range(4):
        assert pod_tree(res, i) == local
    client.release(res.id)
    client.close()


def test_a_failed_pull_falls_back_to_a_direct_send(neo: Neo, tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    client = neo.client()
    res = client.reserve(gpus=3, nodes=3)
    conns = client.run_async(client.core.connect(res))
    real = conns[2].call

    async def broken(op: str, payload: bytes = b"", **fields: Any) -> dict[str, Any]:
        if op == "ws_relay_fetch":
            raise BackendError("pod 2 cannot reach the leader")
        return await real(op, payload, **fields)

    conns[2].call = broken  # type: ignore[method-assign]
    report = client.sync(res.id, ws)
    assert report.pods[1].relayed_bytes >= 12 * MiB
    assert report.pods[2].relayed_bytes == 0 and report.pods[2].bytes_sent >= 12 * MiB
    assert all(p.status == "applied" for p in report.pods)
    assert pod_tree(res, 2) == pod_tree(res, 0)
    client.release(res.id)
    client.close()


def test_small_syncs_and_small_gangs_go_direct(neo: Neo, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.py").write_text("x = 1\n")
    client = neo.client()
    res = client.reserve(gpus=4, nodes=4)
    report = client.sync(res.id, ws)
    assert all(p.relayed_bytes == 0 and p.status == "applied" for p in report.pods)
    client.release(res.id)
    client.close()


def test_relay_is_off_on_loopback_by_default(
    neo: Neo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEO_SYNC_RELAY")
    ws = workspace(tmp_path)
    client = neo.client()
    res = client.reserve(gpus=4, nodes=4)
    report = client.sync(res.id, ws)
    assert all(p.relayed_bytes == 0 and p.bytes_sent >= 12 * MiB for p in report.pods)
    client.release(res.id)
    client.close()
