"""The agent protocol over real streams to real agents: payloads, output, faults, authentication."""

from __future__ import annotations

import ast
import asyncio
import os
import random
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import neo_agent
import pytest
from neo_agent import protocol as wire

from jupyter_neo.backends.base import Backend
from jupyter_neo.client import Client
from jupyter_neo.errors import AgentError, BackendError
from jupyter_neo.model import Reservation
from jupyter_neo.transport.connection import AgentConnection
from tests.conftest import Neo


@pytest.fixture
def gang(neo: Neo) -> Iterator[tuple[Client, Reservation, list[AgentConnection]]]:
    client = neo.client()
    res = client.reserve(gpus=16)
    conns = client.run_async(client.core.connect(res))
    yield client, res, conns
    client.release(res.id)
    client.close()


def test_agent_source_runs_on_python_3_8() -> None:
    root = resources.files(neo_agent)
    for path in root.iterdir():
        if path.name.endswith(".py"):
            ast.parse(path.read_text(), filename=path.name, feature_version=(3, 8))


def test_large_binary_payload_round_trips(gang: tuple[Client, Reservation, list[AgentConnection]]) -> None:
    client, _, conns = gang
    blob = random.Random(7).randbytes(24 * 1024 * 1024)

    async def go() -> bytes:
        await conns[1].call("put", blob, path="data/blob.bin", mode=0o600)
        _, data = await conns[1].request("get", path="data/blob.bin")
        return data

    assert client.run_async(go()) == blob
    listing = client.run_async(conns[1].call("list"))["entries"]
    assert {"path": "data/blob.bin", "size": len(blob), "mode": 0o600, "type": "file"} in listing


def test_binary_output_is_streamed_exactly(gang: tuple[Client, Reservation, list[AgentConnection]]) -> None:
    client, _, conns = gang
    script = "import os,sys,random; r=random.Random(3); sys.stdout.buffer.write(r.randbytes(300000)); sys.stderr.write('done\\n')"
    expected = random.Random(3).randbytes(300000)

    async def go() -> tuple[bytes, bytes, Any]:
        out: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        started = await conns[0].call("exec", argv=["python3", "-c", script])
        final, _ = await conns[0].request(
            "attach", proc=started["proc"], on_event=lambda h, p: out[h["stream"]].append(p)
        )
        return b"".join(out["stdout"]), b"".join(out["stderr"]), final

    stdout, stderr, final = client.run_async(go())
    assert stdout == expected
    assert stderr == b"done\n"
    assert final["returncode"] == 0


def test_signal_stops_the_whole_process_group(
    gang: tuple[Client, Reservation, list[AgentConnection]],
) -> None:
    client, _, conns = gang

    async def go() -> dict[str, Any]:
        started = await conns[0].call("exec", argv=["sh", "-c", "sleep 300 & sleep 300; wait"])
        await asyncio.sleep(0.2)
        await conns[0].call("signal", proc=started["proc"], signal="SIGTERM")
        return await conns[0].call("wait", proc=started["proc"], timeout=10)

    result = client.run_async(go())
    assert result["exited"] and result["returncode"] == -15


def test_paths_outside_the_workspace_are_refused(
    gang: tuple[Client, Reservation, list[AgentConnection]],
) -> None:
    client, res, conns = gang
    for path in ("../escape.txt", "/tmp/escape.txt", "a/../../escape.txt"):
        with pytest.raises(AgentError, match="outside the workspace"):
            client.run_async(conns[0].call("put", b"x", path=path))
    # A symlinked directory that points outside is not a way out either.
    ws = os.path.join(res.pods[0].handle.dir, "ws", "current")
    os.symlink("/tmp", os.path.join(ws, "out"))
    with pytest.raises(AgentError, match="outside the workspace"):
        client.run_async(conns[0].call("put", b"x", path="out/escape.txt"))
    assert not os.path.exists("/tmp/escape.txt")


def test_wrong_secret_is_refused(gang: tuple[Client, Reservation, list[AgentConnection]]) -> None:
    client, res, _ = gang
    backend = client.core.backend(res.cluster)

    async def go() -> None:
        stream = await Backend.open_agent_stream(backend, res.pods[0])  # through the boot stub
        await AgentConnection.open(stream, "0" * 64, name="intruder")

    with pytest.raises(AgentError, match="refused authentication"):
        client.run_async(go())

    async def claim_again() -> None:
        stream = await Backend.open_agent_stream(backend, res.pods[0])  # through the boot stub
        await AgentConnection.open(stream, "1" * 64, claim={"labels": {}}, name="intruder")

    with pytest.raises(AgentError, match="refused authentication"):
        client.run_async(claim_again())


def test_requests_before_auth_are_refused(gang: tuple[Client, Reservation, list[AgentConnection]]) -> None:
    client, res, _ = gang
    backend = client.core.backend(res.cluster)

    async def go() -> dict[str, Any] | None:
        stream = await Backend.open_agent_stream(backend, res.pods[0])  # through the boot stub
        assert await stream.reader.readline() == b"READY\n"
        hello = await wire.read_frame(stream.reader)
        assert hello is not None and hello[0]["claimed"] is True
        stream.writer.write(wire.encode({"id": 1, "op": "exec", "argv": ["touch", "/tmp/pwned"]}))
        reply = await wire.read_frame(stream.reader)
        tail = await wire.read_frame(stream.reader)
        await stream.close()
        assert tail is None, "the agent hangs up after a failed authentication"
        return reply[0] if reply else None

    reply = client.run_async(go())
    assert reply is not None and reply["ok"] is False and reply["code"] == "auth"
    assert not os.path.exists("/tmp/pwned")


def test_abrupt_close_mid_frame_leaves_the_agent_serving(
    gang: tuple[Client, Reservation, list[AgentConnection]],
) -> None:
    client, res, conns = gang
    backend = client.core.backend(res.cluster)

    async def go() -> None:
        stream = await Backend.open_agent_stream(backend, res.pods[0])  # through the boot stub
        conn = await AgentConnection.open(stream, res.secret, name="victim")
        frame = wire.encode({"id": 99, "op": "put", "path": "half.bin"}, b"y" * 100000)
        stream.writer.write(frame[: len(frame) // 2])
        await stream.writer.drain()
        await conn.close()

    client.run_async(go())
    assert client.run_async(conns[0].call("ping"))["time"] > 0
    listing = client.run_async(conns[0].call("list"))["entries"]
    assert not any(e["path"].startswith("half.bin") for e in listing), "no partial file appears"


def test_pending_request_fails_when_the_stream_dies(
    gang: tuple[Client, Reservation, list[AgentConnection]],
) -> None:
    client, res, _ = gang
    backend = client.core.backend(res.cluster)

    async def go() -> None:
        stream = await Backend.open_agent_stream(backend, res.pods[1])  # through the boot stub
        conn = await AgentConnection.open(stream, res.secret, name="dying")
        started = await conn.call("exec", argv=["sleep", "30"])
        waiter = asyncio.ensure_future(conn.call("wait", proc=started["proc"]))
        await asyncio.sleep(0.1)
        stream.proc.kill()  # type: ignore[attr-defined]
        try:
            await asyncio.wait_for(waiter, 10)
        finally:
            other = (await client.core.connect(res))[1]
            await other.call("signal", proc=started["proc"], signal="SIGKILL")

    with pytest.raises(BackendError, match="connection to the agent was lost"):
        client.run_async(go())


def test_second_connection_attaches_to_the_resident_agent(neo: Neo) -> None:
    client = neo.client()
    res = client.reserve(gpus=8)
    pid_files = [os.path.join(p.handle.dir, "agent", "agent.pid") for p in res.pods]
    first = [Path(f).read_text() for f in pid_files]
    client.run_async(client.core.close())
    client.ping(res.id)
    assert [Path(f).read_text() for f in pid_files] == first, "no new agent was started"
    client.release(res.id)
    client.close()
