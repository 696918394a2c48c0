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
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from jupyter_neo.client import gang_request
from jupyter_neo.core import Core
from jupyter_neo.errors import InvalidRequest
from jupyter_neo.model import REQUEST_FIELDS
from jupyter_neo.runs.logs import tail_file

ChangeKind = Literal["reservation", "run"]
Emit = Callable[[ChangeKind, str, str], None]

RESERVE_FIELDS = REQUEST_FIELDS  # a POST body is a gang request, field for field
PLACEMENT_FIELDS = ("gpus", "nodes", "gpu_type", "cluster", "region", "residency", "max_price", "data")
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

    async def datasets(self) -> list[dict[str, Any]]:
        """Every dataset: size, residency, which clusters hold it and where it may be copied."""
        return self.core.datasets()

    # ------------------------------------------------------------------ reservations
    async def reservations(self, include_released: bool = False) -> list[dict[str, Any]]:
        rows = await (self.core.history() if include_released else self.core.status())
        rows = list(await asyncio.gather(*(self.core.with_stats(r) for r in rows)))
        return [r.public() for r in rows]

    async def reservation(self, ref: str) -> dict[str, Any]:
        return (await self.core.status_one(ref)).public()

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
        budget = body.get("budget", "keep")
        if budget not in ("keep", None) and (isinstance(budget, bool) or not isinstance(budget, int | float)):
            raise InvalidRequest(f"budget must be a number of USD (got {budget!r})")
        res = await self.core.extend(ref, idle_ttl=body.get("idle_ttl", "keep"), budget=budget)
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

    async def close(self) -> None:
        await self.core.close()
