"""The checks every state/validation fault test ends with (docs/reliability.md, "State, money, input").

After a fault: the error was one line (plus an optional hint line) and no traceback; no process of
the sandbox's pods is left in the process table; no capacity is held; ``neo status`` answers and
agrees with the process table.
"""

from __future__ import annotations

import subprocess

from tests.conftest import Neo


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A non-zero exit whose stderr is ``error: ...`` (and at most a ``  hint: ...`` line)."""
    assert proc.returncode != 0, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert lines and lines[0].startswith("error: "), proc.stderr
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("  hint: ")), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)
    return lines[0]


def assert_released_and_clean(neo: Neo, free: int) -> None:
    """Nothing of the sandbox runs, every GPU is free, and ``neo status`` says nothing is active."""
    assert neo.processes() == [], "processes of released reservations are left"
    clusters = neo.json("clusters")
    assert isinstance(clusters, list) and sum(c["free_gpus"] for c in clusters) == free, clusters
    active = neo.json("status")
    assert active == [], f"neo status still lists {active}"


def assert_consistent(neo: Neo) -> list[dict]:  # type: ignore[type-arg]
    """``neo status`` answers, and every ready reservation it lists has live pod processes."""
    active = neo.json("status")
    assert isinstance(active, list)
    procs = " ".join(neo.processes())
    for res in active:
        if res["state"] == "ready":
            assert res["id"] in procs, f"{res['id']} is ready without processes"
    return active
