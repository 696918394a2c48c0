"""A pod whose agent ended (idle TTL, deadline, release) is never revived by a stream opened late.

The resident controller re-opens a warm stream that drops. When the drop is the pod ending by
itself, a re-open that lands before reconcile sees the end used to run the boot stub, which
started a fresh agent in the old directory: no lease, no reservation, an orphan on the node (seen
in CI on the SSH fleet as pods' processes outliving their reservation). The agent now records
why it stops before it closes its socket, and the stub refuses to start one where that record is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from jupyter_neo.backends.local import procs_under
from jupyter_neo.transport.bundle import stub_argv
from tests.conftest import Neo


def wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)


def test_a_stream_opened_after_an_idle_stop_starts_no_agent(neo: Neo) -> None:
    neo.write_config("clusters:\n  - name: local\n    nodes: 1\n    gpus_per_node: 1\n")
    res: Any = neo.json("reserve", "--gpus", "1", "--idle-ttl", "2s")
    (agent_dir,) = list(neo.home.glob(f"local/local/{res['id']}/node*/agent"))
    wait((agent_dir / "exit.json").exists, 30, "the idle agent to record its end")
    wait(lambda: not procs_under(neo.home), 30, "the idle agent to exit")

    # What a controller re-opening its dropped stream runs (the zip is already there).
    proc = subprocess.run(
        stub_argv(sys.executable, str(agent_dir)),  # the local backend's pods run this interpreter
        input=b"",
        check=False,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 5, (proc.returncode, proc.stdout, proc.stderr)
    assert b"READY" not in proc.stdout
    assert proc.stderr.decode().strip() == (
        "neo-agent: refusing to start an agent in a pod that ended (idle for more than 2.0s)"
    )
    assert not procs_under(neo.home), "an agent was started in the ended pod"
    assert json.loads((agent_dir / "exit.json").read_text())["reason"].startswith("idle")
    status: Any = neo.json("status", res["id"])
    assert status["state"] == "released" and "idle" in status["reason"], status
