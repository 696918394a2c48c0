"""Disk full while a run's output is written (issue 14 fault suite): on the controller's side (the
run logs under ``$NEO_HOME/runs``) the run ends cleanly with one line naming the full disk; on the
pod's side (the agent's own copy of the output) the agent keeps streaming and the run completes.
Real, small tmpfs mounts; root only (CI runs as root)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Neo
from tests.faults.run_support import assert_settled, one_line, workers
from tests.faults.support import tmpfs

pytest.importorskip("torch")
pytestmark = pytest.mark.slow
FLOOD = "import sys\nline = 'x' * 1000\nprint('up', flush=True)\nwhile True:\n    print(line, flush=True)\n"


@pytest.fixture
def full_run_logs(neo: Neo) -> Iterator[Path]:
    with tmpfs(neo.home / "runs", "1m") as path:
        yield path


@pytest.fixture
def full_pod_disk(neo: Neo) -> Iterator[Path]:
    with tmpfs(neo.home / "local", "12m") as path:
        yield path


def test_run_logs_filling_the_disk_end_the_run_in_one_line(
    neo: Neo, full_run_logs: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "flood.py").write_text(FLOOD)
    res: Any = neo.json("reserve", "--gpus", "2", "--nodes", "2")
    proc = neo.run("run", "-r", res["id"], "--timeout", "120s", "flood.py", cwd=ws, timeout=240)
    assert proc.returncode not in (0, 124), proc.stderr[-2000:]
    assert "cannot write the run's logs: No space left on device" in proc.stderr
    assert "Traceback" not in proc.stderr
    runs: Any = neo.json("runs")
    assert runs[0]["state"] == "failed" and "No space left" in runs[0]["error"]
    assert workers(neo) == [], "every rank on every node was stopped"
    neo.run("release", "--all", check=True)
    assert_settled(neo)


def test_a_full_pod_disk_does_not_stall_the_run(neo: Neo, full_pod_disk: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "write.py").write_text(
        "import sys\nfor i in range(20000):\n    sys.stdout.write('%06d %s\\n' % (i, 'y' * 1000))\nprint('all written')\n"
    )
    res: Any = neo.json("reserve", "--gpus", "1")
    # 20 MB of output from a plain command: more than the pod's 12 MB disk can keep.
    proc = neo.run(
        "run", "-r", res["id"], "--timeout", "120s", "--cmd", "python3 write.py", cwd=ws, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    one_line(proc.stderr)
    runs: Any = neo.json("runs")
    log = Path(runs[0]["ranks"][0]["log"]).read_text()
    assert "019999 " in log and "all written" in log, "the controller got every byte, live"
    neo.run("release", "--all", check=True)
    assert_settled(neo)
