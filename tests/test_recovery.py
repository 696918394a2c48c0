"""Crash recovery: a controller killed mid-reserve leaves nothing after the next command; leases
expire in the pod by themselves."""

from __future__ import annotations

import os
import signal
import time

from tests.conftest import Neo, kill_controller, read_until, use_config

SLOW = """
clusters:
  - name: local
    nodes: 4
    gpus_per_node: 8
    options: {start_delay_s: 5}
"""


def test_kill_9_of_the_controller_mid_reserve_is_rolled_back_by_the_next_command(neo: Neo) -> None:
    use_config(neo, SLOW)
    proc = neo.popen("reserve", "--gpus", "32")
    read_until(proc.stderr, "ready (1/4)")
    kill_controller(neo)
    assert proc.wait(timeout=30) == 1
    assert proc.stderr is not None and "controller exited while running this command" in proc.stderr.read()
    assert neo.processes(), "the killed controller had started pods"
    status = neo.json("status", "--all")
    assert isinstance(status, list) and len(status) == 1
    assert status[0]["state"] == "released"
    assert "controller exited while reserving" in status[0]["reason"]
    assert neo.processes() == []
    assert neo.json("clusters")[0]["free_gpus"] == 32  # type: ignore[index]


def test_kill_9_of_the_client_mid_reserve_cancels_that_reserve(neo: Neo) -> None:
    use_config(neo, SLOW)
    proc = neo.popen("reserve", "--gpus", "32")
    read_until(proc.stderr, "ready (1/4)")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    status = neo.json("status", "--all")
    while status[0]["state"] != "released" and time.monotonic() < deadline:  # type: ignore[index]
        time.sleep(0.1)
        status = neo.json("status", "--all")
    assert isinstance(status, list) and len(status) == 1
    assert status[0]["state"] == "released" and "interrupted" in status[0]["reason"]
    assert neo.processes() == []
    assert neo.json("clusters")[0]["free_gpus"] == 32  # type: ignore[index]


def test_ctrl_c_mid_reserve_rolls_back_before_exiting(neo: Neo) -> None:
    use_config(neo, SLOW)
    proc = neo.popen("reserve", "--gpus", "32")
    read_until(proc.stderr, "ready (1/4)")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert neo.processes() == []
    status = neo.json("status", "--all")
    assert status[0]["state"] == "released"  # type: ignore[index]


def test_idle_ttl_is_enforced_by_the_agent_itself(neo: Neo) -> None:
    res = neo.json("reserve", "--gpus", "8", "--idle-ttl", "1s")
    assert isinstance(res, dict)
    deadline = time.monotonic() + 20
    while neo.processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert neo.processes() == [], "agents exit at idle TTL with no controller running"
    status = neo.json("status", res["id"])
    assert isinstance(status, dict)
    assert status["state"] == "released" and "idle for more than" in status["reason"]
    assert neo.json("clusters")[0]["free_gpus"] == 32  # type: ignore[index]


def test_agent_killed_externally_marks_reservation_released(neo: Neo) -> None:
    res = neo.json("reserve", "--gpus", "16")
    assert isinstance(res, dict)
    for line in neo.processes():
        os.kill(int(line.split()[0]), signal.SIGKILL)
    time.sleep(0.3)
    status = neo.json("status", res["id"])
    assert isinstance(status, dict) and status["state"] == "released"
    assert neo.json("clusters")[0]["free_gpus"] == 32  # type: ignore[index]
