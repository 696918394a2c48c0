"""Defect 1: a reservation name resolves to the live reservation, and a live name is unique,
enforced in the transaction that takes the capacity (real CLI processes racing)."""

from __future__ import annotations

from tests.conftest import Neo
from tests.faults.state_invariants import assert_consistent, assert_one_line_error, assert_released_and_clean


def test_a_reused_name_resolves_to_the_live_reservation(neo: Neo) -> None:
    old = neo.json("reserve", "--gpus", "8", "--name", "exp")
    assert isinstance(old, dict)
    neo.run("release", "exp", check=True)
    new = neo.json("reserve", "--gpus", "8", "--name", "exp")
    assert isinstance(new, dict) and new["id"] != old["id"]

    shown = neo.json("status", "exp")
    assert isinstance(shown, dict) and shown["id"] == new["id"] and shown["state"] == "ready"
    released = neo.json("release", "exp")
    assert isinstance(released, list) and released[0]["id"] == new["id"], "release exp hit the old id"
    history = {r["id"]: r["state"] for r in neo.json("status", "--all")}  # type: ignore[union-attr]
    assert history == {old["id"]: "released", new["id"]: "released"}
    assert_released_and_clean(neo, free=32)


def test_racing_reserves_of_one_name_admit_exactly_one(neo: Neo) -> None:
    racers = [neo.popen("reserve", "--gpus", "8", "--name", "dup", "--json") for _ in range(3)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in racers]  # type: ignore[union-attr]
    winners = [r for r in results if r[0] == 0]
    losers = [r for r in results if r[0] != 0]
    assert len(winners) == 1, results
    for code, out, err in losers:
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert code == 1 and out == "" and "Traceback" not in err, err
        assert lines and "a reservation named 'dup' is already active" in lines[0], err
    active = assert_consistent(neo)
    assert [r["name"] for r in active] == ["dup"], "the losers hold nothing"
    assert neo.json("clusters")[0]["free_gpus"] == 24  # type: ignore[index]
    neo.run("release", "dup", check=True)
    assert_released_and_clean(neo, free=32)


def test_a_name_shaped_like_an_id_is_refused(neo: Neo) -> None:
    res = neo.json("reserve", "--gpus", "8")
    assert isinstance(res, dict)
    proc = neo.run("reserve", "--gpus", "8", "--name", res["id"])
    assert_one_line_error(proc, "may not look like a reservation id")
    assert neo.json("status", res["id"])["gpus_per_node"] == 8  # type: ignore[index]
    neo.run("release", res["id"], check=True)
    assert_released_and_clean(neo, free=32)
