"""Runs nobody supervises any more: detached runs, and runs whose controller died.

The pods' agents keep every launcher's output and exit code on disk (``AGENT_DIR/procs/<proc>/``)
until the pod itself is given back, so any later controller can bring such a run's record up to
date: it replays the output through the same rank split a live controller uses (the rank logs in
``$NEO_HOME/runs/<run>/`` end up complete, including the tail written after the controller died)
and records how each node ended. This happens on every reconcile, and before a reservation's
pods are given back, so the output is collected before anything is deleted.

Outcomes: a run whose ranks all exited 0 ``succeeded`` (whoever watched); a detached run that
failed ``failed`` with its culprit's lines; a supervised run whose controller died is ``lost``,
with the agents' reason (its run lease expired, or reconcile stopped it); ``neo stop`` gives
``stopped``; a run whose pods went away before anything could be read is ``lost`` with what is
already in its logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_neo.errors import NeoError
from jupyter_neo.identity import controller_alive
from jupyter_neo.model import Reservation, Run, RunState, utcnow
from jupyter_neo.runs.logs import RunLogs, failed_ranks
from jupyter_neo.runs.supervisor import EXIT_INTERRUPTED, EXIT_LOST, shell_code, stop_launchers

if TYPE_CHECKING:
    from jupyter_neo.hosts import RunHost

CONNECT_TIMEOUT = 15.0
SETTLE_TIMEOUT = 120.0
STREAMS = ("stdout", "stderr")
POD_STOPPING = "pod stopping: "  # the agent's reason for processes it stopped on its own exit

# Reads a launcher's output and exit record from a pod whose agent is gone (fixed code, run as
# ``python -c DUMP PROCDIR OFFSET_STDOUT OFFSET_STDERR``): one JSON line, then the bytes.
DUMP = r"""
import json, os, sys
d = sys.argv[1]
parts = []
for name, off in (("stdout", sys.argv[2]), ("stderr", sys.argv[3])):
    try:
        with open(os.path.join(d, name), "rb") as f:
            f.seek(int(off))
            parts.append(f.read())
    except (OSError, ValueError):
        parts.append(b"")
try:
    with open(os.path.join(d, "exit.json")) as f:
        end = json.load(f)
except (OSError, ValueError):
    end = None
out = sys.stdout.buffer
out.write(json.dumps({"exit": end, "found": os.path.isdir(d), "sizes": [len(p) for p in parts]}).encode() + b"\n")
for p in parts:
    out.write(p)
out.flush()
"""


def unsupervised(run: Run) -> bool:
    """True when no live process watches ``run``: detached, or its controller is gone."""
    if run.detached:
        return True
    who = run.controller or {}
    pid = who.get("pid")
    return not controller_alive(int(pid) if pid is not None else None, who.get("started"))


async def settle_open_runs(host: RunHost, res: Reservation | None = None, ending: str | None = None) -> None:
    """Settle every unsupervised open run (of ``res`` only, when given); never raises.

    ``ending``: the reservation is being given back for this reason, so the runs end now.
    """
    for run in host.store.open_runs():
        if res is not None and run.reservation != res.id:
            continue
        if not unsupervised(run):
            continue
        with contextlib.suppress(NeoError, OSError, TimeoutError):
            await asyncio.wait_for(settle(host, run, ending=ending), SETTLE_TIMEOUT)


class _Node:
    """What one node's launcher left: its output (from ``offsets``) and how it ended."""

    def __init__(self) -> None:
        self.chunks: dict[str, bytes] = {s: b"" for s in STREAMS}
        self.returncode: int | None = None
        self.reason: str | None = None
        self.ended = False
        self.readable = False


async def settle(
    host: RunHost, run: Run, *, ending: str | None = None, stop_reason: str | None = None
) -> Run:
    """Bring ``run``'s record up to date from its pods; stop it first if it must end now.

    ``stop_reason``: a user asked to stop it (``neo stop``). A detached run that is still going
    and has no reason to end only gets its logs brought up to date.
    """
    res = host.store.reservation(run.reservation)
    if run.hot:
        return _record(host, run, RunState.LOST, EXIT_LOST, "its controller exited during this hot iteration")
    if not res.live:
        why = f"reservation {res.id} was released ({res.reason or 'no reason recorded'}) before this run's end was seen"
        return _record(
            host, run, RunState.LOST, EXIT_LOST, f"{why}; its output up to then is in {run.log_dir}"
        )
    names = [f"{run.id}-n{n}" for n in range(run.nodes)]
    conns: list[Any] | None
    try:
        conns = await asyncio.wait_for(host.connect(res), CONNECT_TIMEOUT)
    except (NeoError, OSError, TimeoutError):
        conns = None
    if conns is None and ending is None and stop_reason is None:
        return run  # pods unreachable right now: reconcile releases a gang whose pods are gone
    stopped_by_us = False
    if conns is not None:
        states = await asyncio.gather(*(_proc_state(c, n) for c, n in zip(conns, names, strict=True)))
        still = any(s is not None and s.get("returncode") is None for s in states)
        if still and run.detached and ending is None and stop_reason is None:
            await _collect(host, res, run, conns, final=False)
            host.store.save_run(run)
            return run
        if still:
            await stop_launchers({n: (conns[n], names[n]) for n in range(run.nodes)})
            stopped_by_us = True
    nodes, logs = await _collect(host, res, run, conns, final=True)
    return _conclude(
        host, run, nodes, logs=logs, stopped_by_us=stopped_by_us, ending=ending, stop_reason=stop_reason
    )


async def _proc_state(conn: Any, name: str) -> dict[str, Any] | None:
    try:
        procs = (await asyncio.wait_for(conn.call("procs"), CONNECT_TIMEOUT))["procs"]
    except (NeoError, OSError, TimeoutError, KeyError, TypeError):
        return None
    return next((p for p in procs if isinstance(p, dict) and p.get("proc") == name), None)


async def _collect(
    host: RunHost, res: Reservation, run: Run, conns: list[Any] | None, final: bool
) -> tuple[list[_Node], RunLogs]:
    """Read each node's new output (agent, else the pod's files) into the rank logs."""
    names = [f"{run.id}-n{n}" for n in range(run.nodes)]
    first = not run.collected
    offsets = [dict(run.collected.get(str(n), {})) for n in range(run.nodes)]
    nodes = await asyncio.gather(
        *(
            _read_node(host, res, n, name=names[n], conn=conns[n] if conns else None, offsets=offsets[n])
            for n in range(run.nodes)
        )
    )
    log_dir = Path(run.log_dir)
    if first and any(node.readable for node in nodes):
        # The dead controller's copy stops mid-way: rebuild every log from the pods' full record.
        for old in [*log_dir.glob("rank*.log"), *log_dir.glob("node*.log")]:
            old.unlink(missing_ok=True)
    logs = RunLogs(log_dir, lambda *a: None, plain=run.launcher == "plain")
    for n, node in enumerate(nodes):
        for stream in STREAMS:
            logs.feed(n, stream, node.chunks[stream])
            # A line still open stays in the pod: the next collection reads it again, whole.
            rest = 0 if final else logs.unfinished(n, stream)
            offsets[n][stream] = offsets[n].get(stream, 0) + len(node.chunks[stream]) - rest
    logs.close(finish_lines=final)
    run.collected = {str(n): offsets[n] for n in range(run.nodes) if nodes[n].readable or offsets[n]}
    return list(nodes), logs


async def _read_node(
    host: RunHost, res: Reservation, node: int, *, name: str, conn: Any, offsets: dict[str, int]
) -> _Node:
    out = _Node()
    if conn is not None:
        with contextlib.suppress(NeoError, OSError, TimeoutError, KeyError, TypeError):
            state = await _proc_state(conn, name)
            if state is not None:

                def take(header: dict[str, Any], payload: bytes) -> None:
                    stream = str(header.get("stream"))
                    if stream in out.chunks:
                        out.chunks[stream] += payload

                await asyncio.wait_for(
                    conn.request("attach", proc=name, offsets=offsets, follow=False, on_event=take),
                    SETTLE_TIMEOUT,
                )
                out.returncode = state.get("returncode")
                out.reason = state.get("reason")
                out.ended = state.get("returncode") is not None
                out.readable = True
                return out
    # The agent is gone: read the files it left in the pod through the backend's own stream.
    with contextlib.suppress(NeoError, OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
        await asyncio.wait_for(
            _read_files(host, res, node, name=name, offsets=offsets, out=out), CONNECT_TIMEOUT * 2
        )
    return out


async def _read_files(
    host: RunHost, res: Reservation, node: int, *, name: str, offsets: dict[str, int], out: _Node
) -> None:
    backend = host.backend(res.cluster)
    pod = res.pods[node]
    argv = [
        backend.python(pod),
        "-c",
        DUMP,
        f"{backend.agent_dir(pod)}/procs/{name}",
        str(int(offsets.get("stdout", 0))),
        str(int(offsets.get("stderr", 0))),
    ]
    stream = await backend.open_stream(pod, argv)
    try:
        head = json.loads(await stream.reader.readline())
        if not head.get("found"):
            return
        for s, size in zip(STREAMS, head["sizes"], strict=True):
            out.chunks[s] = await stream.reader.readexactly(int(size))
        end = head.get("exit") or {}
        out.returncode = end.get("returncode")
        out.reason = end.get("reason")
        out.ended = True
        out.readable = True
    finally:
        await stream.close()


def _conclude(
    host: RunHost,
    run: Run,
    nodes: list[_Node],
    *,
    logs: RunLogs,
    stopped_by_us: bool,
    ending: str | None,
    stop_reason: str | None,
) -> Run:
    codes = {n: node.returncode for n, node in enumerate(nodes)}
    per_node = 1 if run.launcher == "plain" else run.nproc_per_node
    failed: dict[int, int] = {}
    for n in range(run.nodes):
        failed.update(failed_ranks(list(logs.node_tails.get(n, []))))
    for rank in run.ranks:
        code = codes.get(rank.node)
        if code == 0:
            rank.state, rank.exit_code = RunState.SUCCEEDED, 0
        elif rank.rank in failed:
            rank.state, rank.exit_code = RunState.FAILED, failed[rank.rank]
        else:
            rank.state = RunState.STOPPED
    if all(code == 0 for code in codes.values()) and not stopped_by_us:
        return _record(host, run, RunState.SUCCEEDED, 0, None)
    bad = next((n for n, c in codes.items() if c is not None and c != 0), None)
    bad_code = codes.get(bad) if bad is not None else None
    code = shell_code(bad_code) if bad_code is not None else EXIT_LOST
    agent_reason = next((node.reason for node in nodes if node.reason), None)
    culprit = next(iter(failed), None)
    if culprit is None and bad is not None:
        culprit = bad * per_node
    lines = list(logs.tails.get(culprit, []))[-20:] if culprit is not None else []
    lines = lines or list(logs.node_tails.get(bad or 0, []))[-20:]
    tail = ("\n" + "\n".join(lines)) if lines else ""
    pod_stop = (agent_reason or "").startswith(POD_STOPPING)
    if stop_reason:
        return _record(host, run, RunState.STOPPED, EXIT_INTERRUPTED, stop_reason + tail)
    if ending and (stopped_by_us or pod_stop):
        return _record(host, run, RunState.STOPPED, code, f"the reservation was given back ({ending}){tail}")
    if pod_stop:
        why = (agent_reason or "")[len(POD_STOPPING) :]
        return _record(host, run, RunState.STOPPED, code, f"its pods stopped it ({why}){tail}")
    if run.detached and not stopped_by_us:
        run.failed_node, run.failed_rank = bad, culprit
        where = f"rank {culprit}" if culprit is not None else f"node {bad}"
        return _record(host, run, RunState.FAILED, code, f"{where} failed{tail}")
    pid = (run.controller or {}).get("pid")
    who = f"its controller (pid {int(pid)})" if pid is not None else "its controller"
    how = agent_reason or ("every rank was stopped" if stopped_by_us else "no exit code was recorded")
    if not any(node.readable for node in nodes):
        how += "; the pods' record of it could not be read"
    return _record(host, run, RunState.LOST, code, f"{who} exited before the run ended; {how}{tail}")


def _record(host: RunHost, run: Run, state: RunState, code: int, error: str | None) -> Run:
    run.state = state
    run.exit_code = code
    run.ended = run.ended or utcnow()
    if error:
        run.error = error
    for rank in run.ranks:
        if rank.state in (RunState.STARTING, RunState.RUNNING):
            rank.state = RunState.SUCCEEDED if state is RunState.SUCCEEDED else RunState.STOPPED
    host.store.save_run(run)
    return run
