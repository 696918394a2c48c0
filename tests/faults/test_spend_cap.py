"""Defects 5 and 6: the per-user spend cap holds across concurrent reservations and extensions
(one store transaction admits each), and a reservation is charged to the end its pods' agents
report, never to when a later reconcile noticed."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import Neo, use_config
from tests.faults.state_invariants import assert_consistent, assert_one_line_error, assert_released_and_clean

# $0.001 per GPU-second: costs stay far below the budgets while a test runs.
CAPPED = """
clusters:
  - {name: cheap, nodes: 4, gpus_per_node: 1, price_per_gpu_hour: 3.6}
defaults: {user_budget: 100, idle_ttl: 60s}
"""
# $1 per GPU-second: a budget runs out in seconds.
PRICEY = "clusters:\n  - {name: pricey, nodes: 2, gpus_per_node: 1, price_per_gpu_hour: 3600}\n"


def test_the_cap_counts_what_live_reservations_may_still_spend(neo: Neo) -> None:
    use_config(neo, CAPPED)
    first: Any = neo.json("reserve", "--gpus", "1", "--budget", "60")
    assert first["budget"] == pytest.approx(60)
    second: Any = neo.json("reserve", "--gpus", "1", "--budget", "60")
    assert second["budget"] <= 40.0 + 1e-6, "60 of the $100 cap is already committed to the first"
    assert_one_line_error(neo.run("reserve", "--gpus", "1", "--budget", "10"), "spending cap")
    assert len(assert_consistent(neo)) == 2, "the refused reserve holds nothing"
    neo.run("release", "--all", check=True)
    assert_released_and_clean(neo, free=4)


def test_extend_cannot_raise_a_budget_past_the_cap(neo: Neo) -> None:
    use_config(neo, CAPPED)
    first: Any = neo.json("reserve", "--gpus", "1", "--budget", "60")
    second: Any = neo.json("reserve", "--gpus", "1", "--budget", "30")
    assert_one_line_error(
        neo.run("extend", first["id"], "--budget", "500"), "would exceed your spending cap of $100.00"
    )
    assert neo.json("status", first["id"])["budget"] == pytest.approx(60)  # type: ignore[index]
    assert_one_line_error(neo.run("extend", second["id"], "--budget", "45"), "give at most $40.00")
    lowered: Any = neo.json("extend", first["id"], "--budget", "50")
    raised: Any = neo.json("extend", second["id"], "--budget", "50")
    assert lowered["budget"] == pytest.approx(50) and raised["budget"] == pytest.approx(50)
    client = neo.client()
    try:  # the pods enforce the deadline of the budget the store admitted
        res = client.status(second["id"])[0]
        infos = [client.run_async(c.call("info")) for c in client.run_async(client.core.connect(res))]
        assert {i["deadline"] for i in infos} == {datetime.fromisoformat(raised["deadline"]).timestamp()}
    finally:
        client.close()
    neo.run("release", "--all", check=True)
    assert_released_and_clean(neo, free=4)


def test_racing_reserves_together_stay_within_the_cap(neo: Neo) -> None:
    use_config(neo, CAPPED)
    racers = [neo.popen("reserve", "--gpus", "1", "--budget", "60", "--json") for _ in range(4)]
    budgets = []
    for proc in racers:
        out, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err
        if proc.returncode == 0:
            budgets.append(json.loads(out)["budget"])
        else:
            assert "spending cap" in err or "lasts" in err, err
    assert budgets and sum(budgets) <= 100 + 1e-6, budgets
    assert len(assert_consistent(neo)) == len(budgets)
    neo.run("release", "--all", check=True)
    assert_released_and_clean(neo, free=4)


def wait_gone(neo: Neo, timeout: float = 20) -> float:
    deadline = time.monotonic() + timeout
    while neo.processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert neo.processes() == [], "the agents stop by themselves"
    return time.time()


def test_cost_stops_at_the_budget_deadline_not_when_noticed(neo: Neo) -> None:
    use_config(neo, PRICEY)
    res: Any = neo.json("reserve", "--gpus", "1", "--budget", "3", "--idle-ttl", "none")
    wait_gone(neo)
    time.sleep(3)  # nobody looks for a while: the old code charged these seconds too
    after: Any = neo.json("status", res["id"])
    assert after["state"] == "released" and "budget of $3.00 reached" in after["reason"]
    assert after["cost"] <= 3.0 + 1e-6, after
    ledger: Any = neo.json("cost")
    assert ledger["total"] == pytest.approx(3.0, abs=0.01), ledger
    assert_released_and_clean(neo, free=2)


def test_cost_stops_when_the_agents_stopped_at_their_idle_ttl(neo: Neo) -> None:
    use_config(neo, PRICEY)
    res: Any = neo.json("reserve", "--gpus", "1", "--idle-ttl", "2s")
    gone = wait_gone(neo)
    time.sleep(4)
    after: Any = neo.json("status", res["id"])
    assert after["state"] == "released" and "idle for more than" in after["reason"]
    held = gone - datetime.fromisoformat(after["created"]).timestamp()
    assert after["cost"] <= held + 0.5, (after["cost"], held)
    assert neo.json("cost")["total"] <= held + 0.5  # type: ignore[index]
    assert_released_and_clean(neo, free=2)
