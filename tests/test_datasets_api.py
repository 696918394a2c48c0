"""Datasets over REST: ``GET /datasets``, ``GET /placement?data=``, a reservation that carries its data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Neo, use_config
from tests.test_datasets import estate_text
from tests.test_server_api import api

__all__ = ["api"]  # the REST fixture, imported for pytest; this module's jp_server_config applies

pytest_plugins = ("pytest_jupyter.jupyter_server",)


@pytest.fixture
def jp_server_config(  # the estate of test_datasets.py instead of test_server_api's one cluster
    neo: Neo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    use_config(neo, estate_text(tmp_path))
    monkeypatch.setenv("NEO_CONFIG", str(neo.config))
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_neo": True}, "allow_unauthenticated_access": False},
        "JupyterNeo": {"poll_interval": 0.2},
    }


async def test_datasets_placement_and_reservation_over_rest(api: Any, neo: Neo) -> None:
    code, doc = await api("GET", "datasets")
    assert code == 200
    assert [d["name"] for d in doc["datasets"]] == ["clinical", "corpus"]
    assert doc["datasets"] == neo.json("datasets"), "REST and the CLI show the same documents"

    code, doc = await api("GET", "placement", gpus=4, data="clinical")
    assert code == 200
    verdicts = {c["cluster"]: c for c in doc["candidates"]}
    assert doc["candidates"][0]["cluster"] == "fi" and verdicts["fi"]["data"][0]["present"] is True
    assert verdicts["us"]["rejected"] == "dataset clinical may not leave residency ['eu']; us is ['us']"

    code, err = await api("POST", "reservations", {"gpus": 4, "data": ["imagenet"]})
    assert code == 400 and err["message"] == "unknown dataset 'imagenet'"
    assert err["hint"] == "configured datasets: clinical, corpus"

    code, res = await api("POST", "reservations", {"gpus": 4, "nodes": 2, "data": ["clinical"]})
    assert code == 201 and res["cluster"] == "fi"
    assert res["datasets"][0]["name"] == "clinical" and res["datasets"][0]["read_only"] is True
    code, again = await api("GET", f"reservations/{res['id']}")
    assert again["datasets"] == res["datasets"]
