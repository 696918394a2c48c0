"""What every fault test checks afterwards, and the rank scripts they inject."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from tests.conftest import Neo

# A rank that prints a timestamped tick every 0.1 s forever: a run that never ends by itself.
TICKER = """
import sys, time
print("up", flush=True)
while True:
    print("tick %.3f" % time.time(), flush=True)
    time.sleep(0.1)
"""

# A rank that double-forks into a new session, clears its environment and execs a sleeper whose
# argv names nothing of jupyter-neo: only a cgroup or a subreaper can still find it.
ESCAPER = """
import os, sys, time
pidfile = "%s.%s" % (sys.argv[1], os.environ.get("RANK", "0"))
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
        os.execve("/bin/sleep", ["sleep", "3607"], {})
    os._exit(0)
print("up", flush=True)
while len(sys.argv) < 3:
    time.sleep(0.2)
"""


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy (generous timeouts: the machine is shared)."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def workers(neo: Neo) -> list[str]:
    """Live processes of the sandbox other than the resident agents."""
    return [p for p in neo.processes() if " serve " not in p]


def escapee(pidfile: Path, rank: int = 0) -> psutil.Process | None:
    """Rank ``rank``'s double-forked sleeper, if it still lives (checked by pid *and* argv)."""
    try:
        proc = psutil.Process(int(Path(f"{pidfile}.{rank}").read_text()))
        return proc if proc.cmdline() == ["sleep", "3607"] and proc.status() != psutil.STATUS_ZOMBIE else None
    except (OSError, ValueError, psutil.Error):
        return None


def kill_escapees(pidfile: Path) -> None:
    """Kill the sleepers a failed test left (nothing else can find them: that is the point)."""
    for rank in range(8):
        proc = escapee(pidfile, rank)
        if proc is not None:
            proc.kill()


def one_line(stderr: str) -> None:
    """A user-facing error: no traceback, and short."""
    assert "Traceback" not in stderr, stderr
    assert len([line for line in stderr.splitlines() if line.strip()]) <= 3, stderr


def assert_settled(neo: Neo) -> None:
    """After a fault: nothing of the sandbox runs, no GPU is held, no record is left open."""
    wait_for(lambda: neo.processes() == [], 30, "every pod process to be gone")
    status = neo.json("status")
    assert status == [], status
    clusters: Any = neo.json("clusters")
    assert clusters[0]["free_gpus"] == clusters[0]["total_gpus"], clusters
    runs: Any = neo.json("runs")
    assert all(r["state"] not in ("starting", "running") for r in runs), runs
