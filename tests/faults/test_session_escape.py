"""A rank that double-forks into a new session and clears its environment (issue 14, defect 8)
is still stopped with its run and with its reservation: by the run's cgroup where the machine
lets the agent write one, else by the subreapers (launcher, then agent) that adopt it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from neo_agent import reaper

from tests.conftest import Neo, read_until
from tests.faults.run_support import ESCAPER, assert_settled, escapee, kill_escapees, wait_for, workers

pytest.importorskip("torch")
pytestmark = pytest.mark.slow


def cgroups_writable() -> bool:
    cgroups = reaper.Cgroups.open()
    if cgroups is None:
        return False
    cgroups.close()
    return True


@pytest.fixture(params=["cgroup", "subreaper"])
def gang(request: pytest.FixtureRequest, neo: Neo, tmp_path: Path) -> Iterator[tuple[Neo, str, Path]]:
    if request.param == "cgroup" and not cgroups_writable():
        pytest.skip("this machine gives no writable cgroup v2 hierarchy (the subreaper case still runs)")
    if request.param == "subreaper":
        neo.env[reaper.CGROUP_ENV] = "off"
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "escape.py").write_text(ESCAPER)
    res: Any = neo.json("reserve", "--gpus", "1")
    record = next(Path(neo.home).glob(f"local/local/{res['id']}/node*/agent")) / "cgroup"
    recorded = record.read_text().strip() if record.exists() else ""
    try:
        yield neo, res["id"], ws
    finally:
        kill_escapees(tmp_path / "escapee.pid")
    neo.run("release", "--all")
    assert_settled(neo)
    # The mechanism under test was the one in use (checked last: the escape is what matters).
    assert bool(recorded) == (request.param == "cgroup"), recorded


def start_escaper(neo: Neo, rid: str, ws: Path, pidfile: Path, *extra: str) -> Any:
    proc = neo.popen("run", "-r", rid, "escape.py", str(pidfile), *extra, cwd=ws)
    read_until(proc.stdout, "up")
    wait_for(lambda: escapee(pidfile), 30, "the escaped sleeper to start")
    return proc


def test_neo_stop_kills_a_process_that_left_the_session(gang: tuple[Neo, str, Path], tmp_path: Path) -> None:
    neo, rid, ws = gang
    pidfile = tmp_path / "escapee.pid"
    proc = start_escaper(neo, rid, ws, pidfile)
    runs: Any = neo.json("runs")
    stop = neo.run("stop", runs[0]["id"])
    assert stop.returncode == 0, stop.stderr
    proc.communicate(timeout=60)
    wait_for(lambda: escapee(pidfile) is None, 15, "the escaped sleeper to be killed by neo stop")
    assert workers(neo) == []


def test_neo_release_kills_a_process_that_left_the_session(
    gang: tuple[Neo, str, Path], tmp_path: Path
) -> None:
    neo, rid, ws = gang
    pidfile = tmp_path / "escapee.pid"
    proc = start_escaper(neo, rid, ws, pidfile)
    release = neo.run("release", rid)
    assert release.returncode == 0, release.stderr
    proc.communicate(timeout=60)
    wait_for(lambda: escapee(pidfile) is None, 15, "the escaped sleeper to be killed by neo release")


def test_a_finished_run_leaves_no_escaped_process(gang: tuple[Neo, str, Path], tmp_path: Path) -> None:
    neo, rid, ws = gang
    pidfile = tmp_path / "escapee.pid"
    proc = neo.run("run", "-r", rid, "escape.py", str(pidfile), "exit", cwd=ws)
    assert proc.returncode == 0, proc.stderr
    assert Path(f"{pidfile}.0").exists(), "the rank did start its sleeper"
    wait_for(lambda: escapee(pidfile) is None, 15, "the escaped sleeper to be killed at the run's end")
