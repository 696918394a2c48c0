"""kill -9 of the ``neo run`` controller (issue 14, defect 7): the pods stop a supervised run on
their own when its run lease lapses, the record is settled as ``lost`` with the output written
after the controller died, ``neo stop`` answers in one line, and ``--detach`` runs outlive their
controller without holding the gang forever."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Neo, read_until
from tests.faults.run_support import TICKER, assert_settled, one_line, wait_for, workers
from tests.faults.support import reader_pid

pytest.importorskip("torch")
pytestmark = pytest.mark.slow
LEASE = 3.0


@pytest.fixture
def gang(neo: Neo, tmp_path: Path) -> Iterator[tuple[Neo, str, Path]]:
    """A 2-node x 1-GPU gang with a short run lease, and a workspace with the ticker rank."""
    neo.env["NEO_RUN_LEASE"] = f"{LEASE}s"
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "tick.py").write_text(TICKER)
    (ws / "quiet.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(3600)\n")
    (ws / "short.py").write_text(
        "import time\nfor i in range(30):\n    print('line', i, flush=True)\n    time.sleep(0.1)\n"
    )
    res: Any = neo.json("reserve", "--gpus", "2", "--nodes", "2", "--idle-ttl", "10m")
    yield neo, res["id"], ws
    neo.run("release", "--all")
    assert_settled(neo)


def kill_controller_mid_run(neo: Neo, rid: str, ws: Path, script: str = "tick.py") -> float:
    """SIGKILL the process supervising the run: the resident controller (the CLI only forwards
    the command to it), or the CLI itself when it runs in-process (NEO_CONTROLLER=off)."""
    proc = neo.popen("run", "-r", rid, "--ranks", "all", script, cwd=ws)
    read_until(proc.stdout, "up", count=2)
    killed_at = time.time()
    os.kill(reader_pid(neo, proc.pid), signal.SIGKILL)
    proc.wait()
    assert workers(neo), "the ranks outlive the killed controller for now"
    return killed_at


def test_pods_stop_a_run_whose_controller_died_and_the_record_keeps_its_tail(
    gang: tuple[Neo, str, Path],
) -> None:
    neo, rid, ws = gang
    killed_at = kill_controller_mid_run(neo, rid, ws)
    # Nobody runs a command: the pods' agents stop the run by themselves after the lease.
    wait_for(lambda: workers(neo) == [], LEASE + 30, "the pods to stop the run after its lease")
    runs: Any = neo.json("runs")
    run = runs[0]
    assert run["state"] == "lost", run
    assert "run lease expired" in run["error"] and "controller" in run["error"], run["error"]
    assert run["exit_code"] not in (None, 0)
    for rank in run["ranks"]:
        ticks = [
            float(x.split()[1]) for x in Path(rank["log"]).read_text().splitlines() if x.startswith("tick")
        ]
        assert ticks and max(ticks) > killed_at + 1.0, "output written after the controller died is kept"
    stop = neo.run("stop", run["id"])
    assert stop.returncode == 0 and "lost" in stop.stderr
    one_line(stop.stderr)
    status: Any = neo.json("status", rid)
    assert status["state"] == "ready", "the gang itself stays warm for the next run"


def test_neo_stop_on_a_run_whose_controller_died_stops_it_in_one_line(gang: tuple[Neo, str, Path]) -> None:
    neo, rid, ws = gang
    kill_controller_mid_run(neo, rid, ws, "quiet.py")
    # The run's id from the state file itself: any neo command would already settle the run.
    with contextlib.closing(sqlite3.connect(neo.home / "state.sqlite")) as db:
        (run_id,) = db.execute("SELECT id FROM runs WHERE state IN ('starting', 'running')").fetchone()
    stop = neo.run("stop", run_id)
    assert stop.returncode == 0, stop.stderr
    one_line(stop.stderr)
    assert "stopped" in stop.stderr
    assert workers(neo) == []
    run: Any = neo.json("runs")
    assert run[0]["state"] == "stopped" and "up" in Path(run[0]["ranks"][1]["log"]).read_text()


def test_detached_run_outlives_its_controller_and_is_recorded(gang: tuple[Neo, str, Path]) -> None:
    neo, rid, ws = gang
    t0 = time.monotonic()
    proc = neo.run("run", "-r", rid, "--detach", "short.py", cwd=ws)
    assert proc.returncode == 0, proc.stderr
    assert "started detached" in proc.stderr
    runs: Any = neo.json("runs")
    run_id = runs[0]["id"]
    assert runs[0]["detached"] and runs[0]["lease"] is None
    # It runs well past the lease with no controller at all, then finishes by itself.
    assert time.monotonic() - t0 < LEASE or runs[0]["state"] == "running"

    def finished() -> Any:
        run: Any = next(r for r in neo.json("runs") if r["id"] == run_id)  # type: ignore[union-attr]
        return run if run["state"] != "running" else None

    run = wait_for(finished, 90, "the detached run to finish")
    assert run["state"] == "succeeded" and run["exit_code"] == 0, run
    for rank in run["ranks"]:
        assert "line 29" in Path(rank["log"]).read_text(), "the whole output is collected"
    assert workers(neo) == []


def test_a_hung_silent_detached_run_does_not_hold_the_gang_past_its_idle_ttl(
    neo: Neo, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "quiet.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(3600)\n")
    res: Any = neo.json("reserve", "--gpus", "2", "--nodes", "2", "--idle-ttl", "12s")
    proc = neo.run("run", "-r", res["id"], "--detach", "quiet.py", cwd=ws)
    assert proc.returncode == 0, proc.stderr
    # Silent for longer than the idle TTL: the pods count the gang idle and give it back.
    wait_for(lambda: neo.processes() == [], 90, "the idle TTL to release the gang")
    status: Any = neo.json("status", res["id"])
    assert status["state"] == "released" and "idle" in status["reason"], status
    run: Any = neo.json("runs")
    assert run[0]["state"] in ("stopped", "lost"), run[0]
    assert_settled(neo)
