"""Defect 12 over REST: every malformed body or query that used to be a 500 is a 400 JSON error,
holds nothing and changes nothing; an unexpected exception in a handler is a one-line JSON 500
whose traceback goes to ``$NEO_HOME/logs/errors.log``."""

# ruff: noqa: F811  (pytest fixtures imported from tests.test_server_api are parameters here)
from __future__ import annotations

import json
from typing import Any

import pytest

from jupyter_neo.server.manager import NeoManager
from tests.conftest import Neo
from tests.test_server_api import api, jp_server_config  # noqa: F401 (fixtures)

pytest_plugins = ("pytest_jupyter.jupyter_server",)

DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000

POST = [
    ({"gpus": 2, "idle_ttl": {}}, "duration must be a string"),
    ({"gpus": 2, "idle_ttl": []}, "duration must be a string"),
    ({"gpus": 2, "idle_ttl": True}, "duration must be a string"),
    ({"gpus": 2, "idle_ttl": "inf"}, "not a finite time"),
    ({"gpus": 2, "idle_ttl": 1e300}, "longer than 10 years"),
    ('{"gpus": 2, "budget": 1e15}', "less than or equal to 1000000000"),
    ('{"gpus": 2, "budget": Infinity}', "finite number"),
    ('{"gpus": 2, "budget": NaN}', "finite number"),
    ('{"gpus": 2, "max_price": -Infinity}', "finite number"),
    ({"gpus": True}, "whole number, not true/false"),
    ({"gpus": 2, "nodes": True}, "whole number, not true/false"),
    ({"gpus": 1e20}, "--gpus: "),
    ({"gpus": 2, "budget": True}, "not true/false"),
    (DEEP, "nested too deeply"),
    (DEEP_OBJECT, "nested too deeply"),
]


async def free_gpus(api: Any) -> int:
    code, doc = await api("GET", "clusters")
    assert code == 200
    return int(doc["clusters"][0]["free_gpus"])


async def test_malformed_reserve_bodies_are_400_and_hold_nothing(api: Any, neo: Neo) -> None:
    # One server for every case (a server start per case would cost CI minutes).
    for body, words in POST:
        code, doc = await api("POST", "reservations", body)
        assert (code, doc["code"]) == (400, "bad_request"), (str(body)[:60], doc)
        assert words in doc["message"], (str(body)[:60], doc)
        assert await free_gpus(api) == 4, str(body)[:60]
        assert neo.processes() == [], str(body)[:60]
        assert (await api("GET", "reservations"))[1]["reservations"] == [], str(body)[:60]


PATCH = [
    ('{"budget": NaN}', "finite number"),
    ('{"budget": Infinity}', "finite number"),
    ('{"budget": 1e15}', "less than or equal to 1000000000"),
    ({"budget": True}, "not true/false"),
    ({"budget": "lots"}, "budget"),
    ({"idle_ttl": {}}, "duration must be a string"),
    ({"idle_ttl": "inf"}, "not a finite time"),
    (DEEP, "nested too deeply"),
]


async def test_malformed_extend_bodies_are_400_and_change_nothing(api: Any, neo: Neo) -> None:
    code, res = await api("POST", "reservations", {"gpus": 2, "idle_ttl": "30m", "budget": 10})
    assert code == 201
    for body, words in PATCH:
        code, doc = await api("PATCH", f"reservations/{res['id']}", body)
        assert (code, doc["code"]) == (400, "bad_request") and words in doc["message"], (body, doc)
        code, now = await api("GET", f"reservations/{res['id']}")
        assert (now["idle_ttl"], now["budget"], now["deadline"]) == (1800, 10, res["deadline"]), body
    assert await free_gpus(api) == 2
    code, doc = await api("DELETE", f"reservations/{res['id']}")
    assert code == 200 and doc["state"] == "released"
    assert await free_gpus(api) == 4 and neo.processes() == []


async def test_runs_limit_out_of_range_is_400(api: Any) -> None:
    for limit in ["1e20", "100000000000000000000", "0", "-1", "true"]:
        code, doc = await api("GET", "runs", limit=limit)
        assert code == 400 and "limit must be a whole number from 1 to 100,000" in doc["message"], doc


async def test_an_unexpected_exception_is_a_one_line_json_500_and_a_logged_traceback(
    api: Any, neo: Neo, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: NeoManager) -> list[dict[str, Any]]:
        raise ZeroDivisionError("injected-bug")

    monkeypatch.setattr(NeoManager, "clusters", broken)
    code, doc = await api("GET", "clusters")
    assert code == 500 and doc["code"] == "internal", doc
    assert "\n" not in doc["message"] and "Traceback" not in json.dumps(doc)
    assert "ZeroDivisionError: injected-bug" in doc["message"]
    log = neo.home / "logs" / "errors.log"
    assert str(log) in doc["message"]
    assert "Traceback" in log.read_text() and "GET /" in log.read_text()
