"""Unauthenticated connections to the agent socket: silent ones time out, large ones buy nothing.

Real agent, real unix socket: the test connects as any local process of the pod's user could.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_neo.client import Client
from jupyter_neo.model import Reservation
from tests.conftest import Neo
from tests.faults.support import MiB, agent_pid, peak_rss_mib

PREFIX = struct.Struct(">II")


@pytest.fixture
def pod(neo: Neo) -> Iterator[tuple[Client, Reservation, Path]]:
    client = neo.client()
    res = client.reserve(gpus=8)
    yield client, res, Path(res.pods[0].handle.dir) / "agent"
    client.release(res.id)
    client.close()


def _connect(agent_dir: Path) -> socket.socket:
    """Connect to agent.sock through /proc (the full path can exceed the 107-byte socket limit)."""
    dfd = os.open(agent_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(f"/proc/self/fd/{dfd}/agent.sock")
    finally:
        os.close(dfd)
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _read_frame(sock: socket.socket) -> dict[str, object]:
    head_len, payload_len = PREFIX.unpack(_recv_exactly(sock, PREFIX.size))
    header = json.loads(_recv_exactly(sock, head_len))
    _recv_exactly(sock, payload_len)
    return dict(header)


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, list[dict[str, object]]]:
    """Read until the agent closes the connection; (closed in time, frames it sent first)."""
    sock.settimeout(seconds)
    frames = []
    try:
        while True:
            frames.append(_read_frame(sock))
    except EOFError:
        return True, frames
    except TimeoutError:
        return False, frames
    except ConnectionResetError:
        return True, frames


def _still_serves(client: Client, res: Reservation) -> None:
    conns = client.run_async(client.core.connect(res))
    assert client.run_async(conns[0].call("ping"))["ok"]


def test_a_silent_connection_is_closed_after_the_handshake_timeout(
    pod: tuple[Client, Reservation, Path],
) -> None:
    client, res, agent_dir = pod
    sock = _connect(agent_dir)
    hello = _read_frame(sock)
    assert hello["op"] == "hello"
    t0 = time.monotonic()
    closed, frames = _closed_within(sock, 30)
    sock.close()
    assert closed, "the agent kept a silent, unauthenticated connection open for 30 s"
    assert time.monotonic() - t0 < 25
    assert frames and frames[-1]["code"] == "auth"
    _still_serves(client, res)


def test_a_huge_frame_before_authentication_is_refused_without_buffering_it(
    pod: tuple[Client, Reservation, Path],
) -> None:
    client, res, agent_dir = pod
    pid = agent_pid(agent_dir)
    rss_before = peak_rss_mib(pid)
    sock = _connect(agent_dir)
    _read_frame(sock)
    head = json.dumps({"op": "auth", "mac": "0" * 64}).encode()
    sock.sendall(PREFIX.pack(len(head), 400 * MiB) + head)  # announces 400 MiB of payload
    block = b"\0" * MiB
    sent = 0
    sock.settimeout(10)
    try:
        while sent < 96 * MiB:
            sock.sendall(block)
            sent += len(block)
    except (BrokenPipeError, ConnectionResetError):
        pass
    except TimeoutError:
        pass
    closed, frames = _closed_within(sock, 10)
    sock.close()
    assert closed, f"the agent was still reading after {sent // MiB} MiB of unauthenticated payload"
    assert any(f.get("code") == "auth" for f in frames)
    growth = peak_rss_mib(pid) - rss_before
    assert growth < 16, f"the agent buffered {growth:.0f} MiB for an unauthenticated peer"
    _still_serves(client, res)


@pytest.mark.parametrize("size", [64 * 1024, 3 * MiB])
def test_a_large_first_header_on_a_claimed_agent_is_refused(
    pod: tuple[Client, Reservation, Path], size: int
) -> None:
    client, res, agent_dir = pod
    sock = _connect(agent_dir)
    assert _read_frame(sock)["claimed"] is True
    head = json.dumps({"op": "auth", "mac": "0" * 64, "pad": "x" * size}).encode()
    sock.settimeout(10)
    try:
        sock.sendall(PREFIX.pack(len(head), 0) + head[:4096])  # the agent answers from the prefix
    except (BrokenPipeError, ConnectionResetError):
        pass
    closed, frames = _closed_within(sock, 5)
    sock.close()
    assert closed, "the agent waited for a large header before authentication"
    assert frames and frames[-1]["code"] == "auth"
    _still_serves(client, res)
