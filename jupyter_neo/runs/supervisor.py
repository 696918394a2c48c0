"""Gang semantics of a run: start every node, stream logs, and end as one.

- The first node whose launcher exits non-zero (or whose pod is lost) fails the run: every other
  node is stopped (SIGTERM, grace, SIGKILL) at once — torchrun would otherwise sit 300 s in its
  exit barrier — and the failing rank's last lines become the run's error.
- Cancellation (Ctrl-C, a kernel interrupt, DELETE /runs/ID) stops every node and records
  ``stopped``; ``timeout`` stops every node and records ``failed`` with exit code 124.
- The run's exit code is the gang's: 0 when every node succeeded, else the failing rank's.
- Hot runs (``--hot``) end an *iteration* when every rank reports it finished the entry point;
  the workers stay up for the next generation (see :mod:`neo_agent.hot`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jupyter_neo.errors import AgentError, BackendError, InvalidRequest, NeoError
from jupyter_neo.identity import controller_identity, owner
from jupyter_neo.model import RankStatus, Reservation, ReservationState, Run, RunState, new_id, utcnow
from jupyter_neo.runs.launch import NodeLaunch, entry_argv, node_argv, run_env
from jupyter_neo.runs.logs import LineCallback, RunLogs, failed_ranks
from jupyter_neo.runs.spec import RunSpec
from jupyter_neo.transport.bundle import agent_bundle
from jupyter_neo.transport.connection import AgentConnection

if TYPE_CHECKING:
    from jupyter_neo.hosts import RunHost

EXIT_INTERRUPTED = 130
STOPPED = "stopped on request; every rank was stopped"
"""The words of every stop: a kernel interrupt, a Stop button (widget or sidebar), ``neo stop``."""
EXIT_TIMEOUT = 124
EXIT_LOST = 255
PROBE_PERIOD = 2.0
PROBE_TIMEOUT = 10.0
MAX_METRICS = 5000


def shell_code(code: int) -> int:
    """Exit codes as a shell reports them: a death by signal N becomes 128 + N."""
    return 128 - code if code < 0 else code


class NodeLost(Exception):
    def __init__(self, node: int, why: str) -> None:
        super().__init__(why)
        self.node = node


def nproc_for(spec: RunSpec, res: Reservation) -> int:
    nproc = spec.nproc_per_node or (1 if spec.kind == "cmd" else res.gpus_per_node)
    if nproc > res.gpus_per_node and spec.kind != "cmd":
        raise InvalidRequest(
            f"--nproc-per-node {nproc} is more than the {res.gpus_per_node} GPUs each pod of {res.id} holds",
            f"use --nproc-per-node {res.gpus_per_node} or less, or reserve bigger nodes",
        )
    return nproc


def add_metric(run: Run, record: dict[str, Any]) -> None:
    """Append one metrics record, halving the history when it outgrows :data:`MAX_METRICS`.

    A long run keeps a curve of bounded size (every other point of the oldest half), so the run
    record stays small enough to store and send to a browser, and re-plots the whole run.
    """
    clean = {k: v for k, v in record.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    run.metrics.append(clean)
    if len(run.metrics) > MAX_METRICS:
        half = len(run.metrics) // 2
        run.metrics[:half] = run.metrics[:half:2]


@dataclass(frozen=True)
class HotSession:
    """Live hot-reload workers: the run that launched them and how many iterations they ran."""

    id: str
    iteration: int

    def proc(self, node: int) -> str:
        return f"{self.id}-n{node}"


class RunSupervisor:
    """Drives one run (or one hot iteration) from launch to its recorded end."""

    def __init__(
        self,
        core: RunHost,
        res: Reservation,
        spec: RunSpec,
        *,
        on_line: LineCallback | None = None,
        on_update: Callable[[Run], None] | None = None,
        session: HotSession | None = None,
    ) -> None:
        self.core = core
        self.res = res
        self.spec = spec
        self.on_update = on_update or (lambda run: None)
        nproc = nproc_for(spec, res)
        self.session = session
        self.run = Run(
            id=new_id("run"),
            reservation=res.id,
            command=spec.command(),
            kind=spec.kind,
            launcher=spec.launcher,
            nodes=res.nodes,
            nproc_per_node=nproc,
            owner=owner(),
            hot=spec.hot,
            fingerprint=spec.fingerprint(res.nodes, nproc) if spec.hot else "",
        )
        if spec.hot:
            self.run.session = session.id if session else self.run.id
            self.run.iteration = session.iteration + 1 if session else 1
        # Hot workers live across iterations (idle_ok, stopped at idle TTL like the pod): no lease.
        self.run.detached = spec.detach
        self.run.lease = None if spec.detach or spec.hot else core.config.run_lease
        self.run.controller = controller_identity()
        per_node = 1 if spec.launcher == "plain" else nproc
        log_dir = core.config.home / "runs" / self.run.id
        self.run.log_dir = str(log_dir)
        self.run.ranks = [
            RankStatus(
                rank=n * per_node + lr,
                node=n,
                local_rank=lr,
                log=str(log_dir / f"rank{n * per_node + lr}.log"),
            )
            for n in range(res.nodes)
            for lr in range(per_node)
        ]
        self.run.label = spec.label
        self.logs = RunLogs(
            log_dir,
            on_line or (lambda *a: None),
            plain=spec.launcher == "plain",
            on_hot=self._on_hot,
            on_phase=self._on_phase,
            on_error=self._on_log_error,
            on_metric=self._on_metric,
        )
        self.procs: dict[int, str] = {}
        self.conns: list[AgentConnection] = []
        self.watch_conns: list[AgentConnection] = []
        self.offsets: dict[int, dict[str, int]] = {}
        self.hot_reports: dict[int, dict[str, Any]] = {}
        self.iteration_done: asyncio.Event | None = None
        self.log_failed: asyncio.Event | None = None
        self.notified_at = 0.0
        self.stop_asked = False

    def _save(self) -> None:
        self.core.store.save_run(self.run)
        self.on_update(self.run)

    def _set_ranks(self, state: RunState, node: int | None = None, code: int | None = None) -> None:
        for rank in self.run.ranks:
            if (node is None or rank.node == node) and rank.state not in (
                RunState.SUCCEEDED,
                RunState.FAILED,
            ):
                rank.state = state
                rank.exit_code = code if code is not None else rank.exit_code

    async def execute(self, timings: dict[str, float] | None = None) -> Run:
        """Run to completion; always records the end, stops every node on any way out but success.

        Every way out, including a bug here or an unexpected reply (anything raised), stops every
        node and finishes the record; the pods' run lease covers the one way this code cannot
        see (the controller process killed outright).
        """
        run = self.run
        run.timings.update(timings or {})
        self.iteration_done = asyncio.Event()
        self.log_failed = asyncio.Event()
        self._save()
        heartbeat: asyncio.Future[None] | None = None
        try:
            t0 = time.perf_counter()
            self.conns = await self.core.connect(self.res)
            if self.spec.sync:
                report = await self.core.sync(self.res, self.spec.workspace)
                run.timings["sync"] = round(time.perf_counter() - t0, 4)
                run.timings["sync_noop"] = float(bool(getattr(report, "noop", False)))
            if not self.spec.detach:
                heartbeat = asyncio.ensure_future(self._heartbeat())
            if self.session is not None:
                await self._notify_iteration(self.session)
            else:
                await self._launch()
            run.timings["launch"] = round(time.perf_counter() - t0, 4)
            run.state = RunState.RUNNING
            self._set_ranks(RunState.RUNNING)
            for rank in run.ranks:
                if rank.phase == "starting" and self.session is not None:
                    rank.phase = "running"  # hot workers are up already
            self._save()
            if not self.spec.detach:
                await asyncio.wait_for(self._supervise(), self.spec.timeout)
        except BaseException as exc:
            try:
                await asyncio.shield(self._stop_all())
            finally:
                self._end_on(exc)
            if isinstance(exc, TimeoutError):
                return run
            if not isinstance(exc, NeoError | asyncio.CancelledError | KeyboardInterrupt):
                raise NeoError(
                    f"run {run.id} failed: internal error {type(exc).__name__}: {exc}; every rank was stopped",
                    f"the traceback is in {self.logs.dir / 'supervisor-error.txt'}",
                ) from exc
            raise
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            with contextlib.suppress(OSError):
                self.logs.close()
            for conn in self.watch_conns:
                with contextlib.suppress(Exception):
                    await conn.close()
        return run

    def _end_on(self, exc: BaseException) -> None:
        """Finish the record for a run that ends by ``exc`` (never raises: this is the last word)."""
        # A failing store (disk full) must not hide ``exc``: reconcile settles the record later.
        with contextlib.suppress(Exception):
            if isinstance(exc, TimeoutError):
                self._finish(
                    RunState.FAILED,
                    EXIT_TIMEOUT,
                    f"timed out after {self.spec.timeout or 0:.0f}s; every rank was stopped",
                )
            elif isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
                self._finish(RunState.STOPPED, EXIT_INTERRUPTED, STOPPED)
            elif isinstance(exc, NeoError):
                self._finish(RunState.FAILED, EXIT_LOST, str(exc))
            else:
                with contextlib.suppress(OSError):
                    (self.logs.dir / "supervisor-error.txt").write_text(
                        "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                    )
                self._finish(
                    RunState.FAILED,
                    EXIT_LOST,
                    f"internal error in the run's supervisor: {type(exc).__name__}: {exc}; every rank was stopped",
                )

    async def _launch(self) -> None:
        leader = self.res.pods[0]
        port = int((await self.conns[0].call("free_port"))["port"])
        self.run.master = f"{leader.address}:{port}"
        backend = self.core.backend(self.res.cluster)

        async def start(node: int) -> None:
            pod = self.res.pods[node]
            agent_dir = backend.agent_dir(pod)
            hot_control = None
            if self.spec.hot:
                reply = await self.conns[node].call("hot_gen", session=self.run.id, gen=1)
                hot_control = str(reply["control"])
            at = NodeLaunch(
                node=node,
                nproc=self.run.nproc_per_node,
                master=leader.address,
                port=port,
                python=backend.python(pod),
                log_dir=f"{agent_dir}/runs/{self.run.id}",
                agent_zip=f"{agent_dir}/agent-{agent_bundle().digest}.pyz",
                hot_control=hot_control,
            )
            argv = node_argv(self.spec, self.res, at)
            env = run_env(self.spec, self.res, at, self.run.id)
            reply = await self.conns[node].call(
                "exec",
                argv=argv,
                env=env,
                name=f"{self.run.id}-n{node}",
                idle_ok=self.spec.hot,
                lease=self.run.lease,
            )
            self.procs[node] = str(reply["proc"])

        try:
            await self._check_leader_resolves(leader.address)
            if self.spec.hot:
                self.watch_conns = await self._open_watch_conns()
            self.notified_at = time.monotonic()
            await asyncio.gather(*(start(n) for n in range(self.res.nodes)))
        except BaseException:
            await asyncio.shield(self._stop_all())
            raise

    async def _check_leader_resolves(self, address: str) -> None:
        """Every other node must resolve the leader's address before torchrun is started.

        Without this a rank whose resolver does not know the name (a Kubernetes cluster without
        DNS for headless Services) retries the rendezvous until torch's own timeout, minutes later,
        with a message about TCPStore. One cheap agent call per node turns that into one line.
        """
        if self.res.nodes < 2 or self.spec.launcher == "plain":
            return

        async def check(node: int) -> None:
            try:
                reply = await self.conns[node].call("resolve", host=address)
            except AgentError as exc:
                if exc.agent_code == "unknown_op":  # an agent from before this check: skip it
                    return
                raise
            if not reply.get("addresses"):
                pod = self.res.pods[node].name
                raise InvalidRequest(
                    f"pod {pod} cannot resolve the leader's address {address} ({reply.get('error') or 'no address'})",
                    self.core.backend(self.res.cluster).rendezvous_hint(),
                )

        await asyncio.gather(*(check(n) for n in range(1, self.res.nodes)))

    async def _open_watch_conns(self) -> list[AgentConnection]:
        """Connections used only to follow output; closing them detaches (the workers live on)."""
        return list(
            await asyncio.gather(*(self.core.open_connection(self.res, pod) for pod in self.res.pods))
        )

    async def _notify_iteration(self, session: HotSession) -> None:
        """Follow the live workers from their current output offsets, then bump the generation."""
        self.procs = {n: session.proc(n) for n in range(self.res.nodes)}

        async def offsets(node: int) -> None:
            procs = (await self.conns[node].call("procs"))["procs"]
            mine = next((p for p in procs if p["proc"] == self.procs[node]), None)
            if mine is None or mine["returncode"] is not None:
                raise NodeLost(node, f"the hot workers on {self.res.pods[node].name} are gone")
            self.offsets[node] = dict(mine["bytes"])

        await asyncio.gather(*(offsets(n) for n in range(self.res.nodes)))
        self.watch_conns = await self._open_watch_conns()
        self.run.master = ""
        self.notified_at = time.monotonic()
        await asyncio.gather(
            *(
                c.call("hot_gen", session=session.id, gen=self.run.iteration, argv=entry_argv(self.spec))
                for c in self.conns
            )
        )

    def _on_metric(self, record: dict[str, Any]) -> None:
        """A ``jupyter_neo.log(...)`` record from a rank: kept with the run, shown live."""
        add_metric(self.run, record)
        self.on_update(self.run)

    def _on_hot(self, rank: int, event: dict[str, Any]) -> None:
        if event.get("gen") != self.run.iteration or self.iteration_done is None:
            return
        kind = event.get("event")
        if kind == "reloaded":
            self.run.timings["reload"] = max(
                self.run.timings.get("reload", 0.0), float(event.get("seconds", 0))
            )
        elif kind in ("done", "skipped"):
            self.hot_reports[rank] = event
            if len(self.hot_reports) == len(self.run.ranks):
                self.iteration_done.set()

    async def _watch(self, node: int) -> int:
        """Follow one node's launcher to its exit code, while probing that its pod still answers."""
        conn = self.watch_conns[node] if self.watch_conns else self.conns[node]
        attach = asyncio.ensure_future(
            conn.request(
                "attach",
                proc=self.procs[node],
                offsets=self.offsets.get(node, {}),
                on_event=lambda h, p: self.logs.feed(node, h["stream"], p),
            )
        )
        probe = asyncio.ensure_future(self._probe(node))
        try:
            await asyncio.wait({attach, probe}, return_when=asyncio.FIRST_COMPLETED)
            if probe.done():
                probe.result()  # raises NodeLost
            reply, _ = attach.result()
        except BackendError as exc:
            raise NodeLost(node, f"pod {self.res.pods[node].name} was lost: {exc.message}") from None
        finally:
            for task in (attach, probe):
                task.cancel()
        if reply.get("stopped"):
            self.stop_asked = True
        code = reply.get("returncode")
        return int(code) if code is not None else EXIT_LOST

    async def _probe(self, node: int) -> None:
        """Ping the pod's agent: a node that dies silently (power, network) fails the run in seconds.

        An exec stream to a dead node can stay open for minutes (``srun`` waits for Slurm to mark
        the node down), so the stream's end cannot be the only witness.
        """
        name = self.res.pods[node].name
        while True:
            await asyncio.sleep(PROBE_PERIOD)
            try:
                await asyncio.wait_for(self.conns[node].call("ping"), PROBE_TIMEOUT)
            except TimeoutError:
                raise NodeLost(
                    node, f"pod {name} stopped answering (no reply in {PROBE_TIMEOUT:.0f}s)"
                ) from None

    async def _supervise(self) -> None:
        tasks: dict[asyncio.Future[Any], int] = {
            asyncio.ensure_future(self._watch(n)): n for n in range(self.res.nodes)
        }
        assert self.iteration_done is not None and self.log_failed is not None
        iteration = asyncio.ensure_future(self.iteration_done.wait())
        log_failed = asyncio.ensure_future(self.log_failed.wait())
        failure: tuple[int, int, str | None] | None = None
        try:
            pending: set[asyncio.Future[Any]] = {*tasks, log_failed}
            if self.spec.hot:
                pending.add(iteration)
            while any(t in pending for t in tasks) and failure is None and not iteration.done():
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is iteration:
                        continue
                    if task is log_failed:
                        failure = (0, EXIT_LOST, self.logs.write_error)
                        break
                    node = tasks[task]
                    try:
                        code = task.result()
                    except NodeLost as exc:
                        failure = (node, EXIT_LOST, str(exc))
                        self._mark_degraded(str(exc))
                        await self.core.backend(self.res.cluster).pod_lost(self.res, self.res.pods[node])
                        break
                    if code == 0 and not self.spec.hot:
                        self._set_ranks(RunState.SUCCEEDED, node, 0)
                    else:
                        failure = (node, code if code else EXIT_LOST, None)
                        break
                self._save()
            if failure is not None:
                await self._stop_all()
                await asyncio.gather(
                    *(p for p in pending if p is not iteration and p is not log_failed),
                    return_exceptions=True,
                )
                if not self.stop_asked:
                    self.stop_asked = await self._stop_was_asked()
        finally:
            for task in [*tasks, iteration, log_failed]:
                task.cancel()
        self.logs.flush()
        if failure is not None and self.stop_asked:
            # Another controller stopped the run (neo stop, a Stop button): the same end as an
            # interrupt of this one, not a failure.
            self._finish(RunState.STOPPED, EXIT_INTERRUPTED, STOPPED)
        elif failure is not None:
            self._fail(*failure)
        elif self.spec.hot:
            self._finish_iteration()
        else:
            self._finish(RunState.SUCCEEDED, 0, None)

    async def _stop_was_asked(self) -> bool:
        """Did any node's agent get a stop request for this run's launcher?

        Asked only when a launcher ended badly: with a stop racing a peer's crash, the node that
        saw the stop first may not be the one whose end was noticed first.
        """

        async def asked(node: int) -> bool:
            with contextlib.suppress(NeoError, OSError, TimeoutError):
                procs = (await asyncio.wait_for(self.conns[node].call("procs"), 5))["procs"]
                return any(p["proc"] == self.procs.get(node) and p.get("stopped") for p in procs)
            return False

        return any(await asyncio.gather(*(asked(n) for n in self.procs)))

    def _on_phase(self, rank: int, phase: str) -> None:
        """A rank moved on (importing: its process started; running: its first line)."""
        order = ("starting", "importing", "running", "exited")
        for status in self.run.ranks:
            if status.rank == rank and order.index(phase) > order.index(status.phase):
                status.phase = phase  # type: ignore[assignment]
                self._save()

    async def _heartbeat(self) -> None:
        """Renew the run's lease on every pod (and so its idle timer) while this controller lives.

        Four heartbeats per lease, so one or two lost to a slow network or a busy loop do not
        stop a healthy run; a killed controller's run stops within one lease.
        """
        lease = self.run.lease or 90.0
        period = min(15.0, max(0.2, lease / 4), max(0.2, (self.res.idle_ttl or 90.0) / 3))

        async def beat(node: int) -> None:
            if node < len(self.conns):
                proc = self.procs.get(node, f"{self.run.id}-n{node}")
                await asyncio.wait_for(self.conns[node].call("heartbeat", procs=[proc]), max(1.0, period * 2))

        while True:
            await asyncio.sleep(period)
            await asyncio.gather(*(beat(n) for n in range(self.res.nodes)), return_exceptions=True)

    def _on_log_error(self, message: str) -> None:
        if self.log_failed is not None:
            self.log_failed.set()

    def _finish_iteration(self) -> None:
        """Every rank reported: record the iteration's outcome; the workers stay warm."""
        run = self.run
        first = [t - self.notified_at for t in self.logs.first_output.values()]
        if first and len(first) == len(run.ranks):
            run.timings["first_output"] = round(max(first), 4)
        run.timings["iteration"] = round(time.monotonic() - self.notified_at, 4)
        failed = {r: e for r, e in self.hot_reports.items() if e.get("event") == "skipped" or not e.get("ok")}
        for rank in run.ranks:
            report = self.hot_reports.get(rank.rank, {})
            ok = report.get("event") == "done" and report.get("ok")
            rank.state = RunState.SUCCEEDED if ok else RunState.FAILED
            rank.exit_code = 0 if ok else 1
        if not failed:
            self._finish(RunState.SUCCEEDED, 0, None)
            return
        culprit = min(failed)
        event = failed[culprit]
        run.failed_rank = culprit
        if event.get("event") == "skipped":
            # Nothing crashed: the new code did not compile, the workers run on with the old one.
            why = not_applied(str(event.get("error")), event.get("kept"))
            run.not_applied = why
            for rank in run.ranks:
                rank.state, rank.exit_code, rank.phase = RunState.RUNNING, None, "running"
            run.state, run.exit_code, run.ended, run.error = RunState.FAILED, 1, utcnow(), why
            self._save()
            return
        else:
            lines = "\n".join(list(self.logs.tails.get(culprit, []))[-20:])
            why = f"rank {culprit} raised {event.get('error')} (the workers stay warm)\n{lines}"
        self._finish(RunState.FAILED, 1, why)

    def _fail(self, node: int, code: int, why: str | None) -> None:
        """Record the failure, blaming the rank that raised first.

        torchrun's own "root cause" is the first worker *it* saw exit, which is often a peer that
        aborted because the real culprit closed its connections; the first Python traceback to
        reach us is a better witness, torchrun's summary the fallback.
        """
        run = self.run
        run.failed_node = node
        codes = failed_ranks(list(self.logs.node_tails.get(node, [])))
        for rank in run.ranks:
            if rank.rank in codes:
                rank.exit_code = codes[rank.rank]
                rank.state = RunState.FAILED
        self._set_ranks(RunState.STOPPED)
        raised = sorted(self.logs.failures, key=self.logs.failures.__getitem__)
        if raised:
            culprit = raised[0]
        elif codes:
            culprit = next(iter(codes))
        else:
            culprit = next(r.rank for r in run.ranks if r.node == node)
        run.failed_rank = culprit
        culprit_node = next(r.node for r in run.ranks if r.rank == culprit)
        lines = list(self.logs.tails.get(culprit, []))[-20:] or list(self.logs.node_tails.get(node, []))[-20:]
        head = why or f"rank {culprit} on node {culprit_node} ({self.res.pods[culprit_node].name}) failed"
        self._finish(RunState.FAILED, shell_code(code), head + "\n" + "\n".join(lines))

    def _finish(self, state: RunState, code: int, error: str | None) -> None:
        run = self.run
        self.logs.flush()
        run.state = state
        run.exit_code = code
        run.ended = utcnow()
        if error and not run.error:
            run.error = error
        self._set_ranks(RunState.STOPPED if state is not RunState.SUCCEEDED else RunState.SUCCEEDED)
        if not self.spec.hot:
            for rank in run.ranks:
                rank.phase = "exited"
        self._save()

    def _mark_degraded(self, reason: str) -> None:
        res = self.core.store.reservation(self.res.id)
        if res.state is ReservationState.READY:
            res.state = ReservationState.DEGRADED
            res.reason = reason
            self.core.store.save_reservation(res)

    async def _stop_all(self) -> None:
        """Stop every node's launcher, also ones whose ``exec`` reply never arrived (by name)."""
        with contextlib.suppress(Exception):
            names = {n: self.procs.get(n, f"{self.run.id}-n{n}") for n in range(len(self.conns))}
            await stop_launchers({n: (self.conns[n], p) for n, p in names.items()}, self.spec.grace)


def not_applied(error: str, kept: object) -> str:
    """``not applied: syntax error at train_ddp.py:30 — ranks still run generation 2``."""
    where = error
    match = re.match(r"(?P<file>[^:\s]+\.py):(?P<line>\d+): (?P<msg>.*)", error)
    if match:
        where = f"syntax error at {match['file']}:{match['line']} ({match['msg']})"
    return f"not applied: {where} \u2014 ranks still run generation {kept}"


async def stop_launchers(
    procs: dict[int, tuple[AgentConnection, str]], grace: float = 5.0, *, asked: bool = False
) -> None:
    """Stop each node's launcher: SIGTERM, wait ``grace``, SIGKILL what is left (the agent then
    also kills every process carrying the launcher's tag). Best effort per node, all in parallel.

    ``asked``: a user asked for the stop (not a failure of a peer); the agents mark the process so
    the controller following the run records it as stopped, with the same words as an interrupt.
    """

    async def stop(conn: AgentConnection, proc: str) -> None:
        with contextlib.suppress(NeoError, OSError, TimeoutError):
            await asyncio.wait_for(conn.call("signal", proc=proc, signal="SIGTERM", stop=asked), 10)
            reply = await asyncio.wait_for(conn.call("wait", proc=proc, timeout=grace), grace + 10)
            if not reply.get("exited"):
                await asyncio.wait_for(conn.call("signal", proc=proc, signal="SIGKILL"), 10)
                await asyncio.wait_for(conn.call("wait", proc=proc, timeout=5), 15)

    await asyncio.gather(*(stop(c, p) for c, p in procs.values()), return_exceptions=True)
