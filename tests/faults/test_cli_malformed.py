"""Defect 12 on the command line: every value that used to end in a traceback is one line, leaves
nothing behind, and anything truly unexpected is one line with its traceback in a log file."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import Neo
from tests.faults.state_invariants import assert_consistent, assert_one_line_error, assert_released_and_clean
from tests.faults.support import reader_pid

RESERVE = [
    (["--budget", "1e15"], "less than or equal to 1000000000"),
    (["--budget", "inf"], "finite number"),
    (["--budget", "nan"], "finite number"),
    (["--max-price", "nan"], "finite number"),
    (["--idle-ttl", "inf"], "not a finite time"),
    (["--idle-ttl", "nan"], "not a finite time"),
    (["--idle-ttl", "1e400"], "not a finite time"),
    (["--idle-ttl", "99999d"], "longer than 10 years"),
]


@pytest.mark.parametrize(("args", "message"), RESERVE, ids=[" ".join(a) for a, _ in RESERVE])
def test_reserve_refuses_unrepresentable_numbers(neo: Neo, args: list[str], message: str) -> None:
    assert_one_line_error(neo.run("reserve", "--gpus", "8", *args), message)
    assert_released_and_clean(neo, free=32)


EXTEND = [
    (["--budget", "nan"], "finite number"),
    (["--budget", "inf"], "finite number"),
    (["--budget", "1e15"], "less than or equal to 1000000000"),
    (["--budget", "0"], "greater than 0"),
    (["--idle-ttl", "inf"], "not a finite time"),
    (["--idle-ttl", "-5"], "negative"),
]


def test_extend_refuses_bad_values_and_changes_nothing(neo: Neo) -> None:
    res: Any = neo.json("reserve", "--gpus", "8", "--idle-ttl", "30m")
    for args, message in EXTEND:
        assert_one_line_error(neo.run("extend", res["id"], *args), message)
        after: Any = neo.json("status", res["id"])
        assert after["idle_ttl"] == 1800 and after["budget"] is None, (args, after)
    assert [r["id"] for r in assert_consistent(neo)] == [res["id"]]
    neo.run("release", res["id"], check=True)
    assert_released_and_clean(neo, free=32)


@pytest.mark.parametrize("limit", ["99999999999999999999", "0", "1e20"])
def test_runs_limit_out_of_range_is_one_line(neo: Neo, limit: str) -> None:
    proc = neo.run("runs", "--limit", limit)
    assert_one_line_error(proc, "limit must be a whole number from 1 to 100,000")


def test_zero_means_no_limit_in_every_spelling(neo: Neo) -> None:
    for spelling in ("0", "0s", "0h0m", "none"):
        res: Any = neo.json("reserve", "--gpus", "8", "--idle-ttl", spelling)
        assert res["idle_ttl"] is None, spelling
        neo.run("release", res["id"], check=True)
    assert_released_and_clean(neo, free=32)


def test_commands_on_a_released_reservation_are_one_line(neo: Neo, tmp_path: Any) -> None:
    res: Any = neo.json("reserve", "--gpus", "8")
    # A run whose controller is killed -9 stays "running" in the store after its gang is released.
    controller = neo.popen("run", "-r", res["id"], "--cmd", "sleep 120", "--no-sync")
    deadline = time.monotonic() + 60
    while not (running := [r for r in neo.json("runs") if r["state"] == "running"]):  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.2)
    os.kill(reader_pid(neo, controller.pid), signal.SIGKILL)  # the process supervising the run
    controller.wait()
    neo.run("release", res["id"], check=True)
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "a.py").write_text("print(1)\n")
    assert_one_line_error(neo.run("ping", res["id"]), f"reservation {res['id']} is released")
    assert_one_line_error(
        neo.run("sync", res["id"], "--path", str(tmp_path / "ws")), f"reservation {res['id']} is released"
    )
    stopped = neo.run("stop", running[0]["id"], "--json")
    assert stopped.returncode == 0 and "Traceback" not in stopped.stderr, stopped.stderr
    record = json.loads(stopped.stdout)
    # Settled by whichever came first after the kill (runs/settle.py): the next command's
    # reconcile (its controller is gone) or the release (its gang was given back).
    pid = f"{record['controller']['pid']:.0f}"
    settled = {
        "lost": f"its controller (pid {pid}) exited before the run ended",
        "stopped": "the reservation was given back",
    }
    assert record["error"].startswith(settled[record["state"]]), record
    assert_released_and_clean(neo, free=32)


def test_an_unexpected_error_is_one_line_and_a_logged_traceback(neo: Neo) -> None:
    """Fault injection: a bug (a non-NeoError) raised inside a command, in a real CLI process."""
    inject = (
        "import sys, jupyter_neo.client as c\n"
        "def broken(self, ref=None): raise KeyError('injected-bug')\n"
        "c.Client.status = broken\n"
        "from jupyter_neo.cli.main import main\n"
        "sys.exit(main(['status']))\n"
    )
    env = dict(neo.env, NEO_CONTROLLER="off")  # the patch lives in this process: run the command here
    proc = subprocess.run(
        [sys.executable, "-c", inject], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    line = assert_one_line_error(proc, "unexpected error: KeyError: 'injected-bug'")
    log = neo.home / "logs" / "errors.log"
    assert str(log) in line
    text = log.read_text()
    assert "Traceback" in text and "injected-bug" in text and "neo status" in text
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    assert_released_and_clean(neo, free=32)
