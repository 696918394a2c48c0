"""The resident controller with real processes: the CLI talking to it, racing starts, stale and
foreign sockets, protocol mismatch, Ctrl-C of one request, kill -9 mid-run and mid-sync, idle exit,
and a reduced (16-pod) version of the scale table."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from jupyter_neo.controller import wire
from jupyter_neo.controller.client import controller_pid
from tests.conftest import Neo, kill_controller, read_until, use_config
from tests.test_sync_support import assert_pods_match

SIXTEEN = """
clusters:
  - name: local
    nodes: 16
    gpus_per_node: 1
"""


def controllers_of(home: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "jupyter_neo.controller.daemon" in " ".join(proc.info["cmdline"] or []) and proc.environ().get(
                "NEO_HOME"
            ) == str(home):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def gang(neo: Neo, tmp_path: Path) -> Iterator[tuple[Neo, str, Path]]:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "main.py").write_text("print('hello')\n")
    (ws / "sleeper.py").write_text(
        "import sys, time\nprint('started', flush=True)\ntime.sleep(int(sys.argv[1]))\n"
    )
    res: Any = neo.json("reserve", "--gpus", "16", "--nodes", "2")
    yield neo, res["id"], ws
    neo.run("release", "--all")


def test_commands_share_one_controller_on_an_owner_only_socket(neo: Neo) -> None:
    assert neo.run("clusters").returncode == 0
    pid = controller_pid(str(neo.home))
    assert pid and pid > 0
    sock = neo.home / wire.SOCKET
    assert stat.S_ISSOCK(sock.lstat().st_mode) and stat.S_IMODE(sock.lstat().st_mode) == 0o600
    status: Any = neo.json("daemon", "status")
    assert status["pid"] == pid and status["protocol"] == wire.PROTOCOL
    assert neo.run("clusters").returncode == 0 and controller_pid(str(neo.home)) == pid
    logs = neo.run("daemon", "logs", check=True)
    assert f"controller {pid} listening" in logs.stdout
    stopped = neo.run("daemon", "stop", check=True)
    assert f"stopped controller (pid {pid})" in stopped.stdout
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    assert neo.run("daemon", "status").returncode == 3


def test_racing_starts_yield_exactly_one_controller(neo: Neo) -> None:
    procs = [neo.popen("clusters", "--json") for _ in range(6)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert json.loads(out)[0]["name"] == "local"
    assert len(controllers_of(neo.home)) == 1


def test_a_stale_socket_of_a_killed_controller_is_replaced(neo: Neo) -> None:
    assert neo.run("clusters").returncode == 0
    pid = kill_controller(neo)
    wait_for(lambda: controller_pid(str(neo.home)) is None)
    assert (neo.home / wire.SOCKET).exists(), "the killed controller left its socket file"
    assert neo.run("clusters").returncode == 0
    new = controller_pid(str(neo.home))
    assert new and new != pid


def test_a_socket_other_users_may_use_is_refused(neo: Neo) -> None:
    neo.home.mkdir(parents=True)
    path = neo.home / wire.SOCKET
    rogue = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    rogue.bind(str(path))
    rogue.listen(1)
    try:
        path.chmod(0o666)
        proc = neo.run("status")
        assert proc.returncode == 1 and proc.stdout == ""
        assert "refusing controller socket" in proc.stderr and "Traceback" not in proc.stderr
        if os.geteuid() == 0:
            path.chmod(0o600)
            os.chown(path, 65534, 65534)
            proc = neo.run("status")
            assert proc.returncode == 1 and "belongs to uid 65534" in proc.stderr
    finally:
        rogue.close()
        path.unlink()


def test_a_controller_of_another_protocol_version_is_named_in_one_line(neo: Neo) -> None:
    neo.home.mkdir(parents=True)
    path = neo.home / wire.SOCKET
    old = os.umask(0o177)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.umask(old)
    server.listen(4)

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                wire.send(conn, {"type": "hello", "protocol": 99, "pid": 1})
                wire.recv(conn)

    threading.Thread(target=serve, daemon=True).start()
    proc = neo.run("status")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "protocol 99" in lines[0] and f"protocol {wire.PROTOCOL}" in lines[0]
    path.unlink()


def test_ctrl_c_cancels_only_that_request(gang: tuple[Neo, str, Path]) -> None:
    neo, rid, ws = gang
    first = neo.popen("run", "-r", rid, "--cmd", "python sleeper.py 60", cwd=ws)
    second = neo.popen("run", "-r", rid, "--cmd", "python sleeper.py 60", cwd=ws)
    for proc in (first, second):
        read_until(proc.stdout, "started")
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=60) == 130
    runs: Any = neo.json("runs")
    states = sorted(r["state"] for r in runs[:2])
    assert states == ["running", "stopped"], states
    second.send_signal(signal.SIGINT)
    assert second.wait(timeout=60) == 130
    assert not [p for p in neo.processes() if "sleeper.py 60" in p]


def test_kill_9_of_the_controller_mid_run_stops_the_ranks_and_marks_the_run(
    gang: tuple[Neo, str, Path],
) -> None:
    neo, rid, ws = gang
    proc = neo.popen("run", "-r", rid, "--cmd", "python sleeper.py 120", cwd=ws)
    read_until(proc.stdout, "started")
    kill_controller(neo)
    assert proc.wait(timeout=30) == 1
    assert proc.stderr is not None and "controller exited while running this command" in proc.stderr.read()
    runs: Any = neo.json("runs")  # a new controller starts, adopts the reservation, marks the run
    assert (
        runs[0]["state"] == "lost"
        and "exited before the run ended; every rank was stopped" in runs[0]["error"]
    )
    wait_for(lambda: not [p for p in neo.processes() if "sleeper.py 120" in p])
    status: Any = neo.json("status", rid)
    assert status["state"] == "ready"
    again = neo.run("run", "-r", rid, "--cmd", "echo again", cwd=ws)
    assert again.returncode == 0 and "again" in again.stdout


def test_kill_9_of_the_controller_mid_sync_then_sync_repairs(gang: tuple[Neo, str, Path]) -> None:
    neo, rid, ws = gang
    for i in range(300):
        (ws / f"blob{i}.bin").write_bytes(os.urandom(64 * 1024))
    proc = neo.popen("sync", rid, cwd=ws)
    time.sleep(0.3)
    kill_controller(neo)
    proc.wait(timeout=30)
    (ws / "main.py").write_text("print('edited')\n")
    assert neo.run("sync", rid, cwd=ws).returncode == 0
    res = neo.client().status(rid)[0]
    assert_pods_match(res, ws)


def test_the_controller_exits_when_idle_with_no_live_reservation(neo: Neo) -> None:
    neo.env["NEO_CONTROLLER_IDLE"] = "1"
    assert neo.run("clusters").returncode == 0
    pid = controller_pid(str(neo.home))
    assert pid
    wait_for(lambda: controller_pid(str(neo.home)) is None, timeout=30)


def test_sixteen_pods_reserve_sync_run_status(neo: Neo, tmp_path: Path) -> None:
    """The reduced form of the 64-pod scale table (bench/controller.py): every step works."""
    use_config(neo, SIXTEEN)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "m.py").write_text("x = 1\n")
    res: Any = neo.json("reserve", "--gpus", "16")
    assert len(res["pods"]) == 16
    assert neo.run("sync", res["id"], cwd=ws).returncode == 0
    (ws / "m.py").write_text("x = 2\n")
    synced: Any = neo.json("sync", res["id"], "--path", str(ws))
    assert synced["changed"] == 1 and len(synced["pods"]) == 16
    run = neo.run("run", "-r", res["id"], "--cmd", "true", cwd=ws)
    assert run.returncode == 0, run.stderr
    status: Any = neo.json("daemon", "status")
    assert status["reservations"][0]["warm"] == 16
    assert_pods_match(neo.client().status(res["id"])[0], ws)
    assert neo.run("release", res["id"]).returncode == 0
