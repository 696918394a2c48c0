"""The verbs every surface calls, computed on a :class:`~jupyter_neo.core.Core`: one module for all.

The REST handlers, the ``%neo`` magics and the controller's ``call`` request (docs/protocol.md)
all end here, so a document is computed in exactly one place: the controller runs
:meth:`Api.call` for its clients, and a surface with ``NEO_CONTROLLER=off`` runs the same method
on an in-process core. Each verb takes JSON params and returns a JSON document (the CLI's
``--json`` shapes, ``.public()``); long verbs (``run``, ``sync``) report as they go through
``emit`` (event dicts, see :data:`EVENTS`). Errors are :mod:`jupyter_neo.errors` types, which the
controller sends as typed error frames so the caller raises the same type.

:class:`ChangeFeed` is the change watcher a Jupyter server used to run itself: it turns what
happened in the state store (a ``neo reserve`` in a terminal, a ``%neo run`` in a kernel, a
budget warning set by whoever enforced it) into ``{kind, id, state}`` change events. The
controller polls it for its subscribers; an in-process server polls it on its own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from jupyter_neo import money, placement
from jupyter_neo.core import Core
from jupyter_neo.errors import InvalidRequest, NeoError
from jupyter_neo.model import REQUEST_FIELDS, Run
from jupyter_neo.runs.logs import tail_file

ChangeKind = Literal["reservation", "run"]
Changed = Callable[[ChangeKind, str, str], None]
Emit = Callable[[dict[str, Any]], None]

RESERVE_FIELDS = REQUEST_FIELDS  # a POST body is a gang request, field for field
PLACEMENT_FIELDS = ("gpus", "nodes", "gpu_type", "cluster", "region", "residency", "max_price", "data")
PREVIEW_FIELDS = (*PLACEMENT_FIELDS, "idle_ttl", "budget", "name")
EXTEND_FIELDS = ("idle_ttl", "budget")
RUN_FIELDS = (
    "target",
    "args",
    "kind",
    "reservation",
    "gpus",
    "nproc_per_node",
    "env",
    "timeout",
    "workspace",
    "hot",
    "sync",
    "detach",
    "label",
    "command",
    *REQUEST_FIELDS,
)
EVENTS = ("progress", "line", "update", "notice", "transfer")
"""What ``run`` and ``sync`` emit: ``{"event": name, ...}`` (docs/protocol.md, "Calls")."""


def _no_change(kind: ChangeKind, ident: str, state: str) -> None:
    pass


def _check_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(unknown)}", f"allowed: {', '.join(allowed)}")


def run_from(doc: dict[str, Any]) -> Run:
    """A :class:`Run` from its public document (computed fields such as ``duration`` dropped)."""
    return Run.model_validate({k: v for k, v in doc.items() if k in Run.model_fields})


class Api:
    """Clusters, reservations, runs and syncs as JSON documents; reports every change it makes."""

    def __init__(self, core: Core, changed: Changed = _no_change) -> None:
        self.core = core
        self.changed = changed

    @classmethod
    def in_process(cls, changed: Changed = _no_change) -> Api:
        """The verbs on a core of the calling process, for a surface that cannot use the controller
        (``NEO_CONTROLLER=off``, a controller with another environment): surfaces never build a
        core themselves (tests/test_layers.py)."""
        from jupyter_neo.config import load_config

        return cls(Core(load_config()), changed)

    async def call(self, verb: str, params: dict[str, Any], emit: Emit | None = None) -> Any:
        """Run one verb; the one place where a verb name becomes a core call."""
        method = VERBS.get(verb)
        if method is None:
            raise InvalidRequest(f"unknown verb {verb!r}", f"one of: {', '.join(sorted(VERBS))}")
        if not isinstance(params, dict):
            raise InvalidRequest("params must be a JSON object")
        if verb in STREAMING:
            params = {**params, "emit": emit or (lambda event: None)}
        try:
            return await method(self, **params)
        except TypeError as exc:
            if "argument" in str(exc) and exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
                raise InvalidRequest(f"{verb}: {exc}") from None  # bad params, not a bug deeper down
            raise

    # ------------------------------------------------------------------ clusters and placement
    async def clusters(self) -> list[dict[str, Any]]:
        return [c.model_dump(mode="json") for c in await self.core.clusters()]

    async def placement(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Every candidate cluster for a request and why it fits or not (``neo reserve --explain``)."""
        from jupyter_neo.client import gang_request

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
        from jupyter_neo.client import gang_request

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
        from jupyter_neo.client import gang_request

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

    async def get_run(self, run_id: str) -> dict[str, Any]:
        return (await self.core.run_record(run_id)).public()

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

    async def run(self, emit: Emit, **fields: Any) -> dict[str, Any]:
        """Run on a gang until the run ends (``%neo run``); streams output, record updates and notices.

        Cancelling the call (a kernel interrupt: the client's cancel frame) cancels the run: the
        supervisor stops every rank and records the run before the cancellation completes.
        """
        from jupyter_neo.client import prepare_run, run_prepared

        _check_fields(fields, RUN_FIELDS)
        command = str(fields.pop("command", "neo"))
        spec, gang, reservation, data = prepare_run(self.core.config, **fields)
        held = {r.id for r in self.core.store.reservations(active_only=True)}
        seen: list[str] = []

        def on_update(run: Run) -> None:
            if not seen:
                seen.append(run.id)
                self.changed("run", run.id, run.state.value)
                if run.reservation not in held:
                    # No silent spending: a gang reserved for this run bills until its idle TTL.
                    res = self.core.store.reservation(run.reservation)
                    emit({"event": "notice", "text": money.new_gang_notice(res, command)})
            emit({"event": "update", "run": run.public()})

        def on_line(rank: int | None, node: int, stream: str, line: str) -> None:
            emit({"event": "line", "rank": rank, "node": node, "stream": stream, "line": line})

        def progress(message: str) -> None:
            emit({"event": "progress", "message": message})

        run = await run_prepared(
            self.core, spec, gang, reservation, data, on_line=on_line, on_update=on_update, progress=progress
        )
        self.changed("run", run.id, run.state.value)
        return run.public()

    # ------------------------------------------------------------------ sync
    async def sync(self, emit: Emit, root: str, ref: str | None = None) -> dict[str, Any]:
        """Mirror ``root`` into every pod of the reservation now (``%neo sync``); ``transfer``
        events follow the content upload in bytes (progress bars)."""
        from jupyter_neo.client import only_reservation

        res = await self.core.status_one(ref) if ref else only_reservation(await self.core.status())

        def on_transfer(moved: int, planned: int) -> None:
            emit({"event": "transfer", "moved": moved, "planned": planned})

        report = await self.core.sync(res, Path(root), on_transfer=on_transfer)
        return {"summary": report.summary(), "report": report.model_dump(mode="json")}


VERBS: dict[str, Callable[..., Awaitable[Any]]] = {
    "clusters": Api.clusters,
    "placement": Api.placement,
    "preview": Api.preview,
    "datasets": Api.datasets,
    "reservations": Api.reservations,
    "reservation": Api.reservation,
    "reserve": Api.reserve,
    "extend": Api.extend,
    "release": Api.release,
    "runs": Api.runs,
    "get_run": Api.get_run,
    "stop_run": Api.stop_run,
    "logs": Api.logs,
    "run": Api.run,
    "sync": Api.sync,
}
"""Every verb of a ``call`` request (docs/protocol.md)."""
STREAMING = frozenset({"run", "sync"})


class ChangeFeed:
    """Change events for what happened in the state store since the last look.

    A reservation or run whose state moved, and ``budget_warning`` when a reservation's warning
    flag is set (by whichever process enforced its budget). Every ``reconcile_every``-th look
    reconciles with the backends, so idle-TTL expiries show up without anyone running a command.
    """

    def __init__(self, core: Core, publish: Changed, reconcile_every: int = 10) -> None:
        self.core = core
        self.publish = publish
        self.reconcile_every = reconcile_every
        self.polls = 0
        self._seen: dict[tuple[ChangeKind, str], str] | None = None
        self._warned: set[str] = set()
        self._lock = asyncio.Lock()
        self._warming: set[asyncio.Future[None]] = set()

    def note(self, kind: ChangeKind, ident: str, state: str) -> None:
        """A change already announced (by a verb): the next look does not announce it again."""
        if self._seen is not None:
            self._seen[(kind, ident)] = state

    async def poll(self) -> None:
        if self._lock.locked():
            return  # the previous look is still running (a slow reconcile)
        async with self._lock:
            await self._poll()

    async def _poll(self) -> None:
        self.polls += 1
        if self.polls % self.reconcile_every == 0:
            await self.core.reconcile(force=True)
        await self.core.enforce_budgets()
        now, warned = await asyncio.to_thread(self._snapshot)
        before, self._seen = self._seen, dict(now)
        was_warned, self._warned = self._warned, warned
        if before is None:
            return
        for rid in sorted(warned - was_warned):
            self.publish("reservation", rid, "budget_warning")
        for key, state in now.items():
            if before.get(key) != state:
                self.publish(key[0], key[1], state)
                if key[0] == "run" and state in ("starting", "running"):
                    self._warm(key[1])

    def _snapshot(self) -> tuple[dict[tuple[ChangeKind, str], str], set[str]]:
        snap: dict[tuple[ChangeKind, str], str] = {}
        warned: set[str] = set()
        for res in self.core.store.reservations():
            snap[("reservation", res.id)] = res.state.value
            if res.budget_warned and res.active:
                warned.add(res.id)
        for run in self.core.store.runs(200):
            snap[("run", run.id)] = run.state.value
        return snap, warned

    def _warm(self, run_id: str) -> None:
        """Open the connections to a new run's pods now, so a Stop click acts at once.

        A Stop from a browser (``DELETE runs/ID``) is a user waiting: without this, the first
        stop would start an agent stream per pod (a process each on the local backend).
        """

        async def connect() -> None:
            with contextlib.suppress(NeoError, OSError, TimeoutError):
                run = await asyncio.to_thread(self.core.store.run, run_id)
                await self.core.connect(await asyncio.to_thread(self.core.store.reservation, run.reservation))

        task = asyncio.ensure_future(connect())
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def close(self) -> None:
        """Stop: cancel connection warm-ups and wait for a look in progress."""
        for task in list(self._warming):
            task.cancel()
        async with self._lock:
            pass
