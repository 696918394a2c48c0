"""The resident pod agent: applies files, runs processes, streams their output, enforces the lease.

One agent runs per pod, listening on ``AGENT_DIR/agent.sock``; each controller connection arrives
through :func:`neo_agent.boot.relay`. The first connection *claims* the agent with the reservation
secret, its labels, base environment and lease; every later connection must answer an HMAC
challenge with that secret. The agent enforces its lease by itself (idle TTL and hard deadline), so
a closed laptop or a killed controller never leaks a pod: at expiry it stops every process group it
started and exits.
"""

import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from neo_agent import AGENT_VERSION, PROTOCOL_VERSION, reaper, validate
from neo_agent import protocol as wire
from neo_agent.validate import FieldError

STOP_GRACE = 3.0
LEASE_TICK = 0.25
PIPE_POLL = 0.2
# A connection must authenticate this soon after ``hello``: a silent peer holds nothing for long.
HANDSHAKE_TIMEOUT = 10.0


class RequestError(Exception):
    """An error answered to the controller as ``{ok: false, error, code}``."""

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


def _now() -> float:
    return time.time()


class Proc:
    """A process group started by the agent, with its output kept on disk and fanned out live."""

    def __init__(
        self, pid_id: str, argv: List[str], log_dir: str, popen: "asyncio.subprocess.Process"
    ) -> None:
        self.id = pid_id
        self.argv = argv
        self.popen = popen
        self.pid = popen.pid
        self.started = _now()
        self.ended: Optional[float] = None
        self.returncode: Optional[int] = None
        self.log_dir = log_dir
        self.sizes = {"stdout": 0, "stderr": 0}
        self.subscribers: Set["asyncio.Queue[Any]"] = set()
        self.done = asyncio.Event()
        self.keeps_alive = True  # False: an idle warm worker, stopped at idle expiry like the pod
        self.stopped = False  # a controller asked to stop it (neo stop, Stop buttons, DELETE /runs/ID)
        self.lease: Optional[float] = None  # run lease: stop unless heartbeated within this many s
        self.heartbeat = self.started
        self.last_output = self.started
        self.end_reason: Optional[str] = None  # why the agent stopped it (run lease, shutdown)
        self.log_error: Optional[str] = None  # the pod's disk refused the output (kept streaming)
        self.cgroup: Optional[str] = None

    def describe(self) -> Dict[str, Any]:
        return {
            "proc": self.id,
            "pid": self.pid,
            "argv": self.argv,
            "started": self.started,
            "ended": self.ended,
            "returncode": self.returncode,
            "bytes": dict(self.sizes),
            "stopped": self.stopped,
            "lease": self.lease,
            "reason": self.end_reason,
            "log_error": self.log_error,
        }


class Agent:
    def __init__(self, agent_dir: str) -> None:
        self.dir = os.path.abspath(agent_dir)
        self.secret: Optional[str] = None
        self.labels: Dict[str, str] = {}
        self.env: Dict[str, str] = {}
        self.workspace = ""
        self.idle_ttl: Optional[float] = None
        self.deadline: Optional[float] = None
        self.last_activity = _now()
        self.procs: Dict[str, Proc] = {}
        self.seq = 0  # processes launched so far (op_exec); the workspace reads it too
        self.server: Optional[asyncio.AbstractServer] = None
        self.stopping: Optional[asyncio.Future] = None  # type: ignore[type-arg]
        self.cgroups: Optional[reaper.Cgroups] = None
        self.spawning = 0  # launchers forked but not yet registered: not orphans
        self._background: Set["asyncio.Future[Any]"] = set()
        self.handlers = {
            "ping": self.op_ping,
            "info": self.op_info,
            "touch": self.op_touch,
            "lease": self.op_lease,
            "put": self.op_put,
            "get": self.op_get,
            "list": self.op_list,
            "exec": self.op_exec,
            "attach": self.op_attach,
            "signal": self.op_signal,
            "wait": self.op_wait,
            "procs": self.op_procs,
            "stats": self.op_stats,
            "free_port": self.op_free_port,
            "resolve": self.op_resolve,
            "hot_gen": self.op_hot_gen,
            "heartbeat": self.op_heartbeat,
            "shutdown": self.op_shutdown,
        }
        self.extra_ops()

    def extra_ops(self) -> None:
        """Register the operations of optional modules (sync) when they are shipped."""
        import importlib

        for name in ("neo_agent.workspace_ops", "neo_agent.relay_ops", "neo_agent.px_ops"):
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            module.register(self)

    def _spawn(self, coro: Any) -> None:
        """Run a background task and keep a reference to it (the loop holds only weak ones)."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---------------------------------------------------------------- connection handling
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonce = secrets.token_hex(16)
        send = self._sender(writer)
        send(
            {
                "op": "hello",
                "protocol": PROTOCOL_VERSION,
                "version": AGENT_VERSION,
                "pid": os.getpid(),
                "claimed": self.secret is not None,
                "nonce": nonce,
            }
        )
        tasks: Set["asyncio.Task[None]"] = set()
        try:
            first = await self._first_frame(reader, send)
            if first is None or not self._authenticate(first[0], nonce):
                send(
                    {
                        "id": first[0].get("id") if first else None,
                        "ok": False,
                        "code": "auth",
                        "error": "authentication failed",
                    }
                )
                await writer.drain()
                return
            send({"id": first[0].get("id"), "ok": True, "labels": self.labels})
            while True:
                frame = await wire.read_frame(reader)
                if frame is None:
                    break
                task = asyncio.ensure_future(self._dispatch(frame[0], frame[1], send))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await writer.drain()
        except (wire.ProtocolError, ConnectionError):
            pass
        finally:
            for task in list(tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                writer.close()

    async def _first_frame(self, reader: asyncio.StreamReader, send: Any) -> Optional[wire.Frame]:
        """The unauthenticated first frame: small, without payload, and within the handshake timeout.

        Until a peer proves it holds the secret it can make the agent buffer only a few KiB
        (a claim, which carries the pod's environment, is allowed more on an unclaimed agent)
        and hold a connection only for :data:`HANDSHAKE_TIMEOUT` seconds.
        """
        limit = wire.CLAIM_HEADER if self.secret is None else wire.PREAUTH_HEADER
        try:
            return await asyncio.wait_for(wire.read_frame(reader, limit, 0), HANDSHAKE_TIMEOUT)
        except asyncio.TimeoutError:
            send(
                {
                    "id": None,
                    "ok": False,
                    "code": "auth",
                    "error": "no authentication within %gs" % HANDSHAKE_TIMEOUT,
                }
            )
        except wire.ProtocolError as exc:
            send({"id": None, "ok": False, "code": "auth", "error": "before authentication: %s" % exc})
        return None

    def _sender(self, writer: asyncio.StreamWriter) -> Any:
        def send(header: Dict[str, Any], payload: bytes = b"") -> None:
            if not writer.is_closing():
                writer.write(wire.encode(header, payload))

        return send

    def _authenticate(self, header: Dict[str, Any], nonce: str) -> bool:
        op = header.get("op")
        if op == "claim" and self.secret is None:
            secret = header.get("secret")
            if not isinstance(secret, str) or len(secret) < 16:
                return False
            try:
                labels = validate.string_map(header, "labels", 64)
                env = validate.string_map(header, "env")
                workspace = validate.text(header, "workspace", os.path.join(self.dir, "ws"), 4096)
                idle_ttl, deadline = _lease_fields(header)
            except FieldError:
                return False
            self.secret = secret
            self.labels, self.env = labels, env
            self.workspace = os.path.abspath(workspace)
            self.idle_ttl, self.deadline = idle_ttl, deadline
            self.last_activity = _now()
            os.makedirs(os.path.join(self.workspace, "gens", "0"), mode=0o700, exist_ok=True)
            os.chmod(self.workspace, 0o700)  # the user's code: owner-only whatever the umask
            current = os.path.join(self.workspace, "current")
            if not os.path.lexists(current):
                os.symlink(os.path.join("gens", "0"), current)
            self._write_json(
                "agent.json", {"pid": os.getpid(), "labels": self.labels, "workspace": self.workspace}
            )
            return True
        if op == "claim" and self.secret is not None:
            # Re-claiming with the same secret is allowed (a controller retrying its reserve).
            return wire.mac_ok(self.secret, nonce, wire.auth_mac(str(header.get("secret", "")), nonce))
        if op == "auth" and self.secret is not None:
            return wire.mac_ok(self.secret, nonce, str(header.get("mac", "")))
        return False

    async def _dispatch(self, header: Dict[str, Any], payload: bytes, send: Any) -> None:
        rid = header.get("id")
        op = header.get("op")
        handler = self.handlers.get(str(op))
        try:
            if handler is None:
                raise RequestError("unknown operation %r" % (str(op)[:64],), "unknown_op")
            if op not in ("ping", "info", "stats", "procs"):
                self.last_activity = _now()
            reply = await handler(header, payload, lambda h, p=b"": send(dict(h, id=rid), p))
            body, data = reply if isinstance(reply, tuple) else (reply, b"")
            send(dict(body or {}, id=rid, ok=True, done=True), data)
        except RequestError as exc:
            send({"id": rid, "ok": False, "done": True, "code": exc.code, "error": str(exc)})
        except FieldError as exc:
            send({"id": rid, "ok": False, "done": True, "code": "bad_request", "error": "%s: %s" % (op, exc)})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # report, never die on one bad request
            send(
                {
                    "id": rid,
                    "ok": False,
                    "done": True,
                    "code": "internal",
                    "error": "%s: %s" % (type(exc).__name__, exc),
                }
            )

    # ---------------------------------------------------------------- paths
    @property
    def current(self) -> str:
        return os.path.join(self.workspace, "current")

    @property
    def outputs(self) -> str:
        """Where runs keep what they write (``$NEO_OUTPUT_DIR``): next to the generations, not in
        one, so it survives every sync (a generation is the local tree and nothing else; what a
        run writes into its cwd is gone a few syncs later) and goes with the pod."""
        return os.path.join(self.workspace, "outputs")

    def resolve(self, rel: Any, base: Optional[str] = None, follow: bool = True) -> str:
        """Map a workspace-relative path to an absolute one, refusing anything that escapes.

        Resolved by the real filesystem (``realpath``), not lexically: a chain such as
        ``x/l1 -> ..`` and ``l2 -> x/l1/../../etc/hostname`` passes any check of the link texts
        but leads out. With ``follow`` the returned path is the fully resolved one (for reading,
        and as a process's cwd); without, the final component is kept (``put`` replaces a link
        itself, never writes through it), and only its directory is resolved.
        """
        if not isinstance(rel, str) or "\x00" in rel or len(rel) > 4096:
            raise RequestError("path must be a string", "bad_path")
        root = os.path.realpath(base or self.current)
        if os.path.isabs(rel) or any(part == ".." for part in rel.replace("\\", "/").split("/")):
            raise RequestError("path %r is outside the workspace" % rel, "outside_workspace")
        path = os.path.normpath(os.path.join(root, rel))
        if follow:
            path = os.path.realpath(path)
            inside = path == root or path.startswith(root + os.sep)
        else:
            parent = os.path.realpath(os.path.dirname(path))
            inside = parent == root or parent.startswith(root + os.sep)
            path = os.path.join(parent, os.path.basename(path))
        if not inside:
            raise RequestError("path %r is outside the workspace" % rel, "outside_workspace")
        return path

    def _write_json(self, name: str, data: Dict[str, Any]) -> None:
        tmp = os.path.join(self.dir, name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, os.path.join(self.dir, name))

    # ---------------------------------------------------------------- simple operations
    async def op_ping(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        return {"time": _now()}

    async def op_info(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        return {
            "version": AGENT_VERSION,
            "protocol": PROTOCOL_VERSION,
            "python": sys.version.split()[0],
            "pid": os.getpid(),
            "labels": self.labels,
            "workspace": self.workspace,
            "idle_ttl": self.idle_ttl,
            "deadline": self.deadline,
            "last_activity": self.last_activity,
            "running": [p.id for p in self.procs.values() if p.returncode is None],
        }

    async def op_touch(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        return {"last_activity": self.last_activity}

    async def op_lease(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        idle_ttl, deadline = _lease_fields(h)  # both checked before either changes
        if "idle_ttl" in h:
            self.idle_ttl = idle_ttl
        if "deadline" in h:
            self.deadline = deadline
        return {"idle_ttl": self.idle_ttl, "deadline": self.deadline}

    async def op_put(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        path = self.resolve(h.get("path"), follow=False)
        mode = validate.mode(h.get("mode", 0o644))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = "%s.neo-%d.tmp" % (path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(p)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return {"size": len(p)}

    async def op_get(self, h: Dict[str, Any], p: bytes, emit: Any) -> Any:
        path = self.resolve(h.get("path"))
        try:
            # The resolved path has no link left: O_NOFOLLOW refuses one swapped in since.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RequestError("no such file: %s" % h.get("path"), "not_found") from None
        except OSError as exc:
            raise RequestError("cannot read %s: %s" % (h.get("path"), exc.strerror), "bad_path") from None
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise RequestError("%s is not a regular file" % h.get("path"), "bad_path")
            return {}, f.read()

    async def op_list(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        root = os.path.realpath(self.current)
        entries = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                full = os.path.join(dirpath, name)
                st = os.lstat(full)
                rel = os.path.relpath(full, root)
                entry: Dict[str, Any] = {"path": rel, "size": st.st_size, "mode": st.st_mode & 0o7777}
                if os.path.islink(full):
                    entry["type"] = "symlink"
                    entry["target"] = os.readlink(full)
                else:
                    entry["type"] = "file"
                entries.append(entry)
        return {"entries": entries}

    # ---------------------------------------------------------------- processes
    async def op_exec(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        argv = h.get("argv")
        if (
            not isinstance(argv, list)
            or not argv
            or not all(isinstance(a, str) and "\x00" not in a for a in argv)
        ):
            raise RequestError("argv must be a non-empty list of strings", "bad_argv")
        _check_exec_fields(h)
        cwd = self.resolve(h.get("cwd", "."), base=self.current) if h.get("cwd", ".") != "." else self.current
        env = dict(os.environ)
        env.update(self.env)
        env.update({str(k): str(v) for k, v in (h.get("env") or {}).items()})
        env["NEO_AGENT_DIR"] = self.dir
        env["NEO_WORKSPACE"] = self.current
        env["NEO_OUTPUT_DIR"] = self.outputs
        os.makedirs(self.outputs, exist_ok=True)  # here, not at claim: a run may have removed it
        self.seq += 1
        pid_id = str(h.get("name") or "p%d" % self.seq)
        env[TAG_VAR] = "%s:%s" % (self.dir, pid_id)
        if pid_id in self.procs and self.procs[pid_id].returncode is None:
            raise RequestError("process %r is still running" % pid_id, "conflict")
        lease = run_lease(h.get("lease"))
        log_dir = os.path.join(self.dir, "procs", pid_id)
        os.makedirs(log_dir, exist_ok=True)
        for stream in ("stdout", "stderr"):
            open(os.path.join(log_dir, stream), "wb").close()
        cgroup = self.cgroups.create("%d-%s" % (self.seq, pid_id)) if self.cgroups else None
        self.spawning += 1
        try:
            popen = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=launcher_setup(cgroup),
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            if cgroup:
                reaper.remove(cgroup)
            raise RequestError("cannot start %s: %s" % (argv[0], exc), "exec_failed") from None
        finally:
            self.spawning -= 1
        proc = Proc(pid_id, argv, log_dir, popen)
        proc.keeps_alive = not h.get("idle_ok")
        proc.lease = lease
        proc.cgroup = cgroup
        self.procs[pid_id] = proc
        self._write_json(
            os.path.join("procs", pid_id, "proc.json"),
            {"pid": proc.pid, "argv": argv, "lease": lease, "cgroup": cgroup},
        )
        self._spawn(self._pump(proc))
        return {"proc": pid_id, "pid": proc.pid}

    async def _pump(self, proc: Proc) -> None:
        async def copy(stream_name: str, stream: Optional[asyncio.StreamReader]) -> None:
            assert stream is not None
            log: Optional[Any] = None
            try:
                log = open(os.path.join(proc.log_dir, stream_name), "ab")  # noqa: SIM115 (outlives a block)
            except OSError as exc:
                proc.log_error = proc.log_error or str(exc)
            while True:
                chunk = await stream.read(1 << 16)
                if not chunk:
                    break
                proc.last_output = _now()
                if log is not None:
                    # A full disk must not stop the pump: the process would block on a full pipe
                    # and its exit would never be seen. Live readers still get every byte.
                    try:
                        log.write(chunk)
                        log.flush()
                        proc.sizes[stream_name] += len(chunk)
                    except OSError as exc:
                        proc.log_error = proc.log_error or str(exc)
                        with contextlib.suppress(OSError):
                            log.close()
                        log = None
                for queue in list(proc.subscribers):
                    queue.put_nowait((stream_name, chunk))
            if log is not None:
                with contextlib.suppress(OSError):
                    log.close()

        copies = asyncio.gather(copy("stdout", proc.popen.stdout), copy("stderr", proc.popen.stderr))
        # A process the launcher left behind may hold its pipes open forever (a daemon inheriting
        # stdout): the launcher's exit, not the pipes' end, ends the run.
        while not copies.done() and proc.popen.returncode is None:
            await asyncio.wait([copies], timeout=PIPE_POLL)
        if not copies.done():
            self._kill(proc, signal.SIGKILL)
            try:
                await asyncio.wait_for(asyncio.shield(copies), STOP_GRACE)
            except asyncio.TimeoutError:
                copies.cancel()
        returncode = proc.popen.returncode
        proc.returncode = returncode if returncode is not None else await proc.popen.wait()
        proc.ended = _now()
        self.last_activity = _now()
        # Reap anything the process left behind, in its group, in sessions of their own (torchrun
        # starts each worker in a new session) or adopted by the agent: no process survives a run.
        self._kill(proc, signal.SIGKILL)
        if proc.cgroup:
            reaper.remove(proc.cgroup, wait=0.5)
        with contextlib.suppress(OSError):
            self._write_json(
                os.path.join("procs", proc.id, "exit.json"),
                {"returncode": proc.returncode, "reason": proc.end_reason, "log_error": proc.log_error},
            )
        proc.done.set()
        for queue in list(proc.subscribers):
            queue.put_nowait(None)

    def _proc(self, h: Dict[str, Any]) -> Proc:
        proc = self.procs.get(str(h.get("proc")))
        if proc is None:
            raise RequestError("no such process %r" % h.get("proc"), "not_found")
        return proc

    async def op_attach(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        """Stream a process's output from the given offsets until it exits (or only the backlog)."""
        proc = self._proc(h)
        offsets = h.get("offsets") or {}
        if not isinstance(offsets, dict):
            raise FieldError("offsets must be an object")
        for stream_name in ("stdout", "stderr"):
            validate.integer(offsets, stream_name, 0)
        follow = validate.boolean(h, "follow", True)
        queue: "asyncio.Queue[Any]" = asyncio.Queue()
        # Backlog from disk and subscription happen without an await between them: nothing is lost.
        for stream_name in ("stdout", "stderr"):
            start = int(offsets.get(stream_name, 0))
            with open(os.path.join(proc.log_dir, stream_name), "rb") as f:
                f.seek(start)
                backlog = f.read(proc.sizes[stream_name] - start) if proc.sizes[stream_name] > start else b""
            if backlog:
                emit({"stream": stream_name}, backlog)
        if not follow or proc.done.is_set():
            return {"returncode": proc.returncode, "exited": proc.done.is_set(), "stopped": proc.stopped}
        proc.subscribers.add(queue)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                emit({"stream": item[0]}, item[1])
        finally:
            proc.subscribers.discard(queue)
        return {"returncode": proc.returncode, "exited": True, "stopped": proc.stopped}

    def _kill(self, proc: Proc, sig: int) -> bool:
        """Signal the process group; for SIGKILL, everything the proc started, however it hid.

        The tree is walked before the group is killed (a killed launcher's descendants move to
        the agent); the cgroup catches what forks meanwhile; the tag what left both long ago.
        """
        if sig != signal.SIGKILL:
            return self._killpg(proc.pid, sig)
        delivered = False
        if proc.returncode is None:
            delivered = reaper.kill_tree(proc.pid)
        if proc.cgroup:
            delivered = reaper.kill(proc.cgroup) or delivered
        delivered = self._killpg(proc.pid, sig) or delivered
        delivered = kill_tagged("%s:%s" % (self.dir, proc.id), sig) or delivered
        delivered = self.reap_orphans() > 0 or delivered
        return delivered

    def reap_orphans(self) -> int:
        """Kill and collect processes the agent adopted from launchers that are gone."""
        if self.spawning:
            return 0  # a launcher being started is a child in another session too
        live = {p.pid for p in self.procs.values() if p.returncode is None}
        return reaper.reap_orphans(live)

    def _killpg(self, pid: int, sig: int) -> bool:
        try:
            os.killpg(pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    async def op_signal(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        proc = self._proc(h)
        name = str(h.get("signal", "SIGTERM"))
        if name not in ("SIGTERM", "SIGINT", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGHUP", "SIGQUIT"):
            raise RequestError("signal %s is not allowed" % name, "bad_signal")
        sig = getattr(signal, name)
        if h.get("stop") and proc.returncode is None:
            # Marked before the signal lands, so whoever follows the process learns that its
            # end was asked for, not a crash. A user waits on a stop: the signal goes to every
            # process of the run at once (torchrun starts its workers in sessions of their own
            # and would forward it only after noticing).
            proc.stopped = True
            kill_tagged("%s:%s" % (self.dir, proc.id), sig)
        delivered = self._kill(proc, sig) if proc.returncode is None else False
        return {"delivered": delivered}

    async def op_wait(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        proc = self._proc(h)
        timeout = validate.number(h, "timeout", 0.0, 1e9)
        try:
            await asyncio.wait_for(proc.done.wait(), timeout)
        except asyncio.TimeoutError:
            return {"returncode": None, "exited": False}
        return {"returncode": proc.returncode, "exited": True}

    async def op_procs(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        return {"procs": [proc.describe() for proc in self.procs.values()]}

    async def op_stats(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        from neo_agent import stats

        out = await stats.collect(self.env.get("CUDA_VISIBLE_DEVICES", ""))
        # The lease as this agent enforces it, for live views' idle-release countdowns: seconds
        # since the last activity, and whether a running process keeps the pod from idling.
        out["idle_for"] = max(0.0, _now() - self.last_activity)
        out["busy"] = any(proc.returncode is None and proc.keeps_alive for proc in self.procs.values())
        out["idle_ttl"] = self.idle_ttl
        return out

    async def op_free_port(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        """A TCP port free on this pod right now (for torchrun's rendezvous on the leader)."""
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("", 0))
            return {"port": sock.getsockname()[1]}

    async def op_resolve(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        """Resolve a host name as this pod sees it: whether the rendezvous address reaches anyone."""
        import socket

        host = str(h.get("host", ""))
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            return {"host": host, "addresses": [], "error": str(exc)}
        return {"host": host, "addresses": sorted({str(i[4][0]) for i in infos}), "error": ""}

    async def op_hot_gen(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        """Tell a hot-reload session's workers to switch to generation ``gen`` (see neo_agent.hot)."""
        session = str(validate.name(h, "session") or "")
        gen = validate.integer(h, "gen")
        if not session:
            raise RequestError("bad session id", "bad_request")
        control = os.path.join(self.dir, "hot", session)
        os.makedirs(control, exist_ok=True)
        argv = h.get("argv")
        if argv is not None:
            if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
                raise RequestError("argv must be a non-empty list of strings", "bad_request")
            # Written before ``gen``: a worker that sees the new generation finds its entry point.
            tmp = os.path.join(control, "argv.tmp")
            with open(tmp, "w") as f:
                json.dump(argv, f)
            os.replace(tmp, os.path.join(control, "argv.json"))
        tmp = os.path.join(control, "gen.tmp")
        with open(tmp, "w") as f:
            f.write(str(gen))
        os.replace(tmp, os.path.join(control, "gen"))
        return {"control": control}

    async def op_heartbeat(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        """A controller still supervises these runs: renew their run leases (see :func:`run_lease`).

        ``lease`` (seconds, or null to detach) changes the lease of the named processes, so a
        controller that takes over a run (or lets it go on alone) says so in the same message.
        """
        names = h.get("procs")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RequestError("procs must be a list of process ids", "bad_request")
        change = "lease" in h
        lease = run_lease(h.get("lease")) if change else None
        now = _now()
        state = {}
        for name in names:
            proc = self.procs.get(name)
            if proc is None:
                state[name] = "unknown"
                continue
            if proc.returncode is None:
                proc.heartbeat = now
                if change:
                    proc.lease = lease
            state[name] = "running" if proc.returncode is None else "exited"
        return {"procs": state}

    def check_run_leases(self, now: float) -> None:
        """Stop every supervised process whose controller stopped heartbeating it."""
        for proc in list(self.procs.values()):
            if (
                proc.returncode is None
                and proc.lease is not None
                and proc.end_reason is None
                and now - proc.heartbeat > proc.lease
            ):
                proc.end_reason = "run lease expired: no heartbeat from its controller for %gs" % proc.lease
                self._spawn(self.stop_proc(proc))

    def holds_pod(self, now: float) -> bool:
        """Whether a running process keeps the pod from its idle TTL.

        A supervised process (run lease) does while its controller heartbeats it; a detached one
        (no lease) only while it shows life by writing output within the idle TTL, so a hung
        detached run cannot hold the gang forever. Idle-ok processes (warm hot workers) never do.
        """
        ttl = float(self.idle_ttl) if self.idle_ttl is not None else None
        for proc in self.procs.values():
            if proc.returncode is not None or not proc.keeps_alive:
                continue
            if proc.lease is not None or ttl is None or now - proc.last_output <= ttl:
                return True
        return False

    async def stop_proc(self, proc: Proc, grace: float = STOP_GRACE) -> None:
        """SIGTERM the group, wait ``grace``, then SIGKILL everything the process started."""
        self._killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.done.wait(), grace)
        except asyncio.TimeoutError:
            pass
        self._kill(proc, signal.SIGKILL)
        try:
            await asyncio.wait_for(proc.done.wait(), 2.0)
        except asyncio.TimeoutError:
            pass

    async def op_shutdown(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        purge = validate.boolean(h, "purge")
        asyncio.get_event_loop().call_later(0.05, self.begin_stop, "shutdown requested", purge)
        return {"stopping": True}

    # ---------------------------------------------------------------- lifecycle
    async def stop_processes(self, grace: float = STOP_GRACE, reason: str = "") -> None:
        running = [proc for proc in self.procs.values() if proc.returncode is None]
        for proc in running:
            proc.end_reason = proc.end_reason or reason or None
        await asyncio.gather(*(self.stop_proc(proc, grace) for proc in running))
        self.reap_orphans()

    def begin_stop(self, reason: str, purge: bool = False) -> None:
        if self.stopping is None:
            self.stopping = asyncio.ensure_future(self._stop(reason, purge))

    async def _stop(self, reason: str, purge: bool) -> None:
        # The record comes first, before the socket closes: a controller that sees its stream
        # drop and reconnects must find the pod ended (the boot stub then refuses to start a new
        # agent here, and reconcile reports why) rather than an empty directory to revive.
        with contextlib.suppress(OSError):
            self._write_json("exit.json", {"reason": reason, "time": _now()})
        if self.server is not None:
            self.server.close()
        await self.stop_processes(reason="pod stopping: %s" % reason)
        if self.cgroups is not None:
            self.cgroups.close()
        try:
            os.unlink(os.path.join(self.dir, "agent.sock"))
        except OSError:
            pass
        if purge and self.workspace:
            shutil.rmtree(self.workspace, ignore_errors=True)
        asyncio.get_event_loop().stop()

    async def watch_lease(self) -> None:
        """Enforce deadline, idle TTL and the claim timeout; one bad tick never ends the watch."""
        while self.stopping is None:
            await asyncio.sleep(LEASE_TICK)
            try:
                self._lease_tick()
            except Exception as exc:  # the watcher is the pod's only guard against leaking: keep it
                sys.stderr.write("neo-agent: lease check failed: %s: %s\n" % (type(exc).__name__, exc))

    def _lease_tick(self) -> None:
        now = _now()
        self.check_run_leases(now)
        self.reap_orphans()
        if self.deadline is not None and now >= float(self.deadline):
            self.begin_stop("lease deadline reached")
        elif self.secret is None and now - self.last_activity > 60:
            self.begin_stop("never claimed")
        elif (
            self.idle_ttl is not None
            and now - self.last_activity > float(self.idle_ttl)
            and not self.holds_pod(now)
        ):
            self.begin_stop("idle for more than %ss" % self.idle_ttl)


def _lease_fields(h: Dict[str, Any]) -> Tuple[Optional[float], Optional[float]]:
    """idle_ttl (seconds) and deadline (epoch seconds) of a claim or ``lease``, or None."""
    idle_ttl = validate.number(h, "idle_ttl", 0.0, 1e9)
    deadline = validate.number(h, "deadline", 0.0, 1e11)
    return idle_ttl, deadline


def _check_exec_fields(h: Dict[str, Any]) -> None:
    """``name`` becomes a directory under the agent's own: one safe component (see validate.name)."""
    validate.name(h, "name")
    validate.string_map(h, "env")
    validate.boolean(h, "idle_ok")
    validate.text(h, "cwd", ".", 4096)


TAG_VAR = "NEO_PROC_TAG"
MIN_RUN_LEASE = 0.5


def run_lease(value: Any) -> Optional[float]:
    """Validate a run lease: seconds without a controller heartbeat before the agent stops a run.

    None means no lease (a detached run, or a plain exec): only the pod's idle TTL and deadline
    apply to it.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError("lease must be a number of seconds or null", "bad_request")
    lease = float(value)
    if not math.isfinite(lease) or lease < MIN_RUN_LEASE:
        raise RequestError("lease must be a finite number of seconds >= %s" % MIN_RUN_LEASE, "bad_request")
    return lease


def launcher_setup(cgroup: Optional[str]) -> Any:
    """What a launcher does between fork and exec: join its cgroup, adopt its own orphans."""

    def setup() -> None:
        if cgroup:
            try:
                reaper.enter(cgroup)
            except OSError:
                pass
        reaper.set_subreaper()

    return setup


def kill_tagged(tag: str, sig: int) -> bool:
    """Signal every process whose environment carries ``NEO_PROC_TAG=tag`` (Linux /proc)."""
    needle = ("%s=%s" % (TAG_VAR, tag)).encode() + b"\0"
    hit = False
    try:
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return False
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                environ = f.read() + b"\0"
        except OSError:
            continue
        if b"\0" + needle in b"\0" + environ:
            try:
                os.kill(pid, sig)
                hit = True
            except OSError:
                pass
    return hit


def serve(agent_dir: str) -> None:
    """Run the resident agent until shutdown or lease expiry."""
    os.makedirs(agent_dir, mode=0o700, exist_ok=True)
    os.chdir(agent_dir)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    agent = Agent(agent_dir)
    reaper.set_subreaper()
    agent.cgroups = reaper.Cgroups.open()
    with contextlib.suppress(OSError):
        with open("cgroup.tmp", "w") as f:
            f.write(agent.cgroups.root if agent.cgroups else "")
        os.replace("cgroup.tmp", "cgroup")
    old_umask = os.umask(0o077)
    server = loop.run_until_complete(asyncio.start_unix_server(agent.handle, path="agent.sock"))
    os.umask(old_umask)
    agent.server = server
    with open("agent.pid.tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace("agent.pid.tmp", "agent.pid")
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.begin_stop, "signal %d" % sig)
    agent._spawn(agent.watch_lease())
    try:
        loop.run_forever()
    finally:
        try:
            os.unlink("agent.pid")
        except OSError:
            pass
