"""The asynchronous core every surface calls: clusters, reservations, connections to pods.

``Core`` owns one state store and one connection cache. It never prints: progress goes to a
callback, errors are :mod:`jupyter_neo.errors` types. The synchronous :class:`jupyter_neo.Client`
wraps it for scripts, the CLI and notebooks; the Jupyter server extension awaits it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jupyter_neo import money, placement
from jupyter_neo.backends import backend_for
from jupyter_neo.backends.base import Backend, reserve_progress
from jupyter_neo.config import Config, load_config
from jupyter_neo.costs import spend_report
from jupyter_neo.durations import format_duration, parse_duration
from jupyter_neo.errors import BackendError, Conflict, InvalidRequest, NeoError, NoCapacity
from jupyter_neo.identity import controller_alive, owner
from jupyter_neo.model import (
    ClusterStatus,
    GangRequest,
    Pod,
    PodState,
    Reservation,
    ReservationState,
    Run,
    new_id,
    utcnow,
)
from jupyter_neo.runs.logs import LineCallback
from jupyter_neo.runs.settle import settle, settle_open_runs, unsupervised
from jupyter_neo.runs.spec import RunSpec
from jupyter_neo.runs.supervisor import STOPPED, HotSession, RunSupervisor, nproc_for, stop_launchers
from jupyter_neo.store import Store
from jupyter_neo.transport.connection import AgentConnection

if TYPE_CHECKING:
    from jupyter_neo.sync.report import SyncReport

Progress = Callable[[str], None]
CONNECT_TIMEOUT = 60.0
STOP_RECORD_POLLS = 50  # x 0.1 s: how long neo stop waits for the run's controller to record the end
AGENT_STOP_WAIT = 10.0  # the agent's own stop: SIGTERM, 3 s grace, SIGKILL, reap
LIST_TTL = 10.0  # s: how long open streams may stand in for a backend's listing (_streams_vouch)
DEPENDENCY_FILES = {
    "requirements.txt",
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "environment.yml",
    "uv.lock",
}


def _quiet(_: str) -> None:
    pass


class Core:
    """One controller: configuration, state store, backends and open agent connections."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or load_config()
        self.store = Store(self.config.home / "state.sqlite", user_cap=self.config.defaults.user_budget)
        self._backends: dict[str, Backend] = {}
        self._conns: dict[tuple[str, str], AgentConnection] = {}
        self._conn_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._reconciled = False
        self._listed: dict[str, float] = {}  # cluster -> when its backend was last asked (monotonic)
        # In the resident controller: one-shot syncs read a change tracker instead of walking the
        # tree (jupyter_neo.sync.tracker); in-process cores walk, as a fresh process must.
        self.track_changes = False
        self.tearing_down: set[str] = set()  # being released: not to be reconnected
        self._teardowns: dict[str, asyncio.Future[None]] = {}
        self._reconcile_lock = asyncio.Lock()

    def backend(self, cluster_name: str) -> Backend:
        if cluster_name not in self._backends:
            self._backends[cluster_name] = backend_for(
                self.config.cluster(cluster_name), self.config, self.store
            )
        return self._backends[cluster_name]

    # ------------------------------------------------------------------ clusters
    async def clusters(self) -> list[ClusterStatus]:
        await self.reconcile()
        out = []
        for cluster in self.config.clusters:
            cap = await self.backend(cluster.name).capacity()
            out.append(
                ClusterStatus(
                    name=cluster.name,
                    backend=cluster.backend,
                    provider=cluster.provider,
                    region=cluster.region,
                    residency=cluster.residency,
                    gpu_type=cluster.gpu_type,
                    nodes=cluster.nodes,
                    gpus_per_node=cluster.gpus_per_node,
                    total_gpus=cluster.total_gpus,
                    free_gpus=cap.free,
                    price_per_gpu_hour=cluster.price_per_gpu_hour,
                    allocatable_gpus=cap.allocatable,
                    requested_gpus=cap.requested,
                    hosts=cap.hosts,
                )
            )
        return out

    def datasets(self) -> list[dict[str, Any]]:
        """Every configured dataset: size, residency, where it lives and where it may be copied."""
        from jupyter_neo.datasets.catalog import catalog

        return catalog(self.config.datasets, list(self.config.clusters))

    def candidates(self, request: GangRequest) -> list[placement.Candidate]:
        """Every cluster's verdict for ``request``, cheapest first, without contacting any cluster."""
        return placement.evaluate(
            request,
            list(self.config.clusters),
            self.config.defaults.residency,
            datasets=self.config.dataset_map,
            transfer=self.config.transfer,
        )

    async def explain(self, request: GangRequest) -> list[placement.Candidate]:
        """The candidates with each feasible cluster's free GPUs (probes every one: for display)."""
        candidates = self.candidates(request)
        for cand in candidates:
            if cand.rejected is None:
                cand.free_gpus = await self.backend(cand.cluster.name).free_gpus()
        return candidates

    # ------------------------------------------------------------------ reservations
    async def reserve(self, request: GangRequest, progress: Progress = _quiet) -> Reservation:
        """Admit a gang all-or-nothing on the cheapest cluster that fits, falling over on no capacity."""
        await self.reconcile()
        # No capacity probe up front: allocation on each cluster, in placement order, is the probe
        # (it raises NoCapacity holding nothing), so a cheaper cluster that fits never makes the
        # controller import or contact the others' APIs.
        candidates = self.candidates(request)
        feasible = [c for c in candidates if c.rejected is None]
        if not feasible:
            raise placement.no_fit_error(request, candidates, self.config.defaults.residency)
        shortfalls: list[NoCapacity] = []
        for cand in feasible:
            try:
                return await self._reserve_on(cand, request, progress)
            except NoCapacity as exc:
                shortfalls.append(exc)
                progress(f"{cand.cluster.name}: no capacity, trying the next cluster")
        if len(shortfalls) == 1:
            raise shortfalls[0]
        raise NoCapacity(
            "no cluster has the capacity right now: " + "; ".join(e.message for e in shortfalls),
            "release a reservation or ask for fewer GPUs",
        )

    async def _reserve_on(
        self, cand: placement.Candidate, request: GangRequest, progress: Progress
    ) -> Reservation:
        cluster = cand.cluster
        backend = self.backend(cluster.name)
        res = Reservation(
            id=new_id("r"),
            name=request.name,
            cluster=cluster.name,
            backend=cluster.backend,
            nodes=cand.nodes,
            gpus_per_node=cand.gpus_per_node,
            gpu_type=cluster.gpu_type,
            idle_ttl=request.idle_ttl,
            price_per_hour=cand.price_per_hour,
            owner=owner(),
            secret=secrets.token_hex(32),
            datasets=[fit.use() for fit in cand.data.fits],
            budget=request.budget,  # as asked: the store's admission cuts it to the user's cap
        )
        backend.check_datasets(res)  # a missing folder is one line, before any capacity is taken
        for use in res.datasets:
            use.path = backend.data_path(res, use)
            if use.copy_estimate is not None:
                est = use.copy_estimate
                progress(
                    f"{use.name} is not on {cluster.name}: copying it from {est.source} would take "
                    f"~{format_duration(est.seconds)} and {money.money(est.cost)}; jupyter-neo does not copy data"
                )
        # The spend cap, affordability and the name's uniqueness are decided by the store inside
        # the transaction that first writes the record (for the local backend, the one that takes
        # the GPUs), so two concurrent reserves cannot both pass them (docs/reliability.md).
        token = reserve_progress.set(progress)  # backends report queue waits (Slurm's pending reason)
        try:
            await backend.allocate(res)  # raises NoCapacity holding nothing; records the pending gang
        finally:
            reserve_progress.reset(token)
        progress(f"{cluster.name}: holding {res.nodes} node(s) x {res.gpus_per_node} GPU(s) as {res.id}")
        try:
            await backend.start(res)
            ready = 0

            async def bring_up(pod: Pod) -> None:
                nonlocal ready
                await self._claim(backend, res, pod)
                pod.state = PodState.READY
                ready += 1
                progress(f"pod {pod.name} ready ({ready}/{len(res.pods)})")

            await asyncio.gather(*(bring_up(pod) for pod in res.pods))
            res.state = ReservationState.READY
            res.ready_at = utcnow()
            self.store.save_reservation(res)
            return res
        except BaseException as exc:
            reason = (
                f"reserve failed: {exc}"
                if not isinstance(exc, asyncio.CancelledError)
                else "reserve interrupted"
            )
            await asyncio.shield(self._teardown(res, reason))
            raise

    async def open_connection(
        self,
        res: Reservation,
        pod: Pod,
        *,
        claim: dict[str, Any] | None = None,
        timeout: float = CONNECT_TIMEOUT,
    ) -> AgentConnection:
        """A new authenticated connection to ``pod``'s agent (not cached: see :meth:`connect`).

        Only a claim may boot an agent; reconnecting to a claimed pod never starts a fresh one.
        """
        stream = await self.backend(res.cluster).open_agent_stream(pod, boot=claim is not None)
        return await AgentConnection.open(stream, res.secret, claim=claim, name=pod.name, timeout=timeout)

    async def _claim(self, backend: Backend, res: Reservation, pod: Pod) -> AgentConnection:
        claim = {
            "labels": {"reservation": res.id, "pod": pod.name, "rank": str(pod.rank), "cluster": res.cluster},
            "env": {
                **backend.pod_env(res, pod),
                **data_env(res),  # after the backend's env: a cluster's env cannot hide a dataset
                "NEO_RESERVATION": res.id,
                "NEO_POD": pod.name,
                "NEO_NODE_RANK": str(pod.rank),
            },
            "workspace": backend.workspace_dir(pod),
            "idle_ttl": res.idle_ttl,
            "deadline": res.deadline.timestamp() if res.deadline else None,
        }
        conn = await self.open_connection(res, pod, claim=claim)
        labels = conn.hello
        if labels.get("claimed") and (await conn.call("info"))["labels"].get("reservation") != res.id:
            await conn.close()
            raise BackendError(f"{pod.name}: the pod's agent belongs to another reservation")
        await conn.call("ping")
        if backend.direct_after_boot:
            # The boot stub's relay process is not worth keeping for a warm connection.
            await conn.close()
            conn = await self.open_connection(res, pod)
        self._conns[(res.id, pod.name)] = conn
        return conn

    async def connect(self, res: Reservation) -> list[AgentConnection]:
        """Open (or reuse) an authenticated connection to every pod, in rank order."""

        async def one(pod: Pod) -> AgentConnection:
            key = (res.id, pod.name)
            lock = self._conn_locks.setdefault(key, asyncio.Lock())
            async with lock:
                conn = self._conns.get(key)
                if conn is not None and not conn.closed:
                    return conn
                conn = await self.open_connection(res, pod)
                self._conns[key] = conn
                return conn

        return list(await asyncio.gather(*(one(p) for p in res.pods)))

    async def sync(
        self,
        res: Reservation,
        root: str | Path,
        progress: Progress | None = None,
        dry_run: bool = False,
        on_transfer: Callable[[int, int], None] | None = None,
    ) -> SyncReport:
        """Mirror the folder ``root`` into every pod of ``res`` (see :mod:`jupyter_neo.sync`)."""
        from jupyter_neo.sync import sync_gang

        live(self.store.reservation(res.id), "sync to it")
        return await sync_gang(
            self, res, Path(root), progress=progress, dry_run=dry_run, on_transfer=on_transfer
        )

    async def with_stats(self, res: Reservation, timeout: float = 2.0) -> Reservation:
        """The reservation with each ready pod's live stats (load, memory, GPU utilisation).

        Best effort for live views: a pod that does not answer within ``timeout`` shows none.
        """
        if not res.live:
            return res
        try:
            conns = await asyncio.wait_for(self.connect(res), timeout)
        except (NeoError, TimeoutError):
            return res

        async def one(pod: Pod, conn: AgentConnection) -> None:
            with contextlib.suppress(NeoError, TimeoutError):
                pod.stats = await asyncio.wait_for(conn.call("stats"), timeout)

        await asyncio.gather(*(one(p, c) for p, c in zip(res.pods, conns, strict=True)))
        idle_release(res)
        return res

    async def ping(self, ref: str) -> list[float]:
        """Round-trip time to every pod's agent, in seconds, in rank order."""
        res = live(await self.status_one(ref), "ping it")
        conns = await self.connect(res)

        async def rtt(conn: AgentConnection) -> float:
            t0 = time.perf_counter()
            await conn.call("ping")
            return time.perf_counter() - t0

        return list(await asyncio.gather(*(rtt(c) for c in conns)))

    async def status(self) -> list[Reservation]:
        await self.reconcile()
        return self.store.reservations(active_only=True)

    async def status_one(self, ref: str) -> Reservation:
        await self.reconcile()
        return self.store.reservation(ref)

    def recorded(self, ref: str) -> Reservation:
        """A reservation as the store last recorded it: no reconcile, no await (callable from a
        callback running on the core's own loop, where awaiting ``status_one`` would deadlock)."""
        return self.store.reservation(ref)

    async def history(self) -> list[Reservation]:
        await self.reconcile()
        return self.store.reservations()

    async def dry_run(self, request: GangRequest, gang: str | None, fmt: str) -> str:
        """The Kubernetes objects ``reserve`` would create, rendered; nothing is created."""
        from jupyter_neo.backends.kubernetes.dryrun import dry_run_objects, render

        return render(await dry_run_objects(self.config, self.store, request, gang), fmt)

    async def cost(self, since_seconds: float) -> dict[str, Any]:
        """Spend by cluster and by reservation over the window, from the ledger (``neo cost``)."""
        await self.reconcile()
        now = time.time()
        return spend_report(self.store.ledger(now - since_seconds), since_seconds, now)

    async def record_check(self, reservation: str, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Analyse ``neo check`` measurements and keep the report with the reservation."""
        from jupyter_neo.runs.check import analyse

        report = analyse(results)
        self.store.save_check(reservation, report)
        return report

    async def release(self, ref: str, reason: str = "released by user") -> Reservation:
        res = self.store.reservation(ref)
        if res.state is ReservationState.RELEASED:
            return res
        await self._teardown(res, reason)
        return self.store.reservation(res.id)

    async def extend(
        self,
        ref: str,
        *,
        idle_ttl: str | float | Literal["keep"] | None = "keep",
        budget: float | Literal["keep"] | None = "keep",
    ) -> Reservation:
        """Change a live reservation's lease (idle TTL, spend cap); ``"keep"`` leaves a field as it is.

        Both values are validated before anything changes. A new budget is admitted against the
        spend cap in one store transaction, then sent to the pods (put back if they refuse it); a
        new idle TTL goes to every pod's agent first, and only when all of them took it is the
        stored reservation updated (the agents enforce the lease by themselves).
        """
        await self.reconcile()
        res = self.store.reservation(ref)
        if res.state is not ReservationState.READY and res.state is not ReservationState.DEGRADED:
            raise Conflict(
                f"reservation {res.id} is {res.state.value}; only a live reservation's lease can change",
                "reserve a new gang (neo reserve)",
            )
        # Validate both values before touching anything (the duration and money layers' rules).
        ttl = parse_duration(idle_ttl) if idle_ttl != "keep" else None
        new_budget = None if budget in ("keep", None) else money.parse_usd(budget, "budget")
        if budget != "keep":
            # First, as it is the change that can be refused: one store transaction checks the
            # cap against every other live reservation and commits the new budget, so concurrent
            # extends and reserves cannot overshoot it; the pods then get the deadline. If they
            # do not take it, the old budget is put back.
            old = res.budget
            res = self.store.change_budget(res.id, new_budget)
            try:
                await self._push_deadline(res)
            except BaseException:
                restored = self.store.change_budget(res.id, old, check=False)
                with contextlib.suppress(NeoError, OSError, TimeoutError):
                    await asyncio.shield(self._push_deadline(restored))
                raise
        if idle_ttl != "keep":
            conns = await self.connect(res)
            await asyncio.gather(*(conn.call("lease", idle_ttl=ttl) for conn in conns))
            res.idle_ttl = ttl
            self.store.save_reservation(res)
        return res

    async def _push_deadline(self, res: Reservation) -> None:
        conns = await self.connect(res)
        stamp = res.deadline.timestamp() if res.deadline else None
        await asyncio.gather(*(conn.call("lease", deadline=stamp) for conn in conns))

    async def release_all(self) -> list[Reservation]:
        out = []
        for res in self.store.reservations(active_only=True):
            out.append(await self.release(res.id))
        return out

    async def _teardown(self, res: Reservation, reason: str, ended: datetime | None = None) -> None:
        """Stop every agent (best effort), then let the backend verify nothing remains.

        ``ended`` is when the pods stopped by themselves (what their agents reported), which is
        what the reservation is charged to; by default, now. Runs nobody supervises are settled
        first: their output is read from the pods while the pods still hold it. A second teardown
        of the same reservation while one runs waits for that one.
        """
        running = self._teardowns.get(res.id)
        if running is not None:
            await asyncio.shield(running)
            return
        task = asyncio.ensure_future(self._teardown_once(res, reason, ended))
        self._teardowns[res.id] = task
        try:
            await asyncio.shield(task)
        finally:
            if task.done():
                self._teardowns.pop(res.id, None)
            else:
                task.add_done_callback(lambda _: self._teardowns.pop(res.id, None))

    async def _teardown_once(self, res: Reservation, reason: str, ended: datetime | None) -> None:
        self.tearing_down.add(res.id)
        backend = self.backend(res.cluster)
        if res.pods and res.state is not ReservationState.PENDING:
            await asyncio.shield(settle_open_runs(self, res, ending=reason))

        async def stop(pod: Pod) -> None:
            key = (res.id, pod.name)
            conn = self._conns.pop(key, None)
            with contextlib.suppress(NeoError, OSError, TimeoutError):
                if conn is None or conn.closed:
                    conn = await self.open_connection(res, pod, timeout=5)
                await asyncio.wait_for(conn.call("shutdown", purge=True), 5)
                # Let the agent finish its own orderly stop (it kills what its runs started,
                # also what escaped their sessions) before the backend's blunter release.
                end = time.monotonic() + AGENT_STOP_WAIT
                while not conn.closed and time.monotonic() < end:
                    await asyncio.sleep(0.05)
            if conn is not None:
                await conn.close()

        if res.pods and res.state is not ReservationState.PENDING:
            await asyncio.gather(*(stop(p) for p in res.pods), return_exceptions=True)
        else:
            for pod in res.pods:
                conn = self._conns.pop((res.id, pod.name), None)
                if conn is not None:
                    await conn.close()
        await backend.release(res)
        res.state = ReservationState.RELEASED
        res.released_at = min(ended, utcnow()) if ended is not None else utcnow()
        res.reason = reason
        for pod in res.pods:
            pod.state = PodState.RELEASED
        self.store.save_reservation(res)

    # ------------------------------------------------------------------ runs
    async def pick_reservation(
        self, ref: str | None, request: GangRequest | None, progress: Progress = _quiet
    ) -> Reservation:
        """The reservation a run uses: the named one, a ready one that fits, or a new gang."""
        await self.reconcile()
        if ref:
            res = self.store.reservation(ref)
            if res.state is not ReservationState.READY:
                raise Conflict(
                    f"reservation {res.id} is {res.state.value}" + (f": {res.reason}" if res.reason else ""),
                    "reserve a new gang (neo reserve) or run without --reservation",
                )
            return res
        ready = [r for r in self.store.reservations(active_only=True) if r.state is ReservationState.READY]
        if request is None:
            if len(ready) == 1:
                return ready[0]
            if not ready:
                raise InvalidRequest("no ready reservation to run on", "pass --gpus N to reserve one")
            raise InvalidRequest(
                f"{len(ready)} reservations are ready; say which",
                "pass --reservation ID (see neo status) or --gpus N",
            )
        for res in ready:
            if (
                res.gpus == request.gpus
                and (request.nodes is None or request.nodes == res.nodes)
                and (request.cluster is None or request.cluster == res.cluster)
                and (request.gpu_type is None or request.gpu_type.lower() == res.gpu_type.lower())
                and holds_data(res, request.data)
            ):
                progress(f"reusing warm reservation {res.id}")
                return res
        return await self.reserve(request, progress)

    async def run(
        self,
        res: Reservation,
        spec: RunSpec,
        on_line: LineCallback | None = None,
        on_update: Callable[[Run], None] | None = None,
    ) -> Run:
        """Run ``spec`` on every pod of ``res`` and return the finished run record.

        With ``spec.hot`` the live workers of an earlier ``--hot`` run re-run the entry point on
        the new code (one iteration); a cold start happens by itself when there are none, when the
        launch arguments or dependency files changed, and the run's ``note`` says why.
        """
        spec.validate()
        if not spec.hot:
            return await RunSupervisor(self, res, spec, on_line=on_line, on_update=on_update).execute()
        timings: dict[str, float] = {}
        changed: list[str] = []
        if spec.sync:
            t0 = time.perf_counter()
            report = await self.sync(res, spec.workspace)
            timings["sync"] = round(time.perf_counter() - t0, 4)
            changed = [c.path for c in report.changes]
        spec = dataclasses.replace(spec, sync=False)
        session, note = await self._hot_session(res, spec, changed)
        supervisor = RunSupervisor(self, res, spec, on_line=on_line, on_update=on_update, session=session)
        supervisor.run.note = note
        return await supervisor.execute(timings)

    async def _hot_session(
        self, res: Reservation, spec: RunSpec, changed: list[str]
    ) -> tuple[HotSession | None, str]:
        """The live hot session to iterate on, or None (cold start) and the one-line reason."""
        history = self.store.runs(500)
        owners = [r for r in history if r.hot and r.reservation == res.id and r.session == r.id]
        if not owners:
            return None, "cold start: first hot run on this reservation"
        last = owners[0]
        iteration = max(r.iteration for r in history if r.session == last.id)
        if not await self.workers_alive(res, last):
            return None, f"cold start: the workers of {last.id} have exited"
        deps = [p for p in changed if p.rsplit("/", 1)[-1] in DEPENDENCY_FILES]
        why = None
        if last.fingerprint != spec.fingerprint(res.nodes, nproc_for(spec, res)):
            why = "the launch arguments changed (nodes, ranks per node or environment)"
        elif deps:
            why = f"dependencies changed ({', '.join(deps)})"
        if why:
            await self.stop_run(last.id)
            return None, f"cold start: {why}"
        return HotSession(last.id, iteration), f"hot: iteration {iteration + 1} of {last.id}"

    async def workers_alive(self, res: Reservation, session: Run) -> bool:
        """Whether the hot session's launcher still runs on every pod."""
        conns = await self.connect(res)
        for node, conn in enumerate(conns):
            procs = (await conn.call("procs"))["procs"]
            mine = next((p for p in procs if p["proc"] == f"{session.id}-n{node}"), None)
            if mine is None or mine["returncode"] is not None:
                return False
        return True

    async def live_session(self, ref: str) -> tuple[Reservation, Run]:
        """The reservation and its hot session whose workers are alive (what px cells talk to)."""
        res = await self.status_one(ref)
        owners = [r for r in self.store.runs(500) if r.hot and r.reservation == res.id and r.session == r.id]
        if owners and await self.workers_alive(res, owners[0]):
            return res, owners[0]
        raise InvalidRequest(
            f"{res.id} has no live rank workers",
            "start them with %neo px --start (or run a script with --hot)",
        )

    async def stop_run(self, run_id: str) -> Run:
        """Stop a run wherever it is supervised: signal its launchers through the agents.

        A run nobody supervises (detached, or its controller died) is also settled here: its
        output collected and its record finished as ``stopped``.
        """
        run = self.store.run(run_id)
        if run.hot and run.session and run.session != run.id:
            return await self.stop_run(run.session)
        if run.done and not run.hot:
            return run
        res = self.store.reservation(run.reservation)
        if not res.live:
            return await settle(self, run) if not run.done else run
        if not run.done and unsupervised(run):
            return await settle(self, run, stop_reason=STOPPED)
        conns = await self.connect(res)
        await stop_launchers({n: (conn, f"{run.id}-n{n}") for n, conn in enumerate(conns)}, asked=True)
        # The controller following the run records its end (as stopped, in the words of an
        # interrupt); wait a moment for it, so every surface answers with the final state.
        for _ in range(STOP_RECORD_POLLS):
            run = self.store.run(run.id)
            if run.done:
                return self.store.run(run_id)
            await asyncio.sleep(0.1)
        return self.store.run(run_id)

    async def run_record(self, run_id: str) -> Run:
        """One run's record; an unsupervised open run is brought up to date from its pods first."""
        run = self.store.run(run_id)
        if not run.done and unsupervised(run):
            with contextlib.suppress(NeoError, OSError, TimeoutError):
                run = await settle(self, run)
        return run

    async def runs(self, limit: int = 50) -> list[Run]:
        """Recent runs, with unsupervised ones brought up to date first (see runs/settle.py)."""
        await self.reconcile()
        return self.store.runs(limit)

    # ------------------------------------------------------------------ reconcile
    async def reconcile(self, force: bool = False) -> None:
        """Bring the store in line with the backends (once per process unless forced).

        One at a time per core, after any release in flight: in the resident controller a
        command's reconcile may meet the background one, and must see its outcome, not race it.
        """
        if self._reconciled and not force:
            if self._reconcile_lock.locked():
                # One is in progress (the controller's adoption at start, or its maintenance):
                # this command must see its outcome, not the store before it.
                async with self._reconcile_lock:
                    pass
            return
        self._reconciled = True
        async with self._reconcile_lock:
            if self._teardowns:
                await asyncio.gather(*list(self._teardowns.values()), return_exceptions=True)
            await self._reconcile(trust_streams=not force)

    def _streams_vouch(self, cluster: str, active: list[Reservation]) -> bool:
        """Whether open agent streams may stand in for asking ``cluster``'s backend this time.

        A command's reconcile asks every backend with live reservations (a pod listing through
        the Kubernetes API, ``squeue``): ~6 ms per command on the harnesses here, more against a
        remote API server (docs/benchmarks.md, connect run 2). When every pod of every
        active reservation there has an open stream, its agent is alive (an agent that exits or
        a pod that is deleted closes its stream, and the next command lists again), so within
        ``LIST_TTL`` of the last listing the command skips it; a forced reconcile (the
        controller's every 30 s, or after a stream dropped) always lists.
        """
        return (
            bool(active)
            and time.monotonic() - self._listed.get(cluster, -LIST_TTL) < LIST_TTL
            and all(r.live and not self.cold_pods(r) for r in active)
        )

    async def _reconcile(self, trust_streams: bool = False) -> None:
        for rid, pid, started in self.store.pending_owners():
            if not controller_alive(pid, started):
                res = self.store.reservation(rid)
                await self._teardown(res, "the controller exited while reserving; rolled back")
        known = {r.id: r for r in self.store.reservations()}
        for cluster in self.config.clusters:
            active = [r for r in known.values() if r.cluster == cluster.name and r.active]
            if cluster.backend != "local" and not active:
                continue
            if trust_streams and self._streams_vouch(cluster.name, active):
                continue
            listed = time.monotonic()
            lost = await self.backend(cluster.name).reconcile(
                {k: v for k, v in known.items() if v.cluster == cluster.name}
            )
            self._listed[cluster.name] = listed
            for rid, why in lost.items():
                res = known[rid]
                # Charge to when the pods stopped, as their agents report it, not to now.
                ended = await self.backend(cluster.name).ended_at(res)
                if why.startswith("lease deadline") and res.budget:
                    await self._teardown(
                        res, f"budget of {money.money(res.budget)} reached", ended or res.deadline
                    )
                else:
                    await self._teardown(res, f"pods gone: {why}", ended)
        await settle_open_runs(self)
        await self.enforce_budgets()

    async def enforce_budgets(self) -> list[tuple[Reservation, str]]:
        """Warn once at 80% of a budget; release at 100% (the pods also stop by themselves).

        Returns ``(reservation, "warning" | "released")`` pairs so a long-lived surface (the Jupyter
        server) can turn them into events.
        """
        changes: list[tuple[Reservation, str]] = []
        for res in self.store.reservations(active_only=True):
            if not res.budget or res.state is ReservationState.PENDING:
                continue
            used = res.cost / res.budget
            if used >= 1.0:
                await self._teardown(res, f"budget of {money.money(res.budget)} reached")
                changes.append((res, "released"))
            elif used >= money.WARN_FRACTION and not res.budget_warned:
                res.budget_warned = True
                self.store.save_reservation(res)
                changes.append((res, "warning"))
        return changes

    def new_command(self) -> None:
        """A long-lived core reconciles once per command, as a fresh CLI process would."""
        self._reconciled = False

    def cold_pods(self, res: Reservation) -> list[Pod]:
        """Pods of ``res`` with no open connection (never opened, or lost)."""
        if res.id in self.tearing_down:
            return []
        return [p for p in res.pods if (c := self._conns.get((res.id, p.name))) is None or c.closed]

    def tracker_count(self, rid: str) -> int:
        from jupyter_neo.sync.push import gangs_of

        return sum(1 for g in gangs_of(self) if g.res.id == rid and g.tracker is not None)

    async def forget(self, live: set[str]) -> None:
        """Close connections and change trackers of reservations that are no longer live."""
        from jupyter_neo.sync.push import drop_gangs

        for key in [k for k in self._conns if k[0] not in live]:
            conn = self._conns.pop(key)
            await conn.close()
        await drop_gangs(self, live)

    async def close(self) -> None:
        from jupyter_neo.sync.push import drop_gangs

        await drop_gangs(self, set())
        for conn in list(self._conns.values()):
            await conn.close()
        self._conns.clear()


def live(res: Reservation, to_do: str) -> Reservation:
    """``res`` if it is held, else the one-line refusal for a command that needs its pods."""
    if res.live:
        return res
    why = f": {res.reason}" if res.reason else ""
    raise Conflict(
        f"reservation {res.id} is {res.state.value}{why}; cannot {to_do}",
        "reserve a new gang (neo reserve) and use its id (neo status)",
    )


def idle_release(res: Reservation) -> None:
    """Fill ``busy`` and ``idle_release_at`` from the pods' stats (their agents keep the lease).

    The gang goes when its first pod does, so the most idle pod decides.
    """
    stats = [p.stats for p in res.pods if p.stats and "idle_for" in p.stats]
    if not stats:
        return
    res.busy = any(bool(s.get("busy")) for s in stats)
    if res.busy or not res.idle_ttl:
        res.idle_release_at = None
        return
    idle = max(float(s["idle_for"]) for s in stats)
    res.idle_release_at = utcnow() + timedelta(seconds=max(0.0, res.idle_ttl - idle))


def holds_data(res: Reservation, refs: Sequence[str]) -> bool:
    """Whether a warm gang already has every dataset named (``NAME`` or ``NAME:rw``), mounted as asked."""
    from jupyter_neo.datasets.spec import parse_data_ref

    have = {u.name: u.read_only for u in res.datasets if u.present}
    for ref in refs:
        name, read_only = parse_data_ref(ref)
        if name not in have or (have[name] and not read_only):
            return False
    return True


def data_env(res: Reservation) -> dict[str, str]:
    """``NEO_DATA_<NAME>`` for every dataset the pods hold, in every rank's environment."""
    return {use.env_name: use.path for use in res.datasets if use.path is not None}


def expires_in(res: Reservation) -> timedelta | None:
    return timedelta(seconds=res.idle_ttl) if res.idle_ttl else None


def describe(res: Reservation) -> dict[str, Any]:
    return res.public()
