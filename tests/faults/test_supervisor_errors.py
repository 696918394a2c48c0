"""An unexpected exception inside the run supervisor (issue 14, defect 14) still stops every node
and finishes the record: injected into the real supervisor path of a real run, in-process."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from jupyter_neo.backends.local import LocalBackend
from jupyter_neo.errors import NeoError
from jupyter_neo.transport.connection import AgentConnection
from tests.conftest import Neo
from tests.faults.run_support import assert_settled, one_line

pytest.importorskip("torch")
pytestmark = pytest.mark.slow
HANG = "import time\nprint('up', flush=True)\ntime.sleep(3600)\n"


def launched(neo: Neo, where: str) -> list[str]:
    """Launchers and ranks (not agents, not the relays of this process's connections) under ``where``."""
    return [p for p in neo.processes() if where in p and (" rank " in p or "torch.distributed.run" in p)]


def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "hang.py").write_text(HANG)
    return ws


def test_exception_from_the_backends_pod_lost_stops_every_node(
    neo: Neo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(tmp_path)
    client = neo.client()
    try:
        res = client.reserve(gpus=2, nodes=2)

        async def broken_pod_lost(self: LocalBackend, res: Any, pod: Any) -> None:
            raise RuntimeError("injected: the backend failed while cleaning a lost pod")

        monkeypatch.setattr(LocalBackend, "pod_lost", broken_pod_lost)
        up: set[int | None] = set()

        def on_line(rank: int | None, node: int, stream: str, line: str) -> None:
            if line == "up":
                up.add(rank)
            if len(up) == 2 and not hasattr(on_line, "done"):
                on_line.done = True  # type: ignore[attr-defined]
                node1 = res.pods[1].handle.dir + "/agent"
                agent = next(p for p in neo.processes() if " serve " in p and p.endswith(node1))
                os.kill(int(agent.split()[0]), signal.SIGKILL)

        with pytest.raises(NeoError) as err:
            client.run("hang.py", reservation=res.id, workspace=ws, on_line=on_line)
        one_line(str(err.value))
        assert "internal error RuntimeError" in str(err.value)
        run = client.runs(1)[0]
        assert run.state.value == "failed" and "injected" in (run.error or ""), run
        assert "RuntimeError: injected" in (Path(run.log_dir) / "supervisor-error.txt").read_text()
        # The lost pod is cleaned by the release below; the surviving node must be stopped now.
        assert launched(neo, "/node0/") == [], "the surviving node's ranks were stopped too"
    finally:
        client.release_all()
        client.close()
    assert_settled(neo)


def test_a_reply_missing_a_key_stops_every_node_already_started(
    neo: Neo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(tmp_path)
    client = neo.client()
    original = AgentConnection.call

    async def call(self: AgentConnection, op: str, payload: bytes = b"", **fields: Any) -> dict[str, Any]:
        reply = await original(self, op, payload, **fields)
        if op == "exec" and str(fields.get("name", "")).endswith("-n1"):
            reply.pop("proc", None)  # the launcher did start; only the reply is malformed
        return reply

    try:
        res = client.reserve(gpus=2, nodes=2)
        monkeypatch.setattr(AgentConnection, "call", call)
        with pytest.raises(NeoError) as err:
            client.run("hang.py", reservation=res.id, workspace=ws)
        one_line(str(err.value))
        assert "KeyError" in str(err.value)
        run = client.runs(1)[0]
        assert run.state.value == "failed" and run.ended is not None
        assert launched(neo, "/") == [], (
            "both nodes' launchers were stopped, also the one whose reply was lost"
        )
    finally:
        monkeypatch.setattr(AgentConnection, "call", original)
        client.release_all()
        client.close()
    assert_settled(neo)
