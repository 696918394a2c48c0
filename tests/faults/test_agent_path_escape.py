"""An authenticated peer still cannot leave the pod workspace, bend the agent, or stop its lease.

Links are resolved by the real filesystem: a chain such as ``x/l1 -> ..`` plus
``l2 -> x/l1/x/l1/../../../secret.txt`` stays inside the tree by a lexical reading of each
link text, yet leads out of it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from neo_agent.workspace_ops import EMPTY_ROOT, entry_hash, root_hex

from jupyter_neo.client import Client
from jupyter_neo.errors import AgentError
from jupyter_neo.model import Reservation
from jupyter_neo.transport.connection import AgentConnection
from tests.conftest import Neo

SECRET = b"secret of the pod's user, outside the workspace\n"
CHAIN = "x/l1/x/l1/../../../secret.txt"  # never below the root lexically; three levels up really


@pytest.fixture
def pod(neo: Neo) -> Iterator[tuple[Client, Reservation, AgentConnection, Path]]:
    client = neo.client()
    res = client.reserve(gpus=8)
    pod_dir = Path(res.pods[0].handle.dir)
    (pod_dir / "secret.txt").write_bytes(SECRET)
    conn = client.run_async(client.core.connect(res))[0]
    yield client, res, conn, pod_dir
    client.release(res.id)
    client.close()


def _refused(client: Client, conn: AgentConnection, op: str, payload: bytes = b"", **fields: Any) -> str:
    with pytest.raises(AgentError) as info:
        client.run_async(conn.request(op, payload, **fields))
    return info.value.agent_code


def _plant_chain(pod_dir: Path) -> Path:
    """The links a process in the pod (or an older agent) could have left in the current tree."""
    current = Path(os.path.realpath(pod_dir / "ws" / "current"))
    (current / "x").mkdir()
    os.symlink("..", current / "x" / "l1")
    os.symlink(CHAIN, current / "l2")
    os.symlink("x/l1/x/l1/../../..", current / "up")
    os.symlink("/etc/hostname", current / "abs")
    assert (current / "l2").read_bytes() == SECRET, "the chain really leads out"
    return current


def test_get_and_exec_cwd_through_a_link_chain_are_refused(
    pod: tuple[Client, Reservation, AgentConnection, Path],
) -> None:
    client, _, conn, pod_dir = pod
    _plant_chain(pod_dir)
    assert _refused(client, conn, "get", path="l2") == "outside_workspace"
    assert _refused(client, conn, "get", path="abs") == "outside_workspace"
    assert _refused(client, conn, "get", path="up/secret.txt") == "outside_workspace"
    assert _refused(client, conn, "exec", argv=["pwd"], cwd="up") == "outside_workspace"
    # put replaces the link itself; it never writes through it.
    client.run_async(conn.call("put", b"new content", path="l2", mode=0o644))
    assert (pod_dir / "secret.txt").read_bytes() == SECRET
    assert _refused(client, conn, "put", b"x", path="up/secret.txt") == "outside_workspace"
    assert (pod_dir / "secret.txt").read_bytes() == SECRET


def test_a_synced_link_chain_that_resolves_outside_is_refused(
    pod: tuple[Client, Reservation, AgentConnection, Path],
) -> None:
    client, _, conn, pod_dir = pod
    state = client.run_async(conn.call("ws_state"))
    assert state["root"] == EMPTY_ROOT
    entries = [["x", "d", 0, ""], ["x/l1", "l", 0, ".."], ["l2", "l", 0, CHAIN]]
    root = root_hex(sum(entry_hash(p, k, m, r) for p, k, m, r in entries))
    ops = json.dumps(entries).encode("ascii")
    code = _refused(
        client,
        conn,
        "ws_sync",
        ops,
        base=EMPTY_ROOT,
        root=root,
        generation=1,
        full=False,
        ops_len=len(ops),
        blobs=[],
    )
    assert code == "sync_refused"
    assert os.readlink(pod_dir / "ws" / "current") == os.path.join("gens", "0")
    assert not (pod_dir / "ws" / "gens" / "1").exists()
    assert sorted(os.listdir(pod_dir / "ws" / "tmp")) == []


@pytest.mark.parametrize("name", ["../../escape", "/ABS", "..", "a/b", ".hidden", ""])
def test_exec_names_are_confined_to_the_agent_directory(
    pod: tuple[Client, Reservation, AgentConnection, Path], tmp_path: Path, name: str
) -> None:
    client, _, conn, pod_dir = pod
    if name == "/ABS":
        name = str(tmp_path / "victim")
    before = set(os.listdir(pod_dir))
    assert _refused(client, conn, "exec", argv=["true"], name=name) in ("bad_request", "bad_argv")
    assert set(os.listdir(pod_dir)) == before
    assert not (tmp_path / "victim").exists()
    started = client.run_async(conn.call("exec", argv=["true"], name="run-1.n0_ok"))
    assert started["proc"] == "run-1.n0_ok"
    assert client.run_async(conn.call("wait", proc="run-1.n0_ok", timeout=30))["returncode"] == 0


BAD_LEASES = [
    {"idle_ttl": "soon"},
    {"idle_ttl": float("nan")},
    {"idle_ttl": float("inf")},
    {"idle_ttl": -5},
    {"idle_ttl": True},
    {"deadline": {"at": 1}},
    {"deadline": "tomorrow"},
]


@pytest.mark.parametrize("bad", BAD_LEASES, ids=[json.dumps(b) for b in BAD_LEASES])
def test_a_malformed_lease_is_refused_and_the_idle_ttl_still_holds(
    pod: tuple[Client, Reservation, AgentConnection, Path], bad: dict[str, Any]
) -> None:
    client, _, conn, pod_dir = pod
    agent_dir = pod_dir / "agent"
    code = _answer_code(client, conn, "lease", **bad)
    time.sleep(1.0)  # a few lease ticks: the watcher must survive whatever was sent
    client.run_async(conn.call("lease", idle_ttl=1.0))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (agent_dir / "exit.json").exists():
        time.sleep(0.1)
    assert (agent_dir / "exit.json").exists(), "the agent outlived its idle TTL: the lease watcher died"
    assert "idle" in json.loads((agent_dir / "exit.json").read_text())["reason"]
    assert code == "bad_request", "a malformed lease was accepted"


def _answer_code(client: Client, conn: AgentConnection, op: str, **fields: Any) -> str:
    """The agent's error code for a request, or "" when it accepted it."""
    try:
        client.run_async(conn.request(op, **fields))
    except AgentError as exc:
        return exc.agent_code
    return ""


def test_the_deadline_still_holds_after_a_malformed_lease(
    pod: tuple[Client, Reservation, AgentConnection, Path],
) -> None:
    client, _, conn, pod_dir = pod
    agent_dir = pod_dir / "agent"
    code = _answer_code(client, conn, "lease", deadline="tomorrow", idle_ttl=3600)
    time.sleep(1.0)
    client.run_async(conn.call("lease", deadline=time.time() + 1.5))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (agent_dir / "exit.json").exists():
        time.sleep(0.1)
    assert (agent_dir / "exit.json").exists(), "the agent outlived its deadline: the lease watcher died"
    assert json.loads((agent_dir / "exit.json").read_text())["reason"] == "lease deadline reached"
    assert code == "bad_request", "a malformed lease was accepted"


MALFORMED = [
    ("put", {"path": "f", "mode": "rw"}),
    ("put", {"path": ["f"]}),
    ("get", {"path": 7}),
    ("exec", {"argv": ["true"], "env": {"A": 1}}),
    ("exec", {"argv": ["true"], "env": {"A=B": "x"}}),
    ("exec", {"argv": ["true"], "idle_ok": "yes"}),
    ("attach", {"proc": "p1", "offsets": "all"}),
    ("wait", {"proc": "p1", "timeout": "long"}),
    ("hot_gen", {"session": "s1", "gen": "next"}),
    ("hot_gen", {"session": "../s1", "gen": 1}),
    ("shutdown", {"purge": "yes"}),
    ("ws_sync", {"root": "zz", "base": "x", "full": False, "ops_len": 0}),
    ("ws_sync", {"root": "0" * 64, "full": True, "ops_len": 5}),
    ("ws_sync", {"root": "0" * 64, "full": True, "ops_len": 0, "blobs": [["a", 1, False, 420]]}),
    ("ws_objects", {"blobs": [["0" * 64, 10**9, False, 420]]}),
    ("ws_object_part", {"digest": "0" * 64, "mode": 420, "offset": 5, "total": 1}),
    ("ws_relay_fetch", {"host": "127.0.0.1", "port": "80", "token": "t", "want": []}),
    ("ws_relay_fetch", {"host": "127.0.0.1", "port": 80, "token": "t", "want": [["../../x", 420]]}),
    ("ws_relay_serve", {"host": "127.0.0.1", "ttl": 10**9}),
    ("ws_relay_children", {"tree": "t", "children": "pod-1"}),
    ("ws_relay_children", {"tree": "t", "children": [{"pod": "p", "host": "h", "port": 0, "token": "t"}]}),
]


@pytest.mark.parametrize(
    ("op", "fields"), MALFORMED, ids=[f"{op}-{i}" for i, (op, _) in enumerate(MALFORMED)]
)
def test_every_malformed_field_is_a_bad_request_and_changes_nothing(
    pod: tuple[Client, Reservation, AgentConnection, Path], op: str, fields: dict[str, Any]
) -> None:
    client, _, conn, pod_dir = pod
    if op in ("attach", "wait"):
        client.run_async(conn.call("exec", argv=["true"], name="p1"))
    client.run_async(conn.call("ws_state"))  # the content store's directories exist before
    before = sorted(str(p.relative_to(pod_dir)) for p in pod_dir.rglob("*") if "procs" not in p.parts)
    code = _refused(client, conn, op, **fields)
    assert code in ("bad_request", "bad_path", "sync_refused"), code
    after = sorted(str(p.relative_to(pod_dir)) for p in pod_dir.rglob("*") if "procs" not in p.parts)
    assert [p for p in after if p not in before and "/tmp" not in p and "objects" not in p] == []
    assert client.run_async(conn.call("ping"))["ok"]
    assert not (pod_dir / "agent" / "exit.json").exists()
