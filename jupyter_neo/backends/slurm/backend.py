"""The Slurm backend: a reservation is one Slurm allocation, a pod is one node of it.

Lifecycle, and why each step is shaped the way it is:

* **allocate** - the pending record is saved *before* ``salloc --no-shell -N n --gres=gpu:g
  --job-name=neo-<store>-<reservation>`` is submitted, so a controller killed while Slurm keeps the
  gang pending leaves a record the next command rolls back (and the job is found by its name, its
  id is not known yet). All-or-nothing is Slurm's own: a job starts on every node or on none. While
  the job pends, its ``squeue`` reason is reported; past ``pending_timeout`` the job is cancelled,
  verified gone, and NoCapacity names the reason. Leader = first node of the allocation.
* **start** - per node: install the agent zip (one ``srun`` step, zip on stdin), start the
  *keeper* step detached from this process (``setsid -f srun ... python3 -c KEEPER``), and wait
  until its agent answers on its socket. The agent must live inside a step that outlives every
  stream: with ``proctrack/cgroup`` (every production site) Slurm kills all processes of a step
  when it ends, so an agent started by a short-lived stream step would die with the stream.
* **open_stream** - ``srun --jobid J --overlap -N1 -n1 -w NODE --unbuffered python3 -c STUB ...``:
  an overlapping step whose stdio is the byte stream; the stub relays to the keeper's agent.
* **release** - ``scancel`` (by id and by name), then poll ``squeue`` until the job is gone.
  When an agent stops by itself (idle TTL, lease), its keeper cancels the whole allocation, so GPUs
  go back to Slurm with no controller running; the allocation's ``--time`` is the last backstop.
* **reconcile** - this store's jobs with no active reservation are cancelled; active reservations
  whose job left ``squeue`` are reported lost, with Slurm's state (NODE_FAIL, TIMEOUT...).

Pods live under ``base_dir/<reservation>/<node>/`` on each node: node-local, and distinct even
where nodes share a filesystem (the in-repo test cluster; NFS home directories).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import re
import time
from pathlib import Path
from typing import Any

from jupyter_neo.backends.base import NodeDirBackend, report_progress
from jupyter_neo.backends.handles import SlurmHandle, handle_of
from jupyter_neo.backends.slurm.commands import Completed, LocalSlurmCommands, SlurmCommands, login_commands
from jupyter_neo.backends.slurm.options import SlurmOptions, parse_options, slurm_minutes
from jupyter_neo.config import Config
from jupyter_neo.errors import BackendError, ConfigError, NoCapacity
from jupyter_neo.identity import controller_identity
from jupyter_neo.model import Cluster, Pod, Reservation, ReservationState, utcnow
from jupyter_neo.store import Store
from jupyter_neo.transport.bundle import INSTALL, agent_bundle
from jupyter_neo.transport.streams import ByteStream

JOB_PREFIX = "neo-"
_GRANTED_RE = re.compile(r"Granted job allocation (\d+)")
_QUEUED_RE = re.compile(r"(?:Pending job allocation|job) (\d+)")
_GRES_RE = re.compile(r"^([^:(]+)(?::([^:(]+))?:(\d+)")
_COMMENT_RE = re.compile(r"\bComment=neo: (.*?)(?=\s+[A-Za-z]+=|$)", re.M)
POLL_S = 0.5
AGENT_START_S = 30.0
GONE_TIMEOUT_S = 20.0
# Node states that can take no new job (sinfo's compact names; '*' = not responding).
_UNUSABLE = ("down", "drain", "fail", "maint", "inval", "boot", "powered", "powering", "reboot")

# The keeper: the agent's parent for the reservation's life, inside its own step. When the agent
# stops by itself (idle TTL, lease) it records why on the job and cancels the allocation, so the
# GPUs go back to Slurm with no controller; it always removes the pod's node-local directory.
KEEPER = r"""
import json, os, shutil, signal, subprocess, sys
d, z, top = sys.argv[1], sys.argv[2], sys.argv[3]
with open(os.path.join(d, "keeper.log"), "ab") as log:
    agent = subprocess.Popen([sys.executable, z, "serve", d], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
killed = []
def stop(sig, frame):
    killed.append(sig)
    try:
        agent.send_signal(signal.SIGTERM)
    except OSError:
        pass
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
agent.wait()
try:
    with open(os.path.join(d, "exit.json")) as f:
        reason = json.load(f)["reason"]
except (OSError, ValueError, KeyError):
    reason = "agent exited with status %s" % agent.returncode
shutil.rmtree(top, ignore_errors=True)
try:
    os.rmdir(os.path.dirname(top))
except OSError:
    pass
job = os.environ.get("SLURM_JOB_ID")
if job and not killed and reason != "shutdown requested":
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        subprocess.call(["scontrol", "update", "JobId=" + job, "Comment=neo: " + reason[:200]], **quiet)
        subprocess.call(["scancel", job], **quiet)
    except OSError:
        pass
"""

# Waits until the agent in AGENT_DIR accepts connections, then prints the GPUs Slurm gave the node.
PROBE = r"""
import os, socket, sys, time
d, limit = sys.argv[1], float(sys.argv[2])
end = time.time() + limit
while True:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.chdir(d)
        s.connect("agent.sock")
        break
    except OSError:
        if time.time() > end:
            sys.exit("neo: the agent did not start within %ss; see %s/keeper.log" % (limit, d))
        time.sleep(0.02)
    finally:
        s.close()
print(os.environ.get("CUDA_VISIBLE_DEVICES") or os.environ.get("SLURM_STEP_GPUS") or "")
"""


class SlurmBackend(NodeDirBackend):
    """Gangs as Slurm allocations, pods reached with ``srun --overlap``."""

    handle_type = SlurmHandle

    def __init__(self, cluster: Cluster, config: Config, store: Store) -> None:
        super().__init__(cluster, config, store)
        self.options: SlurmOptions = parse_options(cluster.name, cluster.options)
        self.base_dir, self.remote_python = self.options.base_dir, self.options.python
        self.cmd: SlurmCommands = (
            login_commands(self.options.env, self.options.login, self.options.ssh_options)
            if self.options.login
            else LocalSlurmCommands(self.options.env)
        )
        conf = self.options.env.get("SLURM_CONF")
        if conf and not self.options.login and not Path(conf).is_file():
            # Slurm's clients retry a missing config for 60 s before they fail: say it at once.
            raise ConfigError(
                f"cluster {cluster.name!r}: options.env.SLURM_CONF: {conf} does not exist on this machine",
                "point it at the cluster's slurm.conf, or leave it out where Slurm is configured in /etc/slurm",
            )
        self.job_prefix = job_prefix(store.path)

    # ------------------------------------------------------------------ names and places
    def job_name(self, rid: str) -> str:
        return f"{self.job_prefix}{rid}"

    def _rid_of(self, job_name: str) -> str | None:
        return job_name[len(self.job_prefix) :] if job_name.startswith(self.job_prefix) else None

    @staticmethod
    def _jobs(res: Reservation) -> list[str]:
        """The Slurm job ids ``res``'s pods are in (none while it waits for its allocation)."""
        return sorted({str(p.handle.job) for p in res.pods if isinstance(p.handle, SlurmHandle)})

    def _step(self, pod: Pod, *argv: str) -> list[str]:
        """``srun`` for one task on ``pod``'s node inside its allocation, sharing its resources."""
        handle = handle_of(pod, SlurmHandle)
        return [
            "srun", f"--jobid={handle.job}", "--overlap", "-N1", "-n1", "-w", handle.node,
            "--quiet", "--kill-on-bad-exit=0", *argv,
        ]  # fmt: skip

    # ------------------------------------------------------------------ capacity
    async def free_gpus(self) -> int:
        """GPUs not allocated on usable nodes of the partition, from ``sinfo`` (what ``neo clusters`` shows)."""
        argv = ["sinfo", "-h", "-N", "-O", "NodeHost:|,Gres:|,GresUsed:|,StateCompact:|"]
        if self.options.partition:
            argv[2:2] = ["-p", self.options.partition]
        out = self._check(await self.cmd.run(argv), "sinfo")
        gres_name, _, gres_type = self.options.gres.partition(":")
        free: dict[str, int] = {}
        for line in out.stdout.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) < 4 or not parts[0]:
                continue
            node, total, used, state = parts[:4]
            if state.endswith("*") or state.lower().startswith(_UNUSABLE):
                free[node] = 0
                continue
            free[node] = max(
                0, _gres_count(total, gres_name, gres_type) - _gres_count(used, gres_name, gres_type)
            )
        return sum(free.values())

    # ------------------------------------------------------------------ allocate
    def _salloc_argv(self, res: Reservation) -> list[str]:
        o = self.options
        argv = [
            "salloc", "--no-shell", f"--nodes={res.nodes}", "--ntasks-per-node=1",
            f"--gres={o.gres}:{res.gpus_per_node}", f"--job-name={self.job_name(res.id)}",
        ]  # fmt: skip
        for flag, value in (
            ("--partition", o.partition),
            ("--account", o.account),
            ("--qos", o.qos),
            ("--time", self._time_limit(res)),
            ("--constraint", o.constraint),
        ):
            if value:
                argv.append(f"{flag}={value}")
        return [*argv, *o.salloc_args]

    def _time_limit(self, res: Reservation) -> str | None:
        """The allocation's ``--time``: the configured limit, shortened to the reservation's deadline.

        A budget becomes a deadline that the agent enforces; Slurm's time limit enforces it too,
        so the GPUs are returned on time even if every agent is gone.
        """
        limit = self.options.time_limit
        if res.deadline is None:
            return limit
        minutes = max(1, math.ceil((res.deadline - utcnow()).total_seconds() / 60))
        configured = slurm_minutes(limit) if limit else None
        return limit if configured is not None and configured <= minutes else str(minutes)

    async def allocate(self, res: Reservation) -> None:
        """Submit the gang as one allocation and wait for Slurm to start it on every node.

        The pending record is saved first (see the module docstring). On timeout, error or
        cancellation the job is cancelled and verified gone and the record marked released, so a
        failed allocate holds nothing, as the contract asks.
        """
        self.store.save_reservation(res, **controller_identity())
        try:
            job = await self._wait_granted(res)
            nodes = await self._job_nodes(job)
            addrs = await self._node_addrs(nodes)
            res.pods = [
                Pod(
                    name=f"{res.id}-{rank}-{node}",  # the node in the name: errors then say where
                    rank=rank,
                    address=addrs[node],
                    gpus=list(range(res.gpus_per_node)),
                    handle=SlurmHandle(job=job, node=node, dir=self.pod_dir(res.id, res.owner, node)),
                )
                for rank, node in enumerate(nodes)
            ]
            self.store.save_reservation(res, **controller_identity())
        except BaseException as exc:
            await asyncio.shield(self.abandon(res, exc))
            raise

    async def _wait_granted(self, res: Reservation) -> int:
        """Run ``salloc --no-shell`` and return the job id once Slurm starts the whole gang."""
        name = self.job_name(res.id)
        timeout = self.options.pending_timeout_s
        proc = await self.cmd.spawn(
            self._salloc_argv(res), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None and proc.stdout is not None
        stderr: list[str] = []
        job_box: list[int] = []

        async def read_stderr() -> None:
            assert proc.stderr is not None
            while line := await proc.stderr.readline():
                text = line.decode(errors="replace").strip()
                stderr.append(text)
                if not job_box and (m := _QUEUED_RE.search(text) or _GRANTED_RE.search(text)):
                    job_box.append(int(m.group(1)))

        reader = asyncio.ensure_future(read_stderr())
        started = time.monotonic()
        last_reason = ""
        try:
            while True:
                try:
                    await asyncio.wait_for(asyncio.shield(proc.wait()), POLL_S)
                    break
                except TimeoutError:
                    pass
                waited = time.monotonic() - started
                state = await self._queue_state(name)
                if state and state != last_reason:
                    last_reason = state
                    report_progress(f"{self.cluster.name}: Slurm job {name} {state} ({waited:.0f}s)")
                if timeout and waited > timeout:
                    job = f" {job_box[0]}" if job_box else ""
                    raise NoCapacity(
                        f"cluster {self.cluster.name!r}: Slurm did not start the gang of {res.nodes} "
                        f"node(s) x {res.gpus_per_node} GPU(s) within {timeout:g}s; job{job} was "
                        f"{last_reason or 'PENDING'}, cancelled",
                        "release other jobs (squeue --me), ask for fewer nodes, or raise "
                        "options.pending_timeout",
                    )
            await reader
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()  # salloc cancels its own pending job on SIGTERM
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(proc.wait()), 5)
            reader.cancel()
        text = "\n".join(stderr)
        granted = _GRANTED_RE.search(text)
        if proc.returncode == 0 and granted:
            return int(granted.group(1))
        raise self._submit_error(res, text)

    def _submit_error(self, res: Reservation, text: str) -> Exception:
        """Turn salloc's refusal into the error type a user can act on."""
        last = text.strip().splitlines()[-1] if text.strip() else "salloc failed"
        lowered = text.lower()
        where = f"cluster {self.cluster.name!r}"
        if any(w in lowered for w in ("invalid partition", "invalid account", "invalid qos", "invalid feature",
                                      "invalid generic resource", "invalid gres", "unrecognized option",
                                      "invalid time limit", "invalid constraint")):  # fmt: skip
            return ConfigError(f"{where}: Slurm refused the request: {last}", "check the cluster's options")
        if "requested node configuration is not available" in lowered or "node count" in lowered:
            return NoCapacity(
                f"{where}: Slurm can never run {res.nodes} node(s) x {res.gpus_per_node} GPU(s) here: {last}",
                "ask for fewer nodes or GPUs per node (sinfo shows the partition)",
            )
        return BackendError(f"{where}: salloc failed: {last}", "check Slurm with: sinfo; squeue --me")

    async def _queue_state(self, name: str) -> str:
        out = await self.cmd.run(["squeue", "-h", "--me", "-n", name, "-o", "%T %r"], timeout=10)
        line = out.stdout.strip().splitlines()[0] if out.ok and out.stdout.strip() else ""
        state, _, reason = line.partition(" ")
        return f"{state} ({reason})" if reason and reason != "None" else state

    async def _job_nodes(self, job: int) -> list[str]:
        """The allocation's nodes in Slurm's order; the first is the leader (rank 0)."""
        out = self._check(await self.cmd.run(["squeue", "-h", "-j", str(job), "-o", "%N"]), "squeue")
        nodelist = out.stdout.strip()
        if not nodelist:
            raise BackendError(f"Slurm job {job} ended right after it started", "see: scontrol show job")
        hosts = self._check(await self.cmd.run(["scontrol", "show", "hostnames", nodelist]), "scontrol")
        return hosts.stdout.split()

    async def _node_addrs(self, nodes: list[str]) -> dict[str, str]:
        """Each node's NodeAddr: node names need not resolve where the controller runs."""
        out = self._check(await self.cmd.run(["scontrol", "-o", "show", "node", ",".join(nodes)]), "scontrol")
        addrs: dict[str, str] = {}
        for line in out.stdout.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if "NodeName" in fields:
                addrs[fields["NodeName"]] = fields.get("NodeAddr") or fields["NodeName"]
        return {n: addrs.get(n, n) for n in nodes}

    def _check(self, done: Completed, what: str) -> Completed:
        if not done.ok:
            hint = (
                "is SLURM_CONF right? set options.env.SLURM_CONF" if "conf" in done.detail().lower() else None
            )
            raise BackendError(
                f"cluster {self.cluster.name!r}: {what} failed: {done.detail()}",
                hint or "check Slurm with: sinfo",
            )
        return done

    # ------------------------------------------------------------------ pods
    async def start(self, res: Reservation) -> None:
        """Install the agent and start its keeper step on every node, in parallel."""
        await asyncio.gather(*(self._start_pod(res, pod) for pod in res.pods))

    async def _start_pod(self, res: Reservation, pod: Pod) -> None:
        bundle = agent_bundle()
        agent_dir = self.agent_dir(pod)
        zip_path = f"{agent_dir}/agent-{bundle.digest}.pyz"
        node = handle_of(pod, SlurmHandle).node
        py = self.python(pod)
        done = await self.cmd.run(
            self._step(pod, py, "-c", INSTALL, agent_dir, bundle.digest), stdin=bundle.data, timeout=60
        )
        if not done.ok:
            raise BackendError(f"{pod.name}: could not install the agent on node {node}: {done.detail()}")
        log = self.config.home / "slurm" / f"{res.id}-{node}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(
            self.cmd.start_detached,
            self._step(
                pod, "--job-name=neo-agent", py, "-c", KEEPER, agent_dir, zip_path, self.node_dir(pod)
            ),
            log,
        )
        probe = await self.cmd.run(
            self._step(pod, py, "-c", PROBE, agent_dir, str(AGENT_START_S)), timeout=AGENT_START_S + 30
        )
        if not probe.ok:
            tail = log.read_text(errors="replace").strip()[-500:] if log.exists() else ""
            raise BackendError(
                f"{pod.name}: the agent did not start on node {node}: {probe.detail()} {tail}".strip(),
                f"is {py!r} on the compute nodes' PATH? set options.python",
            )
        gpus = [int(g) for g in probe.stdout.strip().split(",") if g.strip().isdigit()]
        if gpus:
            pod.gpus = gpus

    async def open_stream(self, pod: Pod, argv: list[str]) -> ByteStream:
        step = self._step(pod, "--unbuffered", *argv)
        return await self.cmd.stream(step, label=f"slurm:{handle_of(pod, SlurmHandle).node}:{pod.name}")

    # ------------------------------------------------------------------ release
    async def release(self, res: Reservation) -> None:
        """``scancel`` the allocation (by id and by name) and wait until ``squeue`` no longer lists it."""
        name = self.job_name(res.id)
        jobs = self._jobs(res)
        await self.cmd.run(["scancel", f"--name={name}", *jobs], timeout=30)
        deadline = time.monotonic() + GONE_TIMEOUT_S
        while True:
            listed = await self.cmd.run(["squeue", "-h", "--me", "-n", name, "-o", "%i %T"], timeout=10)
            if listed.ok and not listed.stdout.strip():
                return
            if time.monotonic() > deadline:
                raise BackendError(
                    f"Slurm job {name} is still listed {GONE_TIMEOUT_S:g}s after scancel: "
                    f"{listed.stdout.strip() or listed.detail()}",
                    f"check with: squeue -n {name}; scancel {' '.join(jobs) or '--name=' + name}",
                )
            await asyncio.sleep(0.2)

    # ------------------------------------------------------------------ reconcile
    async def reconcile(self, known: dict[str, Reservation]) -> dict[str, str]:
        """Cancel this store's jobs that no active reservation owns; report active ones whose job ended."""
        out = await self.cmd.run(["squeue", "-h", "--me", "-o", "%i|%j|%T"], timeout=15)
        if not out.ok:
            return {}
        running: dict[str, tuple[str, str]] = {}
        for line in out.stdout.splitlines():
            job, _, rest = line.strip().partition("|")
            name, _, state = rest.partition("|")
            rid = self._rid_of(name)
            if rid is not None:
                running[rid] = (job, state)
        for rid, (job, _state) in running.items():
            res = known.get(rid)
            if res is None:
                # re-read: a concurrent controller saves its record before it submits
                with contextlib.suppress(Exception):
                    res = self.store.reservation(rid)
            if res is None or res.state is ReservationState.RELEASED:
                await self.cmd.run(["scancel", job], timeout=30)
        lost: dict[str, str] = {}
        for rid, res in known.items():
            if res.live and rid not in running:
                lost[rid] = await self._why_gone(res)
        return lost

    async def _why_gone(self, res: Reservation) -> str:
        job = next(iter(self._jobs(res)), "")
        if not job:
            return f"Slurm job {self.job_name(res.id)} is gone"
        info = await self.cmd.run(["scontrol", "-o", "show", "job", job], timeout=10)
        fields: dict[str, Any] = dict(f.split("=", 1) for f in info.stdout.split() if "=" in f)
        comment = _COMMENT_RE.search(info.stdout)  # set by the keeper: why the agent stopped itself
        if comment:
            return comment.group(1)
        state = fields.get("JobState")
        reason = fields.get("Reason")
        detail = f" ({state}{', ' + reason if reason and reason != 'None' else ''})" if state else ""
        return f"Slurm job {job} ended{detail}"


def job_prefix(store_path: Path) -> str:
    """``neo-<store hash>-``: the start of every job name this state store submits.

    The store's identity is in it so that two controllers (two NEO_HOMEs) of one Slurm user never
    cancel each other's gangs as "orphans" during reconcile.
    """
    return f"{JOB_PREFIX}{hashlib.sha256(str(store_path.resolve()).encode()).hexdigest()[:6]}-"


def _gres_count(spec: str, name: str, gres_type: str) -> int:
    """GPUs in a sinfo GRES column (``gpu:8``, ``gpu:h100:8(S:0-1)``, ``gpu:2(IDX:0-1),shard:4``)."""
    total = 0
    for item in re.split(r",(?![^()]*\))", spec):
        m = _GRES_RE.match(item.strip())
        if m and m.group(1) == name and (not gres_type or m.group(2) == gres_type):
            total += int(m.group(3))
    return total
