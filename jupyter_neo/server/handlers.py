"""The REST API under ``<base_url>/jupyter-neo/``: one route table, thin handlers, one error helper.

Each handler maps an HTTP verb onto one :class:`NeoManager` call and writes its JSON; errors are
``{code, message, hint}`` with the status the error type carries (:func:`error_reply`). Every
verb is ``@tornado.web.authenticated`` (a 403 without credentials, never a login redirect) and
``@authorized`` against the ``jupyter_neo`` resource. ``docs/rest-api.yaml`` documents
:data:`ROUTES`; a test keeps the two equal.

Nothing unexpected escapes as an HTML page or a traceback: :meth:`NeoHandler.reply` turns any
other exception into a 500 ``{code: "internal", ...}`` whose traceback goes to
``$NEO_HOME/logs/errors.log``, and :meth:`NeoHandler.write_error` does the same for whatever fails
outside ``reply`` (Tornado's own 4xx/5xx).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler

from jupyter_neo.errors import InvalidRequest, NeoError
from jupyter_neo.model import parse_limit
from jupyter_neo.server.manager import NeoManager

NAMESPACE = "jupyter-neo"
AUTH_RESOURCE = "jupyter_neo"
MANAGER_KEY = "jupyter_neo_manager"


def error_reply(exc: BaseException, where: str = "REST") -> tuple[int, dict[str, Any]]:
    """The one place where errors become HTTP: the error type's status and ``{code, message, hint}``.

    Anything that is not a :class:`NeoError` is a bug: a 500 with one line, the traceback logged.
    """
    if isinstance(exc, NeoError):
        return exc.http_status, {"code": exc.code, "message": exc.message, "hint": exc.hint}
    from jupyter_neo.errorlog import report

    return 500, {"code": "internal", "message": report(exc, where), "hint": None}


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
        except RecursionError:
            raise InvalidRequest("the request body is nested too deeply", "send a flat JSON object") from None
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        return body

    def request_query(self) -> dict[str, Any]:
        """A gang request from the query string: ``residency`` and ``data`` repeat
        (``?data=imagenet&data=web``); the token, the XSRF field and the bare timestamp that
        JupyterLab's ServerConnection adds to GETs against caches are not fields."""
        lists = ("residency", "data")
        query: dict[str, Any] = {
            k: v[-1].decode()
            for k, v in self.request.query_arguments.items()
            if k not in (*lists, "_xsrf", "token") and not k.isdigit()
        }
        for key in lists:
            values = self.get_query_arguments(key)
            if values:
                query[key] = values
        return query

    def int_arg(self, name: str, default: int) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise InvalidRequest(f"{name} must be a whole number (got {raw!r})") from None

    def limit_arg(self, name: str, default: int) -> int:
        raw = self.get_query_argument(name, None)
        return default if raw is None or raw == "" else parse_limit(raw, name)

    async def reply(self, work: Callable[[], Awaitable[Any]], status: int = 200) -> None:
        try:
            doc = await work()
        except Exception as exc:  # NeoError as itself; anything else as a logged 500
            status, doc = error_reply(exc, f"{self.request.method} {self.request.path}")
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(doc))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors raised outside :meth:`reply` (auth, Tornado): the same JSON shape, no traceback."""
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        if exc is not None and not isinstance(exc, tornado.web.HTTPError):
            status_code, doc = error_reply(exc, f"{self.request.method} {self.request.path}")
        else:
            message = (getattr(exc, "log_message", None) or self._reason) if exc is not None else self._reason
            doc = {"code": "http", "message": str(message), "hint": None}
        self.set_status(status_code)
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
            return {"candidates": await self.manager.placement(self.request_query())}

        await self.reply(work)


class PreviewHandler(NeoHandler):
    """``GET placement/preview``: the price of a gang request before reserving it."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        async def work() -> dict[str, Any]:
            return await self.manager.preview(self.request_query())

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
            return {"runs": await self.manager.runs(self.limit_arg("limit", 50))}

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
    ("placement/preview", PreviewHandler),
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
