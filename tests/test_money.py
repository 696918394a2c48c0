"""Cheapest compliant placement, failover, budgets and the ledger, on a local multi-cluster estate."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jupyter_neo import placement
from jupyter_neo.model import Cluster, GangRequest
from tests.conftest import Neo, use_config

ESTATE = (Path(__file__).resolve().parent.parent / "examples" / "estate.yaml").read_text()
PRICEY = """
clusters:
  - name: pricey
    nodes: 2
    gpus_per_node: 1
    price_per_gpu_hour: 3600   # $1 per GPU-second: budgets run out in seconds
"""


def cluster(
    name: str,
    price: float,
    region: str = "r",
    residency: tuple[str, ...] = (),
    gpu: str = "H100",
    nodes: int = 2,
    per: int = 8,
) -> Cluster:
    return Cluster(
        name=name,
        region=region,
        residency=list(residency),
        gpu_type=gpu,
        nodes=nodes,
        gpus_per_node=per,
        price_per_gpu_hour=price,
    )


ESTATE_MODEL = [
    cluster("a", 3.0, "us", ("us",)),
    cluster("b", 2.0, "eu", ("eu",)),
    cluster("c", 1.0, "eu", ("eu",), gpu="A100"),
    cluster("d", 5.0, "eu", ("eu", "de"), nodes=4),
]


@pytest.mark.parametrize(
    ("request_fields", "chosen", "rejected"),
    [
        ({"gpus": 8}, "c", {}),
        ({"gpus": 8, "gpu_type": "H100"}, "b", {"c": "GPU type"}),
        ({"gpus": 8, "residency": ["us"]}, "a", {"b": "residency", "c": "residency", "d": "residency"}),
        ({"gpus": 8, "residency": ["de"]}, "d", {"a": "residency"}),
        ({"gpus": 8, "max_price": 1.5}, "c", {"a": "above --max-price", "b": "above --max-price"}),
        ({"gpus": 24, "gpu_type": "H100"}, "d", {"a": "need 3 nodes", "b": "need 3 nodes"}),
        ({"gpus": 8, "region": "us"}, "a", {"b": "region eu"}),
    ],
)
def test_placement_picks_the_cheapest_compliant_cluster(
    request_fields: dict[str, Any], chosen: str, rejected: dict[str, str]
) -> None:
    cands = placement.evaluate(GangRequest(**request_fields), ESTATE_MODEL)
    assert cands[0].rejected is None and cands[0].cluster.name == chosen
    by_name = {c.cluster.name: c for c in cands}
    for name, why in rejected.items():
        assert by_name[name].rejected is not None and why in by_name[name].rejected


def test_no_residency_match_lists_clusters_and_regions() -> None:
    err = placement.no_fit_error(
        GangRequest(gpus=8, residency=["jp"]),
        placement.evaluate(GangRequest(gpus=8, residency=["jp"]), ESTATE_MODEL),
    )
    assert "no cluster satisfies residency ['jp']" in str(err) and "b (eu: ['eu'])" in str(err)


def test_price_cap_below_every_offer_names_the_cheapest() -> None:
    req = GangRequest(gpus=8, gpu_type="H100", max_price=0.5)
    err = placement.no_fit_error(req, placement.evaluate(req, ESTATE_MODEL))
    assert "below every offer" in str(err) and "b at $2.00/GPU-h" in str(err)


def test_failover_when_the_cheapest_cluster_is_full_and_explain(neo: Neo) -> None:
    use_config(neo, ESTATE)
    first: Any = neo.json("reserve", "--gpus", "16", "--gpu-type", "H100")
    assert first["cluster"] == "lambda-us" and first["price_per_hour"] == pytest.approx(16 * 2.49)
    explain: Any = neo.json("reserve", "--gpus", "16", "--gpu-type", "H100", "--explain")
    assert [c["cluster"] for c in explain][:2] == ["lambda-us", "nebius-fi"]
    assert explain[0]["free_gpus"] == 0
    second = neo.run("reserve", "--gpus", "16", "--gpu-type", "H100", "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["cluster"] == "nebius-fi"
    assert "lambda-us: no capacity, trying the next cluster" in second.stderr
    eu: Any = neo.json("reserve", "--gpus", "8", "--residency", "de")
    assert eu["cluster"] == "coreweave-de"
    neo.run("release", "--all", check=True)


def test_bad_money_input_is_refused(neo: Neo) -> None:
    use_config(neo, ESTATE)
    for args, message in [
        (["--budget", "0"], "--budget: input should be greater than 0"),
        (["--budget", "-5"], "--budget: input should be greater than 0"),
        (["--residency", "jp"], "no cluster satisfies residency ['jp']"),
        (["--max-price", "1.00"], "the cheapest is lambda-us at $2.49/GPU-h"),
        (["--budget", "1", "--idle-ttl", "30m"], "lasts 181s at $19.92/h"),
    ]:
        proc = neo.run("reserve", "--gpus", "8", *args)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
    assert neo.json("status") == []


def test_workspace_policy_file_requires_residency(neo: Neo, tmp_path: Path) -> None:
    use_config(neo, ESTATE)
    ws = tmp_path / "project"
    ws.mkdir()
    (ws / "neo.yaml").write_text("residency: [eu]\n")
    res = json.loads(
        neo.run("reserve", "--gpus", "8", "--gpu-type", "H100", "--json", cwd=ws, check=True).stdout
    )
    assert res["cluster"] == "nebius-fi", "lambda-us is cheaper but outside the EU"
    neo.run("release", "--all", check=True)


def age_reservation(neo: Neo, rid: str, seconds: float) -> None:
    """Clock injection: move a reservation's start back in the store (no sleeping for minutes)."""
    db = sqlite3.connect(neo.home / "state.sqlite")
    doc = json.loads(db.execute("SELECT doc FROM reservations WHERE id = ?", (rid,)).fetchone()[0])
    start = datetime.now(UTC) - timedelta(seconds=seconds)
    doc["created"] = start.isoformat()
    db.execute("UPDATE reservations SET doc = ? WHERE id = ?", (json.dumps(doc), rid))
    db.execute("UPDATE ledger SET start = ? WHERE reservation = ?", (start.timestamp(), rid))
    db.commit()
    db.close()


def test_budget_warns_at_80_percent_and_releases_at_the_cap(neo: Neo) -> None:
    use_config(neo, PRICEY)
    res: Any = neo.json("reserve", "--gpus", "1", "--budget", "100", "--idle-ttl", "60s")
    age_reservation(neo, res["id"], 85)
    status = neo.run("status")
    assert "has used 8" in status.stderr and "released at 100%" in status.stderr
    age_reservation(neo, res["id"], 101)
    after: Any = neo.json("status", res["id"])
    assert after["state"] == "released" and after["reason"] == "budget of $100.00 reached"
    assert neo.processes() == []
    cost: Any = neo.json("cost")
    assert cost["reservations"][0]["reservation"] == res["id"]
    assert cost["total"] == pytest.approx(101, rel=0.05), "the ledger survives the controller's restarts"


def test_pods_stop_themselves_at_the_budget_deadline_without_a_controller(neo: Neo) -> None:
    use_config(neo, PRICEY)
    res: Any = neo.json("reserve", "--gpus", "1", "--budget", "3", "--idle-ttl", "0")
    assert res["deadline"] is not None
    deadline = time.monotonic() + 15
    while neo.processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert neo.processes() == [], "agents enforce the budget deadline by themselves"
    after: Any = neo.json("status", res["id"])
    assert after["state"] == "released" and "budget of $3.00 reached" in after["reason"]


def test_user_cap_cuts_budgets_and_refuses_when_spent(neo: Neo) -> None:
    use_config(neo, PRICEY + "defaults:\n  user_budget: 500\n  idle_ttl: 60s\n")
    first: Any = neo.json("reserve", "--gpus", "1")
    assert first["budget"] == pytest.approx(500, rel=0.01), "the cap bounds a reservation with no budget"
    age_reservation(neo, first["id"], 501)
    neo.run("status")
    proc = neo.run("reserve", "--gpus", "1")
    assert proc.returncode == 1 and "spending cap of $500.00 per 30 days is used up" in proc.stderr
