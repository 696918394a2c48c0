"""The model behind the REST API: each route is one verb of :mod:`jupyter_neo.controller.api`.

No Tornado here (the dask-labextension split): each method takes plain values, returns the same
JSON documents the CLI's ``--json`` prints, and raises :mod:`jupyter_neo.errors` types that the
handlers translate in one place.

Where the verbs run. By default in the resident controller of ``$NEO_HOME`` (started on demand,
the one the CLI and the kernels use), so a notebook, a terminal and the sidebar share warm agent
connections, watchers and run supervision: :func:`jupyter_neo.controller.remote.acall` on the
server's own loop, the connect in a thread, so the loop never waits. Change events come from the
controller's event stream (:func:`jupyter_neo.controller.remote.subscribe`), which reconnects
(starting a new controller) if the controller dies. With ``NEO_CONTROLLER=off`` (or when the
controller runs with another ``NEO_*`` environment) the same :class:`~jupyter_neo.controller.api.Api`
runs on an in-process :class:`~jupyter_neo.core.Core` on the server's loop and a
:class:`~jupyter_neo.controller.api.ChangeFeed` polled by the server makes the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from jupyter_neo.controller import remote
from jupyter_neo.controller.api import Api, ChangeFeed, ChangeKind
from jupyter_neo.controller.client import Unavailable

log = logging.getLogger("jupyter_neo.server")
Emit = Callable[[ChangeKind, str, str], None]


def _no_emit(kind: ChangeKind, ident: str, state: str) -> None:
    pass


class NeoManager:
    """Clusters, reservations and runs as JSON documents; emits a change event for every change."""

    def __init__(self, emit: Emit = _no_emit, in_process: bool | None = None) -> None:
        self._emit = emit
        self.in_process = not remote.enabled() if in_process is None else in_process
        self._api: Api | None = None
        self.feed: ChangeFeed | None = None
        self._last: dict[tuple[str, str], str] = {}
        self._subscription: asyncio.Task[None] | None = None
        self.controller_pid: int | None = None
        """The pid of the controller the event stream is connected to (None in-process)."""
        self.closed = False
        self._fell_back = False

    @property
    def api(self) -> Api:
        """The in-process verbs (``NEO_CONTROLLER=off``, or a controller that cannot serve us)."""
        if self._api is None:
            self._api = Api.in_process(self.changed)
            self.feed = ChangeFeed(self._api.core, self.changed)
        return self._api

    def changed(self, kind: ChangeKind | str, ident: str, state: str) -> None:
        """Emit one change, unless it is the state last announced for it (a change this server
        made is announced at once and again by the controller's stream)."""
        if self._last.get((kind, ident)) == state:
            return
        self._last[(kind, ident)] = state
        self._emit(kind, ident, state)  # type: ignore[arg-type]

    async def _call(self, verb: str, **params: Any) -> Any:
        if not self.in_process:
            try:
                return await remote.acall(verb, params)
            except Unavailable as exc:
                if not self._fell_back:
                    log.warning("jupyter-neo: %s: %s; running in the server instead", verb, exc)
                self._fell_back = True
        return await self.api.call(verb, params)

    async def _change(self, verb: str, kind: ChangeKind, **params: Any) -> dict[str, Any]:
        doc: dict[str, Any] = await self._call(verb, **params)
        self.changed(kind, doc["id"], doc["state"])
        return doc

    # ------------------------------------------------------------------ the routes' verbs
    async def clusters(self) -> list[dict[str, Any]]:
        return await self._call("clusters")  # type: ignore[no-any-return]

    async def placement(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._call("placement", query=query)  # type: ignore[no-any-return]

    async def preview(self, query: dict[str, Any]) -> dict[str, Any]:
        return await self._call("preview", query=query)  # type: ignore[no-any-return]

    async def datasets(self) -> list[dict[str, Any]]:
        return await self._call("datasets")  # type: ignore[no-any-return]

    async def reservations(self, include_released: bool = False) -> list[dict[str, Any]]:
        return await self._call("reservations", include_released=include_released)  # type: ignore[no-any-return]

    async def reservation(self, ref: str) -> dict[str, Any]:
        return await self._call("reservation", ref=ref)  # type: ignore[no-any-return]

    async def reserve(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._change("reserve", "reservation", body=body)

    async def extend(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._change("extend", "reservation", ref=ref, body=body)

    async def release(self, ref: str) -> dict[str, Any]:
        return await self._change("release", "reservation", ref=ref)

    async def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        return await self._call("runs", limit=limit)  # type: ignore[no-any-return]

    async def run(self, run_id: str) -> dict[str, Any]:
        return await self._call("get_run", run_id=run_id)  # type: ignore[no-any-return]

    async def stop_run(self, run_id: str) -> dict[str, Any]:
        return await self._change("stop_run", "run", run_id=run_id)

    async def logs(self, run_id: str, rank: int = 0, tail: int = 0) -> dict[str, Any]:
        return await self._call("logs", run_id=run_id, rank=rank, tail=tail)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ change events
    def watch(self, interval: float) -> None:
        """Start the controller's event stream (on the running loop); in-process, see :meth:`poll_changes`."""
        if self.in_process or self.closed:
            return
        self._subscription = asyncio.ensure_future(self._events(interval))

    async def _events(self, interval: float) -> None:
        """The controller's change stream; if the controller runs with another ``NEO_*``
        environment (started from a terminal configured otherwise), this server works in-process
        from then on and looks at the store itself."""
        await remote.subscribe(self.changed, interval, on_subscribed=self._subscribed)
        log.warning("jupyter-neo: the controller runs with another NEO_* environment; working in-process")
        self.in_process = True
        while not self.closed:
            await self.poll_changes()
            await asyncio.sleep(interval)

    def _subscribed(self, pid: int) -> None:
        if pid != self.controller_pid:
            log.info("jupyter-neo: change events from controller %d", pid)
        self.controller_pid = pid

    async def poll_changes(self) -> None:
        """In-process only: emit a change for whatever moved in the store since the last look
        (budget enforcement included: a ``budget_warning`` event at 80%, release at 100%)."""
        if self.closed:
            return
        _ = self.api  # builds the feed
        assert self.feed is not None
        await self.feed.poll()

    async def close(self) -> None:
        """Stop: the event stream closed (or the look in progress finished), connections closed."""
        self.closed = True
        if self._subscription is not None:
            self._subscription.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._subscription
        if self.feed is not None:
            await self.feed.close()
        if self._api is not None:
            await self._api.core.close()
