"""The model behind the REST API: the async :class:`Core` on the Jupyter server's own event loop.

No Tornado here (the dask-labextension split): each method takes plain values, returns the same
JSON documents the CLI's ``--json`` prints (``.public()``), and raises :mod:`jupyter_neo.errors`
types that the handlers translate in one place. Slow file and sqlite reads go through
``asyncio.to_thread`` so the server's loop never waits on a disk.

Long-lived duties. The server holds none of a reservation's life: every pod's agent enforces its
own idle TTL and deadline, and a run is supervised by the process that started it (a kernel, a
terminal). What the server adds is a cheap watcher (:meth:`NeoManager.poll_changes`, every
``JupyterNeo.poll_interval`` seconds) that reads the shared state store and emits a change event
for whatever another process did (a ``neo reserve`` in a terminal, a ``%neo run`` in a kernel), so
live UIs hear of every change, not only of those made through REST.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from jupyter_neo import money, placement
from jupyter_neo.client import gang_request
from jupyter_neo.core import Core
from jupyter_neo.errors import InvalidRequest, NeoError
from jupyter_neo.model import REQUEST_FIELDS
from jupyter_neo.runs.logs import tail_file

ChangeKind = Literal["reservation", "run"]
Emit = Callable[[ChangeKind, str, str], None]

RESERVE_FIELDS = REQUEST_FIELDS  # a POST body is a gang request, field for field
PLACEMENT_FIELDS = ("gpus", "nodes", "gpu_type", "cluster", "region", "residency", "max_price", "data")
PREVIEW_FIELDS = (*PLACEMENT_FIELDS, "idle_ttl", "budget", "name")
EXTEND_FIELDS = ("idle_ttl", "budget")


def _no_emit(kind: ChangeKind, ident: str, state: str) -> None:
    pass


def _check_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(unknown)}", f"allowed: {', '.join(allowed)}")


class NeoManager:
    """Clusters, reservations and runs as JSON documents; emits a change event for every change."""

    def __init__(self, core: Core, emit: Emit = _no_emit) -> None:
        self.core = core
        self._emit = emit
        self._seen: dict[tuple[ChangeKind, str], str] | None = None
        self._polls = 0
        self._poll_lock = asyncio.Lock()
        self.closed = False
        self._warming: set[asyncio.Future[None]] = set()

    def changed(self, kind: ChangeKind, ident: str, state: str) -> None:
        """Emit one change (and remember it, so the watcher does not announce it twice)."""
        if self._seen is not None:
            self._seen[(kind, ident)] = state
        self._emit(kind, ident, state)

    # ------------------------------------------------------------------ clusters and placement
    async def clusters(self) -> list[dict[str, Any]]:
        return [c.model_dump(mode="json") for c in await self.core.clusters()]

    async def placement(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Every candidate cluster for a request and why it fits or not (``neo reserve --explain``)."""
        _check_fields(query, PLACEMENT_FIELDS)
        if "gpus" not in query:
            raise InvalidRequest("gpus is required", "e.g. ?gpus=16")
        request = gang_request(self.core.config, **query)
        return [c.public() for c in await self.core.explain(request)]

    async def preview(self, query: dict[str, Any]) -> dict[str, Any]:
        """What ``POST reservations`` with this body would hold and cost, reserving nothing.

        The same placement as a reserve (the cheapest feasible cluster first); a request no cluster
        can take fails with the reserve's own message. ``name`` and ``budget`` are accepted (the
        form sends its whole body) and do not change the price.
        """
        _check_fields(query, PREVIEW_FIELDS)
        if "gpus" not in query:
            raise InvalidRequest("gpus is required", "e.g. ?gpus=16")
        fields = {k: v for k, v in query.items() if k not in ("name", "budget")}
        idle_ttl = fields.pop("idle_ttl", "default")
        request = gang_request(self.core.config, idle_ttl=idle_ttl, **fields)
        candidates = await self.core.explain(request)
        feasible = [c for c in candidates if c.rejected is None]
        if not feasible:
            raise placement.no_fit_error(request, candidates, self.core.config.defaults.residency)
        best = feasible[0]
        c = best.cluster
        return {
            "cluster": c.name,
            "nodes": best.nodes,
            "gpus_per_node": best.gpus_per_node,
            "gpu_type": c.gpu_type,
            "price_per_hour": best.price_per_hour,
            "idle_ttl": request.idle_ttl,
            "idle_cost": money.idle_cost(best.price_per_hour, request.idle_ttl),
            "free_gpus": best.free_gpus,
            "text": money.offer(
                c.name,
                nodes=best.nodes,
                gpus_per_node=best.gpus_per_node,
                gpu_type=c.gpu_type,
                price_per_hour=best.price_per_hour,
                idle_ttl=request.idle_ttl,
            ),
        }

    async def datasets(self) -> list[dict[str, Any]]:
        """Every dataset: size, residency, which clusters hold it and where it may be copied."""
        return self.core.datasets()

    # ------------------------------------------------------------------ reservations
    async def reservations(self, include_released: bool = False) -> list[dict[str, Any]]:
        rows = await (self.core.history() if include_released else self.core.status())
        rows = list(await asyncio.gather(*(self.core.with_stats(r) for r in rows)))
        return [r.public() for r in rows]

    async def reservation(self, ref: str) -> dict[str, Any]:
        """One reservation with its pods' live stats, as in the list (the sidebar fetches one
        after a change event and must not lose the idle-release countdown)."""
        return (await self.core.with_stats(await self.core.status_one(ref))).public()

    async def reserve(self, body: dict[str, Any]) -> dict[str, Any]:
        """Reserve a gang all-or-nothing; the body has the CLI's flags as fields (``idle_ttl: "30m"``)."""
        _check_fields(body, RESERVE_FIELDS)
        if "gpus" not in body:
            raise InvalidRequest("gpus is required", 'e.g. {"gpus": 16}')
        fields = dict(body)
        idle_ttl = fields.pop("idle_ttl", "default")
        request = gang_request(self.core.config, idle_ttl=idle_ttl, **fields)
        res = await self.core.reserve(request)
        self.changed("reservation", res.id, res.state.value)
        return res.public()

    async def extend(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """Change a live reservation's idle TTL and/or budget (``null`` means no limit)."""
        _check_fields(body, EXTEND_FIELDS)
        if not body:
            raise InvalidRequest("say what to change", 'e.g. {"idle_ttl": "2h"} or {"budget": 50}')
        # Core.extend validates both values (the money and duration layers), as for every surface.
        res = await self.core.extend(
            ref, idle_ttl=body.get("idle_ttl", "keep"), budget=body.get("budget", "keep")
        )
        self.changed("reservation", res.id, res.state.value)
        return res.public()

    async def release(self, ref: str) -> dict[str, Any]:
        res = await self.core.release(ref)
        self.changed("reservation", res.id, res.state.value)
        return res.public()

    # ------------------------------------------------------------------ runs
    async def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        if limit < 1:
            raise InvalidRequest(f"limit must be at least 1 (got {limit})")
        return [r.public() for r in await asyncio.to_thread(self.core.store.runs, limit)]

    async def run(self, run_id: str) -> dict[str, Any]:
        return (await asyncio.to_thread(self.core.store.run, run_id)).public()

    async def stop_run(self, run_id: str) -> dict[str, Any]:
        run = await self.core.stop_run(run_id)
        self.changed("run", run.id, run.state.value)
        return run.public()

    async def logs(self, run_id: str, rank: int = 0, tail: int = 0) -> dict[str, Any]:
        """A rank's output (``neo logs RUN --rank R --tail N``) as ``{"rank": R, "lines": [...]}``."""
        run = await asyncio.to_thread(self.core.store.run, run_id)
        if not any(r.rank == rank for r in run.ranks):
            raise InvalidRequest(f"run {run.id} has no rank {rank}", f"ranks are 0..{len(run.ranks) - 1}")
        if tail < 0:
            raise InvalidRequest(f"tail must be 0 (everything) or more (got {tail})")
        lines = await asyncio.to_thread(tail_file, Path(run.log_dir) / f"rank{rank}.log", tail)
        return {"rank": rank, "lines": lines}

    # ------------------------------------------------------------------ watcher
    def _snapshot(self) -> dict[tuple[ChangeKind, str], str]:
        snap: dict[tuple[ChangeKind, str], str] = {}
        for res in self.core.store.reservations():
            snap[("reservation", res.id)] = res.state.value
        for run in self.core.store.runs(200):
            snap[("run", run.id)] = run.state.value
        return snap

    async def poll_changes(self) -> None:
        """Emit a change for every reservation or run whose state moved since the last look.

        The server is the long-lived controller of a notebook user, so it also enforces budgets
        (a ``budget_warning`` event at 80%, release at 100%) and, every tenth look, reconciles with
        the backends so idle-TTL expiries show up without anyone running a command.
        """
        if self.closed or self._poll_lock.locked():
            return  # stopping, or the previous look is still running (a slow reconcile)
        async with self._poll_lock:
            await self._poll()

    async def _poll(self) -> None:
        self._polls += 1
        if self._polls % 10 == 0:
            await self.core.reconcile(force=True)
        for res, what in await self.core.enforce_budgets():
            if what == "warning":
                self._emit("reservation", res.id, "budget_warning")
        now = await asyncio.to_thread(self._snapshot)
        before, self._seen = self._seen, dict(now)
        if before is None:
            return
        for key, state in now.items():
            if before.get(key) != state:
                self._emit(key[0], key[1], state)
                if key[0] == "run" and state in ("starting", "running"):
                    self._warm(key[1])

    def _warm(self, run_id: str) -> None:
        """Open the connections to a new run's pods now, so a Stop click acts at once.

        A Stop from a browser (``DELETE runs/ID``) is a user waiting: without this, the server
        would first start an agent stream per pod (a process each on the local backend).
        """

        async def connect() -> None:
            with contextlib.suppress(NeoError, OSError, TimeoutError):
                run = await asyncio.to_thread(self.core.store.run, run_id)
                await self.core.connect(await asyncio.to_thread(self.core.store.reservation, run.reservation))

        task = asyncio.ensure_future(connect())
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def close(self) -> None:
        """Stop watching: wait for a look in progress, then close every agent connection."""
        self.closed = True
        for task in list(self._warming):
            task.cancel()
        async with self._poll_lock:
            await self.core.close()
