"""All-or-nothing capacity across processes: racing reserves never produce two half-gangs."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import NEO, Neo


def test_racing_reserves_yield_one_gang(neo: Neo) -> None:
    # 24 GPUs = 3 of the 4 local nodes: both cannot fit, exactly one must.
    procs = [
        subprocess.Popen(
            [*NEO, "reserve", "--gpus", "24", "--json"],
            env=neo.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    loser = next(r for r in results if r[0] == 1)
    assert "GPUs free" in loser[2] and "release a reservation" in loser[2]
    winner = json.loads(next(r for r in results if r[0] == 0)[1])
    assert winner["state"] == "ready" and winner["nodes"] == 3
    assert len(neo.processes()) == 3, "only the winner's pods exist"
    assert neo.json("clusters")[0]["free_gpus"] == 8  # type: ignore[index]
    neo.run("release", "--all", check=True)


def test_many_small_reserves_fill_exactly_the_capacity(neo: Neo) -> None:
    procs = [
        subprocess.Popen(
            [*NEO, "reserve", "--gpus", "8", "--json"],
            env=neo.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(5)
    ]
    codes = sorted(p.wait(timeout=120) for p in procs)
    assert codes == [0, 0, 0, 0, 1]
    status = neo.json("status")
    assert isinstance(status, list) and len(status) == 4
    nodes = {(r["pods"][0]["name"]) for r in status}
    assert len(nodes) == 4
    neo.run("release", "--all", check=True)
