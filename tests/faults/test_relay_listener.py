"""The relay listener: where it binds, what an unauthenticated peer can make it do, when it closes.

Real agents and real TCP: the relay is the one door from the network into a pod, so every test
knocks on it the way an outsider on the cluster network could.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from jupyter_neo.client import Client
from jupyter_neo.model import Reservation
from jupyter_neo.transport.connection import AgentConnection
from tests.conftest import Neo
from tests.faults.support import MiB, agent_pid, peak_rss_mib, write_pattern
from tests.test_sync_support import assert_pods_match

PREFIX = struct.Struct(">II")


@pytest.fixture
def gang(neo: Neo, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Client, Reservation, AgentConnection]]:
    monkeypatch.setenv("NEO_SYNC_RELAY", "on")  # local pods share loopback, where relay is off
    client = neo.client()
    res = client.reserve(gpus=3, nodes=3)
    conn = client.run_async(client.core.connect(res))[0]
    yield client, res, conn
    client.release(res.id)
    client.close()


def _leader(res: Reservation) -> psutil.Process:
    return psutil.Process(agent_pid(Path(res.pods[0].handle.dir) / "agent"))


def _listening(proc: psutil.Process) -> list[tuple[str, int]]:
    return [
        (c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN
    ]


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except TimeoutError:
        return False
    except OSError:
        return True


def test_a_relayed_sync_leaves_no_listener_behind(
    gang: tuple[Client, Reservation, AgentConnection], tmp_path: Path
) -> None:
    client, res, _ = gang
    ws = tmp_path / "ws"
    ws.mkdir()
    for i in range(3):
        write_pattern(ws / f"shard{i}.bin", 4 * MiB, i)
    write_pattern(ws / "weights.bin", 20 * MiB, 7)  # streamed in chunks, relayed in chunks
    (ws / "train.py").write_text("print('hi')\n")
    report = client.sync(res.id, ws)
    assert all(p.relayed_bytes >= 32 * MiB for p in report.pods[1:]), "the content went through the relay"
    assert_pods_match(res, ws)
    assert _listening(_leader(res)) == [], "the relay listener outlived the sync"


def test_the_listener_binds_only_the_leader_address_and_closes_on_request(
    gang: tuple[Client, Reservation, AgentConnection],
) -> None:
    client, res, conn = gang
    offer: dict[str, Any] = client.run_async(conn.call("ws_relay_serve", host=res.pods[0].address))
    assert _listening(_leader(res)) == [(res.pods[0].address, offer["port"])]
    client.run_async(conn.call("ws_relay_close", token=offer["token"]))
    assert _listening(_leader(res)) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", offer["port"]), timeout=5).close()


def test_unauthenticated_peers_get_nothing_buffered_nothing_held_and_a_bounded_number_of_sockets(
    gang: tuple[Client, Reservation, AgentConnection],
) -> None:
    client, res, conn = gang
    offer: dict[str, Any] = client.run_async(conn.call("ws_relay_serve", host="127.0.0.1"))
    addr = ("127.0.0.1", offer["port"])
    leader = _leader(res)
    rss_before = peak_rss_mib(leader.pid)

    # 1. A frame announcing 400 MiB, with a wrong token, then 96 MiB of it.
    sock = socket.create_connection(addr, timeout=10)
    head = json.dumps({"token": "0" * 32, "want": []}).encode()
    sock.sendall(PREFIX.pack(len(head), 400 * MiB) + head)
    try:
        for _ in range(96):
            sock.sendall(b"\0" * MiB)
    except OSError:
        pass
    assert _closed_within(sock, 10), "the relay kept reading an unauthenticated 400 MiB frame"
    sock.close()
    growth = peak_rss_mib(leader.pid) - rss_before
    assert growth < 16, f"the relay buffered {growth:.0f} MiB before checking the token"

    # 2. More silent connections than the relay holds: the surplus is closed at once.
    silent = [socket.create_connection(addr, timeout=10) for _ in range(70)]
    time.sleep(1.0)
    dropped = sum(_closed_within(s, 0.2) for s in silent)
    assert dropped >= 6, f"all {len(silent)} unauthenticated connections were held open"

    # 3. A silent connection is closed after the authentication timeout.
    t0 = time.monotonic()
    lingering = [s for s in silent if not _closed_within(s, 0.01)]
    assert all(_closed_within(s, 25) for s in lingering), "a silent connection was held for 25 s"
    assert time.monotonic() - t0 < 25
    for s in silent:
        s.close()
    client.run_async(conn.call("ws_relay_close", token=offer["token"]))
    assert _listening(leader) == []
