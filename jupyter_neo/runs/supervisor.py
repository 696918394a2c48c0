"""Gang semantics of a run: start every node, stream logs, and end as one.

- The first node whose launcher exits non-zero (or whose pod is lost) fails the run: every other
  node is stopped (SIGTERM, grace, SIGKILL) at once — torchrun would otherwise sit 300 s in its
  exit barrier — and the failing rank's last lines become the run's error.
- Cancellation (Ctrl-C, a kernel interrupt, DELETE /runs/ID) stops every node and records
  ``stopped``; ``timeout`` stops every node and records ``failed`` with exit code 124.
- The run's exit code is the gang's: 0 when every node succeeded, else the failing rank's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jupyter_neo.errors import BackendError, InvalidRequest, NeoError
from jupyter_neo.identity import owner
from jupyter_neo.model import RankStatus, Reservation, ReservationState, Run, RunState, new_id, utcnow
from jupyter_neo.runs.launch import NodeLaunch, node_argv, run_env
from jupyter_neo.runs.logs import LineCallback, RunLogs, failed_ranks
from jupyter_neo.runs.spec import RunSpec
from jupyter_neo.transport.bundle import agent_bundle
from jupyter_neo.transport.connection import AgentConnection

if TYPE_CHECKING:
    from jupyter_neo.core import Core

EXIT_INTERRUPTED = 130
EXIT_TIMEOUT = 124
EXIT_LOST = 255


def shell_code(code: int) -> int:
    """Exit codes as a shell reports them: a death by signal N becomes 128 + N."""
    return 128 - code if code < 0 else code


class NodeLost(Exception):
    def __init__(self, node: int, why: str) -> None:
        super().__init__(why)
        self.node = node


class RunSupervisor:
    """Drives one run from launch to its recorded end."""

    def __init__(
        self,
        core: Core,
        res: Reservation,
        spec: RunSpec,
        on_line: LineCallback | None = None,
        on_update: Callable[[Run], None] | None = None,
    ) -> None:
        self.core = core
        self.res = res
        self.spec = spec
        self.on_update = on_update or (lambda run: None)
        nproc = spec.nproc_per_node or (1 if spec.kind == "cmd" else res.gpus_per_node)
        if nproc > res.gpus_per_node and spec.kind != "cmd":
            raise InvalidRequest(
                f"--nproc-per-node {nproc} is more than the {res.gpus_per_node} GPUs each pod of {res.id} holds",
                f"use --nproc-per-node {res.gpus_per_node} or less, or reserve bigger nodes",
            )
        self.run = Run(
            id=new_id("run"),
            reservation=res.id,
            command=spec.command(),
            kind=spec.kind,
            launcher=spec.launcher,
            nodes=res.nodes,
            nproc_per_node=nproc,
            owner=owner(),
        )
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
        self.logs = RunLogs(log_dir, on_line or (lambda *a: None), plain=spec.launcher == "plain")
        self.procs: dict[int, str] = {}
        self.conns: list[AgentConnection] = []

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

    async def execute(self) -> Run:
        """Run to completion; always records the end, stops every node on any way out."""
        run = self.run
        self._save()
        try:
            t0 = time.perf_counter()
            self.conns = await self.core.connect(self.res)
            if self.spec.sync:
                report = await self.core.sync(self.res, self.spec.workspace)
                run.timings["sync"] = round(time.perf_counter() - t0, 4)
                run.timings["sync_noop"] = float(bool(getattr(report, "noop", False)))
            await self._launch()
            run.timings["launch"] = round(time.perf_counter() - t0, 4)
            run.state = RunState.RUNNING
            self._set_ranks(RunState.RUNNING)
            self._save()
            await asyncio.wait_for(self._supervise(), self.spec.timeout)
        except TimeoutError:
            await asyncio.shield(self._stop_all())
            self._finish(
                RunState.FAILED,
                EXIT_TIMEOUT,
                f"timed out after {self.spec.timeout:.0f}s; every rank was stopped",
            )
        except asyncio.CancelledError:
            await asyncio.shield(self._stop_all())
            self._finish(RunState.STOPPED, EXIT_INTERRUPTED, "interrupted; every rank was stopped")
            raise
        except NeoError as exc:
            await asyncio.shield(self._stop_all())
            self._finish(RunState.FAILED, EXIT_LOST, str(exc))
            raise
        finally:
            self.logs.close()
        return run

    async def _launch(self) -> None:
        leader = self.res.pods[0]
        port = int((await self.conns[0].call("free_port"))["port"])
        self.run.master = f"{leader.address}:{port}"
        backend = self.core.backend(self.res.cluster)

        async def start(node: int) -> None:
            pod = self.res.pods[node]
            agent_dir = backend.agent_dir(pod)
            at = NodeLaunch(
                node=node,
                nproc=self.run.nproc_per_node,
                master=leader.address,
                port=port,
                python=backend.python(pod),
                log_dir=f"{agent_dir}/runs/{self.run.id}",
                agent_zip=f"{agent_dir}/agent-{agent_bundle().digest}.pyz",
            )
            argv = node_argv(self.spec, self.res, at)
            env = run_env(self.spec, self.res, at, self.run.id)
            reply = await self.conns[node].call("exec", argv=argv, env=env, name=f"{self.run.id}-n{node}")
            self.procs[node] = str(reply["proc"])

        try:
            await asyncio.gather(*(start(n) for n in range(self.res.nodes)))
        except BaseException:
            await asyncio.shield(self._stop_all())
            raise

    async def _watch(self, node: int) -> int:
        conn = self.conns[node]
        try:
            reply, _ = await conn.request(
                "attach", proc=self.procs[node], on_event=lambda h, p: self.logs.feed(node, h["stream"], p)
            )
        except BackendError as exc:
            raise NodeLost(node, f"pod {self.res.pods[node].name} was lost: {exc.message}") from None
        code = reply.get("returncode")
        return int(code) if code is not None else EXIT_LOST

    async def _supervise(self) -> None:
        tasks = {asyncio.ensure_future(self._watch(n)): n for n in range(self.res.nodes)}
        failure: tuple[int, int, str | None] | None = None
        try:
            pending = set(tasks)
            while pending and failure is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    node = tasks[task]
                    try:
                        code = task.result()
                    except NodeLost as exc:
                        failure = (node, EXIT_LOST, str(exc))
                        self._mark_degraded(str(exc))
                        await self.core.backend(self.res.cluster).pod_lost(self.res, self.res.pods[node])
                        break
                    if code == 0:
                        self._set_ranks(RunState.SUCCEEDED, node, 0)
                    else:
                        failure = (node, code, None)
                        break
                self._save()
            if failure is not None:
                await self._stop_all()
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
        self.logs.flush()
        if failure is None:
            self._finish(RunState.SUCCEEDED, 0, None)
        else:
            self._fail(*failure)

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
        self._save()

    def _mark_degraded(self, reason: str) -> None:
        res = self.core.store.reservation(self.res.id)
        if res.state is ReservationState.READY:
            res.state = ReservationState.DEGRADED
            res.reason = reason
            self.core.store.save_reservation(res)

    async def _stop_all(self) -> None:
        """SIGTERM every node's launcher, wait the grace period, SIGKILL what is left."""

        async def stop(node: int, proc: str) -> None:
            conn = self.conns[node]
            with contextlib.suppress(NeoError, OSError):
                await conn.call("signal", proc=proc, signal="SIGTERM")
                reply = await conn.call("wait", proc=proc, timeout=self.spec.grace)
                if not reply.get("exited"):
                    await conn.call("signal", proc=proc, signal="SIGKILL")
                    await conn.call("wait", proc=proc, timeout=5)

        await asyncio.gather(*(stop(n, p) for n, p in self.procs.items()), return_exceptions=True)


def describe_run(run: Run) -> dict[str, Any]:
    return run.public()
