"""The REST API under ``<base_url>/jupyter-neo/``: one route table, thin handlers, one error helper.

Each handler maps an HTTP verb onto one :class:`NeoManager` call and writes its JSON; errors are
``{code, message, hint}`` with the status the error type carries (:func:`error_reply`). Every
verb is ``@tornado.web.authenticated`` (a 403 without credentials, never a login redirect) and
``@authorized`` against the ``jupyter_neo`` resource. ``docs/rest-api.yaml`` documents
:data:`ROUTES`; a test keeps the two equal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from jupyter_neo.errors import InvalidRequest, NeoError
from jupyter_neo.server.manager import NeoManager

NAMESPACE = "jupyter-neo"
AUTH_RESOURCE = "jupyter_neo"
MANAGER_KEY = "jupyter_neo_manager"


def error_reply(exc: NeoError) -> tuple[int, dict[str, Any]]:
    """The one place where errors become HTTP: the error type's status and ``{code, message, hint}``."""
    return exc.http_status, {"code": exc.code, "message": exc.message, "hint": exc.hint}


class NeoHandler(APIHandler):
    """Shared by every route: the manager, JSON in and out, errors through :func:`error_reply`."""

    auth_resource = AUTH_RESOURCE

    @property
    def manager(self) -> NeoManager:
        return self.settings[MANAGER_KEY]  # type: ignore[no-any-return]

    def json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise InvalidRequest(f"the request body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        return body

    def int_arg(self, name: str, default: int) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise InvalidRequest(f"{name} must be a whole number (got {raw!r})") from None

    async def reply(self, work: Callable[[], Awaitable[Any]], status: int = 200) -> None:
        try:
            doc = await work()
        except NeoError as exc:
            status, doc = error_reply(exc)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(doc))


class ClustersHandler(NeoHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        async def work() -> dict[str, Any]:
            return {"clusters": await self.manager.clusters()}

        await self.reply(work)


class PlacementHandler(NeoHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        async def work() -> dict[str, Any]:
            lists = ("residency", "data")  # repeatable: ?data=imagenet&data=web
            query: dict[str, Any] = {
                k: v[-1].decode() for k, v in self.request.query_arguments.items() if k not in lists
            }
            for key in lists:
                values = self.get_query_arguments(key)
                if values:
                    query[key] = values
            query = {k: v for k, v in query.items() if k not in ("_xsrf", "token")}
            return {"candidates": await self.manager.placement(query)}

        await self.reply(work)


class DatasetsHandler(NeoHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        async def work() -> dict[str, Any]:
            return {"datasets": await self.manager.datasets()}

        await self.reply(work)


class ReservationsHandler(NeoHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        async def work() -> dict[str, Any]:
            everything = self.get_query_argument("all", "false").lower() in ("1", "true", "yes")
            return {"reservations": await self.manager.reservations(everything)}

        await self.reply(work)

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        await self.reply(lambda: self.manager.reserve(self.json_body()), status=201)


class ReservationHandler(NeoHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, rid: str) -> None:
        await self.reply(lambda: self.manager.reservation(rid))

    @tornado.web.authenticated
    @authorized
    async def patch(self, rid: str) -> None:
        await self.reply(lambda: self.manager.extend(rid, self.json_body()))

    @tornado.web.authenticated
    @authorized
    async def delete(self, rid: str) -> None:
        await self.reply(lambda: self.manager.release(rid))


class RunsHandler(NeoHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        async def work() -> dict[str, Any]:
            return {"runs": await self.manager.runs(self.int_arg("limit", 50))}

        await self.reply(work)


class RunHandler(NeoHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        await self.reply(lambda: self.manager.run(run_id))

    @tornado.web.authenticated
    @authorized
    async def delete(self, run_id: str) -> None:
        await self.reply(lambda: self.manager.stop_run(run_id))


class RunLogsHandler(NeoHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        await self.reply(lambda: self.manager.logs(run_id, self.int_arg("rank", 0), self.int_arg("tail", 0)))


ROUTES: list[tuple[str, type[NeoHandler]]] = [
    ("clusters", ClustersHandler),
    ("placement", PlacementHandler),
    ("datasets", DatasetsHandler),
    ("reservations", ReservationsHandler),
    ("reservations/{rid}", ReservationHandler),
    ("runs", RunsHandler),
    ("runs/{run_id}", RunHandler),
    ("runs/{run_id}/logs", RunLogsHandler),
]
"""Every route, in OpenAPI path-template form (``{name}`` is one path segment)."""


def route_regex(template: str) -> str:
    """``runs/{run_id}/logs`` -> ``runs/(?P<run_id>[^/]+)/logs``."""
    return re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)


def setup_handlers(web_app: Any, manager: NeoManager) -> None:
    web_app.settings[MANAGER_KEY] = manager
    base_url = web_app.settings["base_url"]
    web_app.add_handlers(
        ".*$",
        [(url_path_join(base_url, NAMESPACE, route_regex(t)) + "$", handler) for t, handler in ROUTES],
    )
