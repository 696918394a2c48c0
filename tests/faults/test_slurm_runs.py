"""kill -9 of the ``neo run`` controller on a real Slurm gang (issue 14 fault suite): the pods'
agents stop the run when its lease lapses, the next command records it ``lost`` with the output
printed after the controller died, and release leaves no job. Root and the Slurm test cluster
needed (skips otherwise); wrap in ``flock /tmp/neo-slurm.lock``."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Neo, read_until
from tests.engines.slurm.harness import SlurmCluster
from tests.faults.run_support import one_line
from tests.faults.support import reader_pid
from tests.slurm_support import live_procs_mentioning, neo_jobs, wait_for

pytest_plugins = ["tests.engines.slurm.conftest_fixture", "tests.slurm_fixture"]
pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


def test_kill_9_of_the_controller_mid_run_on_slurm(
    sneo: Neo, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    sneo.env["NEO_RUN_LEASE"] = "3s"
    ws = tmp_path / "ws"
    ws.mkdir()
    res: Any = sneo.json("reserve", "--gpus", "4", "--nodes", "2")
    marker = f"neo-fault-{res['id']}"
    script = f"echo up; i=0; while true; do i=$((i+1)); echo tick $i $(date +%s); sleep 0.2; done # {marker}"
    proc = sneo.popen("run", "-r", res["id"], "--ranks", "all", "--cmd", f"sh -c '{script}'", cwd=ws)
    read_until(proc.stdout, "up", count=2)
    killed_at = time.time()
    os.kill(reader_pid(sneo, proc.pid), signal.SIGKILL)  # the resident controller supervising it
    proc.wait()
    assert live_procs_mentioning(marker), "the commands outlive the killed controller for now"
    wait_for(lambda: not live_procs_mentioning(marker), 60, "the pods to stop the run after its lease")
    runs: Any = sneo.json("runs")
    assert runs[0]["state"] == "lost" and "run lease expired" in runs[0]["error"], runs[0]
    for rank in runs[0]["ranks"]:
        stamps = [
            int(x.split()[2]) for x in Path(rank["log"]).read_text().splitlines() if x.startswith("tick")
        ]
        assert stamps and max(stamps) >= int(killed_at) + 1, "output after the controller died is kept"
    stop = sneo.run("stop", runs[0]["id"])
    assert stop.returncode == 0
    one_line(stop.stderr)
    sneo.run("release", "--all", check=True)
    assert neo_jobs(slurm_cluster, sneo) == []
    assert sneo.json("status") == []
