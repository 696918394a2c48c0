"""A stand-in for the jupyter-neo server extension, for browser tests of the sidebar only.

It answers the REST contract of ``docs/labextension.md`` from memory (two fake
clusters, reservations that turn ready after ``NEO_MOCK_READY_S`` seconds, one
finished run with logs) and emits ``change/v1`` events on the Jupyter event
bus, so the sidebar can be driven end to end before the real extension is
installed. It is never shipped: ``ui-tests/run.sh`` loads it only with
``NEO_MOCK=1``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import tornado
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

SCHEMA_ID = "https://events.jupyter-neo.dev/change/v1"
SCHEMA = {
    "$id": SCHEMA_ID,
    "version": "1",
    "title": "jupyter-neo change",
    "description": "A reservation or run changed state.",
    "type": "object",
    "required": ["kind", "id", "state"],
    "properties": {
        "kind": {"enum": ["reservation", "run"]},
        "id": {"type": "string"},
        "state": {"type": "string"},
    },
}

CLUSTERS = [
    {
        "name": "local",
        "backend": "local",
        "provider": "this machine",
        "region": "local",
        "residency": [],
        "gpu_type": "fake",
        "gpus_per_node": 1,
        "nodes": 4,
        "price_per_gpu_hour": 0.0,
    },
    {
        "name": "k8s-eu",
        "backend": "kubernetes",
        "provider": "example",
        "region": "eu-west",
        "residency": ["eu"],
        "gpu_type": "H100",
        "gpus_per_node": 8,
        "nodes": 2,
        "price_per_gpu_hour": 2.49,
    },
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t else None


def _duration(text: Any) -> float | None:
    if text is None or str(text).strip().lower() in ("", "none", "never", "0"):
        return None
    raw = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return float(raw)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", raw)
    if not parts or "".join(a + b for a, b in parts) != raw:
        raise ValueError(f"cannot read duration {text!r}; write it like 90s, 30m, 1h30m or 2d")
    return sum(float(a) * _UNITS[b] for a, b in parts)


class Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class State:
    def __init__(self, emit: Any, ready_after: float) -> None:
        self.emit = emit
        self.ready_after = ready_after
        self.reservations: dict[str, dict[str, Any]] = {}
        self.ids = itertools.count(1)
        started = _now() - timedelta(minutes=7)
        self.runs: dict[str, dict[str, Any]] = {
            "run-1": {
                "id": "run-1",
                "reservation": "r-old",
                "command": ["train.py", "--epochs", "1"],
                "kind": "script",
                "launcher": "torchrun",
                "state": "succeeded",
                "started": _iso(started),
                "ended": _iso(started + timedelta(minutes=5, seconds=3)),
                "exit_code": 0,
                "nodes": 2,
                "nproc_per_node": 1,
                "ranks": [
                    {"rank": 0, "node": 0, "local_rank": 0, "state": "succeeded", "exit_code": 0, "log": ""},
                    {"rank": 1, "node": 1, "local_rank": 0, "state": "succeeded", "exit_code": 0, "log": ""},
                ],
                "duration": 303.0,
                "owner": "mock",
                "error": None,
                "failed_node": None,
                "failed_rank": None,
                "note": None,
            }
        }

    def used(self, cluster: str) -> int:
        return sum(
            r["nodes"] * r["gpus_per_node"]
            for r in self.reservations.values()
            if r["cluster"] == cluster and r["state"] != "released"
        )

    def clusters(self) -> list[dict[str, Any]]:
        out = []
        for c in CLUSTERS:
            total = c["nodes"] * c["gpus_per_node"]
            out.append({**c, "total_gpus": total, "free_gpus": total - self.used(c["name"])})
        return out

    def view(self, r: dict[str, Any]) -> dict[str, Any]:
        hours = ((r.get("released_at") or _now()) - r["_created"]).total_seconds() / 3600
        out = {k: v for k, v in r.items() if not k.startswith("_") and k != "released_at"}
        out["released_at"] = _iso(r["released_at"]) if r.get("released_at") else None
        out["cost"] = round(hours * r["price_per_hour"], 4)
        out["budget_used"] = round(out["cost"] / r["budget"], 4) if r.get("budget") else None
        return out

    def reserve(self, body: dict[str, Any]) -> dict[str, Any]:
        gpus = body.get("gpus")
        if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 1:
            raise Error(400, "invalid_request", "gpus must be a whole number of at least 1")
        try:
            ttl = _duration(body.get("idle_ttl", "30m"))
        except ValueError as e:
            raise Error(400, "invalid_request", str(e)) from e
        for c in sorted(self.clusters(), key=lambda c: c["price_per_gpu_hour"]):
            if body.get("cluster") and body["cluster"] != c["name"]:
                continue
            if body.get("gpu_type") and body["gpu_type"] != c["gpu_type"]:
                continue
            if body.get("region") and body["region"] != c["region"]:
                continue
            if body.get("max_price") is not None and c["price_per_gpu_hour"] > body["max_price"]:
                continue
            nodes = body.get("nodes") or math.ceil(gpus / c["gpus_per_node"])
            if gpus % nodes or gpus // nodes > c["gpus_per_node"] or nodes > c["nodes"]:
                continue
            if c["free_gpus"] < gpus:
                continue
            break
        else:
            raise Error(409, "no_capacity", f"no cluster has {gpus} free GPUs matching this request")
        rid = f"r-{next(self.ids)}"
        created = _now()
        per_node = gpus // nodes
        r = {
            "id": rid,
            "name": body.get("name"),
            "cluster": c["name"],
            "backend": c["backend"],
            "state": "pending",
            "nodes": nodes,
            "gpus_per_node": per_node,
            "gpu_type": c["gpu_type"],
            "pods": [
                {"name": f"{rid}-{i}", "rank": i, "address": "", "state": "pending", "gpus": []}
                for i in range(nodes)
            ],
            "created": _iso(created),
            "ready_at": None,
            "released_at": None,
            "idle_ttl": ttl,
            "budget": body.get("budget"),
            "price_per_hour": round(gpus * c["price_per_gpu_hour"], 4),
            "owner": "mock",
            "reason": None,
            "deadline": None,
            "budget_warned": False,
            "_created": created,
        }
        self.reservations[rid] = r
        self.emit("reservation", rid, "pending")
        asyncio.get_running_loop().call_later(self.ready_after, self._ready, rid)
        return self.view(r)

    def _ready(self, rid: str) -> None:
        r = self.reservations.get(rid)
        if not r or r["state"] != "pending":
            return
        r["state"] = "ready"
        for i, pod in enumerate(r["pods"]):
            pod.update(
                state="ready",
                address=f"127.0.0.1:{7000 + i}",
                gpus=list(range(r["gpus_per_node"])),
                stats={
                    "gpus": [
                        {"index": g, "util": 35.0 + 20 * i + g, "mem_used": 2**33, "mem_total": 2**36}
                        for g in range(r["gpus_per_node"])
                    ],
                    "loadavg": [0.5, 0.4, 0.3],
                },
            )
        self.emit("reservation", rid, "ready")

    def get(self, rid: str) -> dict[str, Any]:
        if rid not in self.reservations:
            raise Error(404, "not_found", f"no reservation {rid}")
        return self.reservations[rid]

    def patch(self, rid: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.get(rid)
        if "idle_ttl" in body:
            try:
                ttl = _duration(body["idle_ttl"])
            except ValueError as e:
                raise Error(400, "invalid_request", str(e)) from e
            r["idle_ttl"] = ttl
        if "budget" in body:
            r["budget"] = body["budget"]
        return self.view(r)

    def release(self, rid: str) -> dict[str, Any]:
        r = self.get(rid)
        if r["state"] != "released":
            r["state"] = "released"
            r["released_at"] = _now()
            for pod in r["pods"]:
                pod["state"] = "released"
            self.emit("reservation", rid, "released")
        return self.view(r)


class Handler(APIHandler):
    @property
    def neo(self) -> State:
        return self.settings["neo_mock_state"]

    def reply(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.finish(json.dumps(body))

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError as e:
            raise Error(400, "invalid_json", "the request body is not JSON") from e
        if not isinstance(data, dict):
            raise Error(400, "invalid_json", "the request body must be a JSON object")
        return data

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, Error):
            self.set_status(exc.status)
            self.finish(json.dumps({"code": exc.code, "message": exc.message}))
        else:
            super().write_error(status_code, **kwargs)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        super().send_error(exc.status if isinstance(exc, Error) else status_code, **kwargs)


class ClustersHandler(Handler):
    @tornado.web.authenticated
    def get(self) -> None:
        self.reply(200, {"clusters": self.neo.clusters()})


class ReservationsHandler(Handler):
    @tornado.web.authenticated
    def get(self) -> None:
        self.reply(200, {"reservations": [self.neo.view(r) for r in self.neo.reservations.values()]})

    @tornado.web.authenticated
    def post(self) -> None:
        self.reply(201, self.neo.reserve(self.body()))


class ReservationHandler(Handler):
    @tornado.web.authenticated
    def get(self, rid: str) -> None:
        self.reply(200, self.neo.view(self.neo.get(rid)))

    @tornado.web.authenticated
    def patch(self, rid: str) -> None:
        self.reply(200, self.neo.patch(rid, self.body()))

    @tornado.web.authenticated
    def delete(self, rid: str) -> None:
        self.reply(200, self.neo.release(rid))


class RunsHandler(Handler):
    @tornado.web.authenticated
    def get(self) -> None:
        self.reply(200, {"runs": list(self.neo.runs.values())})


class RunHandler(Handler):
    @tornado.web.authenticated
    def get(self, run_id: str) -> None:
        if run_id not in self.neo.runs:
            raise Error(404, "not_found", f"no run {run_id}")
        self.reply(200, self.neo.runs[run_id])


class LogsHandler(Handler):
    @tornado.web.authenticated
    def get(self, run_id: str) -> None:
        if run_id not in self.neo.runs:
            raise Error(404, "not_found", f"no run {run_id}")
        rank = int(self.get_argument("rank", "0"))
        tail = int(self.get_argument("tail", "100"))
        lines = [f"[rank {rank}] step {i} loss {2.0 / (i + 1):.3f}" for i in range(50)]
        self.reply(200, {"rank": rank, "lines": lines[-tail:]})


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "neo_mock_server"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    import os

    logger = server_app.event_logger
    logger.register_event_schema(SCHEMA)

    def emit(kind: str, ident: str, state: str) -> None:
        logger.emit(schema_id=SCHEMA_ID, data={"kind": kind, "id": ident, "state": state})

    web_app = server_app.web_app
    web_app.settings["neo_mock_state"] = State(emit, float(os.environ.get("NEO_MOCK_READY_S", "1.5")))
    base = url_path_join(web_app.settings["base_url"], "jupyter-neo")
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "clusters"), ClustersHandler),
            (url_path_join(base, "reservations"), ReservationsHandler),
            (url_path_join(base, r"reservations/([^/]+)"), ReservationHandler),
            (url_path_join(base, "runs"), RunsHandler),
            (url_path_join(base, r"runs/([^/]+)"), RunHandler),
            (url_path_join(base, r"runs/([^/]+)/logs"), LogsHandler),
        ],
    )
    server_app.log.info("neo_mock_server: fake jupyter-neo REST API at %s", base)
