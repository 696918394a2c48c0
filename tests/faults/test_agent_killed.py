"""kill -9 of one pod's agent mid-run (issue 14 fault suite): the run fails fast naming the pod,
every rank on every node is stopped (also a rank's process that left its session, through the
cgroup the dead agent recorded), the partial gang is given back and its GPUs are free."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Neo, read_until
from tests.faults.run_support import ESCAPER, assert_settled, escapee, kill_escapees, wait_for, workers
from tests.faults.test_session_escape import cgroups_writable

pytest.importorskip("torch")
pytestmark = pytest.mark.slow


def test_kill_9_of_one_agent_mid_run(neo: Neo, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "escape.py").write_text(ESCAPER)
    pidfile = tmp_path / "escapee.pid"
    request.addfinalizer(lambda: kill_escapees(pidfile))
    res: Any = neo.json("reserve", "--gpus", "2", "--nodes", "2")
    rid = res["id"]
    proc = neo.popen("run", "-r", rid, "--ranks", "all", "escape.py", str(pidfile), cwd=ws)
    read_until(proc.stdout, "up", count=2)
    wait_for(lambda: escapee(pidfile, 0) and escapee(pidfile, 1), 30, "both ranks' sleepers")
    # The rank-1 pod's agent (node1 of an empty cluster).
    agent = next(p for p in neo.processes() if " serve " in p and p.endswith(f"{rid}/node1/agent"))
    os.kill(int(agent.split()[0]), signal.SIGKILL)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 255, err
    assert f"pod {rid}-1 was lost" in err and "Traceback" not in err
    assert workers(neo) == [], "every launcher and rank is gone, on both nodes"
    assert escapee(pidfile, 0) is None, "the live agent killed its rank's escaped sleeper"
    if cgroups_writable():
        wait_for(lambda: escapee(pidfile, 1) is None, 15, "the dead agent's cgroup to be killed")
    else:  # documented limit: without cgroups, an agent killed outright cannot adopt orphans
        if (p := escapee(pidfile, 1)) is not None:
            p.kill()
    runs: Any = neo.json("runs")
    assert runs[0]["state"] == "failed" and runs[0]["exit_code"] == 255
    status: Any = neo.json("status", "--all")
    assert status[0]["state"] == "released" and "gone" in status[0]["reason"]
    assert_settled(neo)
