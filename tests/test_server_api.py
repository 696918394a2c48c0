"""The REST API and change events of the server extension, through pytest-jupyter's ``jp_fetch``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from tornado.httpclient import HTTPClientError

from jupyter_neo.server import EVENT_SCHEMA_ID
from jupyter_neo.server.handlers import ROUTES
from tests.conftest import Neo, use_config

pytest_plugins = ("pytest_jupyter.jupyter_server",)
ROOT = Path(__file__).resolve().parent.parent
SMALL = "clusters:\n  - {name: small, nodes: 2, gpus_per_node: 2, price_per_gpu_hour: 1.5}\n"


@pytest.fixture
def jp_server_config(neo: Neo, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The extension on a 2 x 2 cluster in the test's NEO_HOME, owned by 'alice', every route authenticated."""
    use_config(neo, SMALL)  # the CLI subprocesses of the teardown see the same clusters
    monkeypatch.setenv("NEO_CONFIG", str(neo.config))
    monkeypatch.setenv("NEO_OWNER", "alice")
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_neo": True}, "allow_unauthenticated_access": False},
        "JupyterNeo": {"poll_interval": 0.2},
    }


@pytest.fixture
def api(jp_fetch: Any, jp_serverapp: Any, neo: Neo) -> Any:
    """``await api(method, path, body=None, **query)`` -> (status, JSON); releases everything after."""

    async def call(method: str, path: str, body: Any = None, **query: Any) -> tuple[int, Any]:
        kw: dict[str, Any] = {"method": method, "params": query}
        if body is not None:
            kw["body"] = body if isinstance(body, str) else json.dumps(body)
        elif method in ("POST", "PATCH"):
            kw["body"] = "{}"
        try:
            resp = await jp_fetch("jupyter-neo", *path.split("/"), **kw)
        except HTTPClientError as exc:
            assert exc.response is not None
            return exc.code, json.loads(exc.response.body)
        return resp.code, json.loads(resp.body)

    yield call
    neo.run("release", "--all", check=True)


def events_of(jp_serverapp: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    async def listener(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        seen.append(data)

    jp_serverapp.event_logger.add_listener(schema_id=EVENT_SCHEMA_ID, listener=listener)
    return seen


async def wait_for(pred: Any, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_every_route_with_cli_shapes_and_events(api: Any, jp_serverapp: Any, neo: Neo) -> None:
    events = events_of(jp_serverapp)

    code, doc = await api("GET", "clusters")
    assert code == 200 and [c["name"] for c in doc["clusters"]] == ["small"]
    assert doc["clusters"][0]["free_gpus"] == 4
    code, doc = await api("GET", "placement", gpus="4", nodes="2")
    assert code == 200 and doc["candidates"][0] == {
        "cluster": "small",
        "nodes": 2,
        "gpus_per_node": 2,
        "price_per_hour": 6.0,
        "free_gpus": 4,
        "rejected": None,
        "data": [],
        "copy_cost": 0,
        "copy_seconds": 0,
        "estimate": 48.0,  # $6/h over the default 8h horizon (no datasets: no copy)
    }

    code, res = await api("POST", "reservations", {"gpus": 4, "nodes": 2, "idle_ttl": "30m", "name": "web"})
    assert code == 201 and res["state"] == "ready" and res["idle_ttl"] == 1800
    assert res["owner"] == "alice", "the owner comes from configuration, never the token's user"
    assert {"kind": "reservation", "id": res["id"], "state": "ready"} in events
    assert res == json.loads(neo.run("status", res["id"], "--json", check=True).stdout) | {
        "cost": res["cost"]
    }

    code, over = await api("POST", "reservations", {"gpus": 2})
    assert code == 409 and over["code"] == "no_capacity" and "small" in over["message"]

    code, doc = await api("GET", "reservations")
    assert code == 200 and [r["id"] for r in doc["reservations"]] == [res["id"]]
    code, one = await api("GET", f"reservations/{res['id']}")
    assert code == 200 and one["name"] == "web"
    code, one = await api("PATCH", "reservations/web", {"idle_ttl": "2h", "budget": 25})
    assert code == 200 and one["idle_ttl"] == 7200 and one["budget"] == 25
    cli = json.loads(neo.run("status", "web", "--json", check=True).stdout)
    assert cli["idle_ttl"] == 7200, "the stored reservation changed"
    client = neo.client()
    try:
        pods = client.run_async(client.core.connect(client.status("web")[0]))
        leases = [client.run_async(c.call("info"))["idle_ttl"] for c in pods]
        assert leases == [7200, 7200], "every pod's agent enforces the new lease"

        # A run made outside the server (a kernel, a terminal) shows up in /runs and as an event.
        run = await asyncio.to_thread(
            client.run, "sh -c 'echo hello from $NEO_NODE_RANK'", kind="cmd", gpus=4
        )
    finally:
        client.close()
    assert run.exit_code == 0
    await wait_for(lambda: {"kind": "run", "id": run.id, "state": "succeeded"} in events)

    code, doc = await api("GET", "runs")
    assert (
        code == 200
        and doc["runs"][0]["id"] == run.id
        and doc["runs"][0] == run.public() | {"duration": doc["runs"][0]["duration"]}
    )
    code, one = await api("GET", f"runs/{run.id}")
    assert code == 200 and one["state"] == "succeeded"
    code, logs = await api("GET", f"runs/{run.id}/logs", rank="1", tail="5")
    assert code == 200 and logs == {"rank": 1, "lines": ["hello from 1"]}
    code, one = await api("DELETE", f"runs/{run.id}")
    assert code == 200 and one["state"] == "succeeded", "stopping a finished run changes nothing"

    code, gone = await api("DELETE", "reservations/web")
    assert code == 200 and gone["state"] == "released"
    assert {"kind": "reservation", "id": res["id"], "state": "released"} in events
    code, doc = await api("GET", "reservations", all="true")
    assert [r["state"] for r in doc["reservations"]] == ["released"]
    code, doc = await api("PATCH", "reservations/web", {"idle_ttl": "1h"})
    assert code == 409 and doc["code"] == "conflict"


BAD_INPUT = [
    ("POST", "reservations", {"gpus": "many"}, {}, 400, "--gpus"),
    ("POST", "reservations", {"gpus": 2, "colour": "red"}, {}, 400, "unknown field(s) colour"),
    ("POST", "reservations", "not json", {}, 400, "not JSON"),
    ("POST", "reservations", [1], {}, 400, "JSON object"),
    ("POST", "reservations", {"nodes": 2}, {}, 400, "gpus is required"),
    ("POST", "reservations", {"gpus": 64}, {}, 400, "64 GPUs need 32 nodes"),
    ("POST", "reservations", {"gpus": 2, "idle_ttl": "soon"}, {}, 400, "cannot read duration"),
    ("GET", "placement", None, {}, 400, "gpus is required"),
    ("GET", "runs", None, {"limit": "x"}, 400, "limit must be a whole number"),
    ("GET", "reservations/nope", None, {}, 404, "no reservation 'nope'"),
    ("PATCH", "reservations/nope", {"budget": 5}, {}, 404, "no reservation"),
    ("PATCH", "reservations/nope", {"owner": "x"}, {}, 400, "unknown field"),
    ("DELETE", "reservations/nope", None, {}, 404, "no reservation"),
    ("GET", "runs/nope", None, {}, 404, "nope"),
    ("DELETE", "runs/nope", None, {}, 404, "nope"),
    ("GET", "runs/nope/logs", None, {"rank": "0"}, 404, "nope"),
]


async def test_bad_input_is_json_with_a_fitting_status(api: Any) -> None:
    for method, path, body, query, status, words in BAD_INPUT:
        code, doc = await api(method, path, body, **query)
        assert (code, set(doc)) == (status, {"code", "message", "hint"}), (method, path, doc)
        assert words in doc["message"], (method, path, doc)


def route_calls() -> list[tuple[str, str]]:
    calls = []
    for template, handler in ROUTES:
        path = template.replace("{rid}", "r-x").replace("{run_id}", "run-x")
        for method in ("get", "post", "patch", "delete", "put"):
            if method in vars(handler):
                calls.append((method.upper(), path))
    return calls


async def test_no_route_answers_without_credentials(jp_fetch: Any) -> None:
    calls = route_calls()
    assert len(calls) == 12  # every (verb, route) of ROUTES, GET datasets included
    for method, path in calls:
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch(
                "jupyter-neo",
                *path.split("/"),
                method=method,
                headers={"Authorization": ""},
                body="{}" if method in ("POST", "PATCH", "PUT") else None,
                allow_nonstandard_methods=True,
            )
        assert info.value.code == 403, (method, path)


def test_every_handler_is_authenticated_as_the_template_checks() -> None:
    """The extension template's check_auth.py: loading the extension raises no JupyterServerAuthWarning."""
    script = textwrap.dedent(
        """
        import warnings
        from jupyter_server.serverapp import ServerApp
        from jupyter_server.utils import JupyterServerAuthWarning
        caught = []
        with warnings.catch_warnings(record=True) as ws:
            warnings.simplefilter("always", JupyterServerAuthWarning)
            app = ServerApp(allow_unauthenticated_access=False, jpserver_extensions={"jupyter_neo": True},
                            reraise_server_extension_failures=True)
            app.initialize(argv=[], find_extensions=False, new_httpserver=False)
        ours = [str(w.message) for w in ws if issubclass(w.category, JupyterServerAuthWarning)
                and "jupyter-neo" in str(w.message)]
        assert "jupyter_neo" in app.extension_manager.extensions, "extension not loaded"
        assert not ours, ours
        print("All endpoints of the extension require authentication.")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_openapi_document_matches_the_route_table() -> None:
    spec = yaml.safe_load((ROOT / "docs" / "rest-api.yaml").read_text())
    assert spec["openapi"].startswith("3.1")
    documented = {
        (path.lstrip("/"), method)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    served = {
        (template, method)
        for template, handler in ROUTES
        for method in ("get", "post", "put", "patch", "delete")
        if method in vars(handler)
    }
    assert documented - served == set(), "documented but not served"
    assert served - documented == set(), "served but not documented"


async def test_server_warns_at_80_percent_of_a_budget_and_releases_at_100(
    api: Any, jp_serverapp: Any, neo: Neo
) -> None:
    from tests.test_money import age_reservation

    events = events_of(jp_serverapp)
    code, res = await api("POST", "reservations", {"gpus": 2, "budget": 100, "idle_ttl": "none"})
    assert code == 201 and res["deadline"] is not None
    # $3/h for 2 GPUs: $100 lasts 33h20m. Clock injection: pretend 28h have passed (84%).
    await asyncio.to_thread(age_reservation, neo, res["id"], 28 * 3600)
    await wait_for(lambda: {"kind": "reservation", "id": res["id"], "state": "budget_warning"} in events)
    await asyncio.to_thread(age_reservation, neo, res["id"], 34 * 3600)
    await wait_for(lambda: {"kind": "reservation", "id": res["id"], "state": "released"} in events)
    code, doc = await api("GET", f"reservations/{res['id']}")
    assert doc["state"] == "released" and doc["reason"] == "budget of $100.00 reached"
    assert neo.processes() == []


async def test_reservation_list_carries_live_pod_stats(api: Any) -> None:
    code, _ = await api("POST", "reservations", {"gpus": 2, "nodes": 2})
    assert code == 201
    code, doc = await api("GET", "reservations")
    pods = doc["reservations"][0]["pods"]
    for pod in pods:
        stats = pod["stats"]
        assert stats["cpus"] >= 1 and len(stats["loadavg"]) == 3
        # Local pods have virtual GPUs: their slots, with no utilisation figure (nvidia-smi absent).
        assert [g["index"] for g in stats["gpus"]] == pod["gpus"]
