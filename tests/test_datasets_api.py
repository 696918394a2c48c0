"""Datasets over REST: ``GET /datasets``, ``GET /placement?data=``, a reservation that carries its data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.conftest import Neo, use_config
from tests.test_datasets import estate_text

pytest_plugins = ("pytest_jupyter.jupyter_server",)


@pytest.fixture
def jp_server_config(neo: Neo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    use_config(neo, estate_text(tmp_path))
    monkeypatch.setenv("NEO_CONFIG", str(neo.config))
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_neo": True}, "allow_unauthenticated_access": False},
        "JupyterNeo": {"poll_interval": 0.2},
    }


@pytest.fixture
def api(jp_fetch: Any, jp_serverapp: Any, neo: Neo) -> Any:
    async def call(method: str, path: str, body: Any = None, **query: Any) -> tuple[int, Any]:
        kw: dict[str, Any] = {"method": method, "params": query}
        if body is not None:
            kw["body"] = json.dumps(body)
        try:
            resp = await jp_fetch("jupyter-neo", *path.split("/"), **kw)
        except HTTPClientError as exc:
            assert exc.response is not None
            return exc.code, json.loads(exc.response.body)
        return resp.code, json.loads(resp.body)

    yield call
    neo.run("release", "--all", check=True)


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
