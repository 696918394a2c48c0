"""The resident controller: ``python -m jupyter_neo.controller.daemon`` (started by the first ``neo``).

One per ``$NEO_HOME``, guaranteed by a lock held for its whole life (``controller.pid``). It
listens on ``$NEO_HOME/controller.sock`` (mode 0600; peers of another uid are refused), runs each
forwarded command line in a worker thread against the shared :class:`~jupyter_neo.core.Core`
and each surface's ``call`` (REST, ``%neo``) as a task through :mod:`.api`, streams change
events to subscribers (a Jupyter server),
and in the background keeps an authenticated connection open to every pod of every live
reservation (re-opened after a reconcile when one drops, closed at release), drops the change
trackers of released reservations and reconciles every 30 s while reservations live (budgets:
warning at 80%, release at 100%; lost pods). It exits after ``NEO_CONTROLLER_IDLE`` seconds (default
600) without requests while no reservation is live; reservations never depend on it (the pods
enforce their own leases), so a killed controller loses nothing a new one cannot adopt.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import socket
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jupyter_neo.controller import terminal, wire

log = logging.getLogger("jupyter_neo.controller")
MAINTAIN_EVERY = 2.0
RECONCILE_EVERY = 15  # maintenance cycles: a full reconcile every 30 s while reservations live
CONNECT_TIMEOUT = 15.0


def idle_exit_seconds() -> float:
    try:
        return float(os.environ.get("NEO_CONTROLLER_IDLE", "600"))
    except ValueError:
        return 600.0


class _RequestRunner:
    """A :class:`~jupyter_neo.client.Runner` on the controller's loop, cancelled per request."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cancelled: threading.Event) -> None:
        self.loop = loop
        self.cancelled = cancelled

    def run(self, coro: Any, pump: Any = None, cancellable: bool = True) -> Any:
        from jupyter_neo.client import run_on

        if cancellable and self.cancelled.is_set():
            coro.close()
            raise KeyboardInterrupt
        return run_on(self.loop, coro, pump, self.cancelled if cancellable else None)

    def wait(self, seconds: float | None) -> None:
        if self.cancelled.wait(seconds):
            raise KeyboardInterrupt


class Controller:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.started = time.time()
        self.idle_exit = idle_exit_seconds()
        self.fingerprint = wire.env_fingerprint(os.environ)
        self.cores: dict[tuple[str, bool, tuple[int, int, int]], Any] = {}
        self.requests: set[threading.Event] = set()
        self.last_busy = time.monotonic()
        self.pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="neo-request")
        self.stopping = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._core_lock = threading.Lock()
        self.apis: dict[int, Any] = {}  # id(core) -> api.Api
        self.feeds: dict[int, Any] = {}  # id(core) -> api.ChangeFeed
        self.subscribers: dict[asyncio.StreamWriter, tuple[float, int]] = {}  # -> (interval, id(core))
        self.calls: set[asyncio.Future[Any]] = set()

    # ------------------------------------------------------------------ cores (one per config file)
    def core_for(self, env: dict[str, str], command: bool = True) -> Any:
        """The core for the config a request names (``NEO_CONFIG`` / ``XDG_CONFIG_HOME``).

        Called on a worker thread; a config error is raised to the request (one line, exit 1).
        ``command``: a command line reconciles once, as a fresh CLI process would; the surfaces'
        calls do not (as the server's and the kernel's own cores did not): the change feed and
        the maintenance loop reconcile in the background.
        """
        from jupyter_neo.config import config_path_for, load_config
        from jupyter_neo.core import Core

        path, explicit = config_path_for(env)
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = (0, 0, 0)
        key = (str(path), explicit, stamp)
        with self._core_lock:
            core = self.cores.get(key)
            if core is None:
                config = load_config(path if (explicit or stamp != (0, 0, 0)) else None, self.home)
                core = Core(config)
                core.track_changes = True  # one-shot syncs use change trackers, not tree walks
                self.cores[key] = core
            if command:
                core.new_command()
            return core

    # ------------------------------------------------------------------ serving
    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        path = str(self.home / wire.SOCKET)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # we hold the life lock: any socket file here is stale
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            _bind(sock, path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(128)
        server = await asyncio.start_unix_server(self._handle, sock=sock)
        log.info("controller %d listening on %s", os.getpid(), path)
        self.loop.create_task(self._adopt())
        maintainer = self.loop.create_task(self._maintain())
        feeder = self.loop.create_task(self._feed())
        try:
            await self.stopping.wait()
        finally:
            server.close()
            feeder.cancel()
            for writer in list(self.subscribers):  # a stop, not a crash: they need not start another
                with contextlib.suppress(Exception):
                    writer.write(wire.encode({"type": "bye", "reason": "stopped"}))
                    writer.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            maintainer.cancel()
            for cancelled in list(self.requests):
                cancelled.set()
            for call in list(self.calls):  # as a cancel frame: a run stops its ranks and is recorded
                call.cancel()
            deadline = time.monotonic() + 20
            while self.requests and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for core in list(self.cores.values()):
                with contextlib.suppress(Exception):
                    await core.close()
            log.info("controller %d exited", os.getpid())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not _same_user(writer):
                return
            writer.write(wire.encode({"type": "hello", "protocol": wire.PROTOCOL, "pid": os.getpid()}))
            msg = await wire.read(reader)
            if msg is None:
                return
            if msg.get("protocol") != wire.PROTOCOL:
                writer.write(
                    wire.encode({"type": "error", "message": wire.mismatch(msg.get("protocol"), "client")})
                )
                return
            kind = msg.get("type")
            if kind == "cli":
                await self._cli(msg, reader, writer)
            elif kind == "call":
                await self._call(msg, reader, writer)
            elif kind == "subscribe":
                await self._subscribe(msg, reader, writer)
            elif kind == "status":
                writer.write(wire.encode({"type": "status", **self.describe()}))
            elif kind == "stop":
                writer.write(wire.encode({"type": "stopping", "pid": os.getpid()}))
                self.stopping.set()
            elif kind == "ping":
                writer.write(wire.encode({"type": "pong", "pid": os.getpid()}))
            else:
                writer.write(wire.encode({"type": "error", "message": f"unknown request type {kind!r}"}))
        except Exception:
            log.exception("request failed")
        finally:
            with contextlib.suppress(Exception):
                await writer.drain()
                writer.close()

    async def _cli(
        self, msg: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One forwarded command line; a cancel frame or a vanished client cancels it."""
        if msg.get("fingerprint") != self.fingerprint:
            writer.write(wire.encode({"type": "env_mismatch", "controller": self.fingerprint}))
            return
        assert self.loop is not None
        cancelled = threading.Event()
        term = terminal.Terminal(
            self.loop,
            lambda frame: writer.write(wire.encode(frame)),
            dict(msg.get("tty") or {}),
            msg.get("columns"),
            dict(msg.get("env") or {}),
        )
        self.requests.add(cancelled)
        self.last_busy = t0 = time.monotonic()
        work: asyncio.Future[Any] = self.loop.run_in_executor(self.pool, self._run_cli, msg, term, cancelled)
        listen: asyncio.Future[Any] = asyncio.ensure_future(wire.read(reader))
        try:
            await asyncio.wait({work, listen}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                cancelled.set()  # a cancel frame (Ctrl-C) or the client went away
                if listen.result() is None:
                    term.closed = True
            code = await work
        finally:
            listen.cancel()
            self.requests.discard(cancelled)
            self.last_busy = time.monotonic()
        await asyncio.sleep(0)  # output scheduled by the worker goes out before the exit frame
        term.closed = True
        writer.write(wire.encode({"type": "exit", "code": code}))
        log.info(
            "neo %s: exit %s in %.1f ms",
            " ".join(map(str, msg.get("argv") or [])),
            code,
            (time.monotonic() - t0) * 1000,
        )

    # ------------------------------------------------------------------ calls and change events
    def api_for(self, core: Any) -> Any:
        """The verb table on ``core`` (:mod:`.api`), its changes published to every subscriber."""
        from jupyter_neo.controller.api import Api

        api = self.apis.get(id(core))
        if api is None:
            api = self.apis[id(core)] = Api(core, self.publish)
        return api

    def feed_for(self, core: Any) -> Any:
        from jupyter_neo.controller.api import ChangeFeed

        feed = self.feeds.get(id(core))
        if feed is None:
            feed = self.feeds[id(core)] = ChangeFeed(core, self.publish)
        return feed

    def publish(self, kind: str, ident: str, state: str) -> None:
        """One change event to every subscriber (each feed notes it, so no look repeats it)."""
        for feed in self.feeds.values():
            feed.note(kind, ident, state)
        frame = wire.encode({"type": "change", "kind": kind, "id": ident, "state": state})
        for writer in list(self.subscribers):
            if not writer.is_closing():
                writer.write(frame)

    async def _call(
        self, msg: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One verb (:mod:`.api`): events as it goes, then a result, a typed error or ``cancelled``.

        A cancel frame or the client going away cancels this call only (its task: a run's
        supervisor stops the ranks and records the run as it does for an in-process Ctrl-C).
        """
        if msg.get("fingerprint") != self.fingerprint:
            writer.write(wire.encode({"type": "env_mismatch", "controller": self.fingerprint}))
            return
        assert self.loop is not None
        loop = self.loop
        verb = str(msg.get("verb"))
        env = dict(msg.get("env") or {})
        params = msg.get("params") or {}
        state = {"open": True}
        loop_thread = threading.get_ident()

        def emit(event: dict[str, Any]) -> None:
            if not state["open"]:
                return
            data = wire.encode({"type": "event", **event})
            if threading.get_ident() == loop_thread:
                writer.write(data)
            else:
                loop.call_soon_threadsafe(_write_if, state, writer, data)

        async def work() -> Any:
            core = await asyncio.to_thread(self.core_for, env, False)
            return await self.api_for(core).call(verb, params, emit)

        marker = threading.Event()
        self.requests.add(marker)
        self.last_busy = t0 = time.monotonic()
        task = asyncio.ensure_future(work())
        self.calls.add(task)
        listen: asyncio.Future[Any] = asyncio.ensure_future(wire.read(reader))
        gone = False
        try:
            await asyncio.wait({task, listen}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                gone = listen.exception() is not None or listen.result() is None
                state["open"] = not gone
                task.cancel()
            frame = await _outcome(task, verb)
        finally:
            listen.cancel()
            self.calls.discard(task)
            self.requests.discard(marker)
            self.last_busy = time.monotonic()
        await asyncio.sleep(0)  # events scheduled from other threads go out before the answer
        state["open"] = False
        if not gone:
            writer.write(wire.encode(frame))
        log.info("call %s: %s in %.1f ms", verb, frame["type"], (time.monotonic() - t0) * 1000)

    async def _subscribe(
        self, msg: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Change events (``{"type": "change", kind, id, state}``) until the client goes away.

        A subscriber (a Jupyter server) keeps the controller alive: it relies on its budget
        enforcement and reconciles, and the sidebar on its events.
        """
        if msg.get("fingerprint") != self.fingerprint:
            writer.write(wire.encode({"type": "env_mismatch", "controller": self.fingerprint}))
            return
        try:
            interval = min(max(float(msg.get("interval") or 2.0), 0.1), 60.0)
        except (TypeError, ValueError):
            interval = 2.0
        core = await asyncio.to_thread(self.core_for, dict(msg.get("env") or {}), False)
        feed = self.feed_for(core)
        await feed.poll()  # the baseline: later looks announce what moved after this point
        writer.write(wire.encode({"type": "subscribed", "pid": os.getpid()}))
        self.subscribers[writer] = (interval, id(core))
        try:
            while await wire.read(reader) is not None:
                pass  # nothing to say after subscribing; the end of the stream ends it
        finally:
            self.subscribers.pop(writer, None)
            self.last_busy = time.monotonic()

    async def _feed(self) -> None:
        """Look for changes at the pace the subscribers asked for (only while there are any)."""
        while True:
            subs = list(self.subscribers.values())
            await asyncio.sleep(min((i for i, _ in subs), default=0.5))
            for key in {k for _, k in subs}:
                feed = self.feeds.get(key)
                if feed is not None:
                    try:
                        await feed.poll()
                    except Exception:
                        log.exception("looking for changes failed")

    def _run_cli(self, msg: dict[str, Any], term: terminal.Terminal, cancelled: threading.Event) -> int:
        from jupyter_neo.cli.app import execute
        from jupyter_neo.client import Client

        terminal.CURRENT.set(term)
        env = dict(msg.get("env") or {})
        cwd = str(msg.get("cwd") or "/")
        assert self.loop is not None
        runner = _RequestRunner(self.loop, cancelled)
        try:
            return execute(
                [str(a) for a in msg.get("argv") or []],
                lambda: Client(core=self.core_for(env), runner=runner, cwd=cwd),
                cwd=cwd,
            )
        except SystemExit as exc:  # --help
            return exc.code if isinstance(exc.code, int) else 0
        except BaseException:
            log.exception("command %s failed", msg.get("argv"))
            sys.stderr.write("error: internal error in the neo controller (see: neo daemon logs)\n")
            return 1
        finally:
            sys.stdout.flush()

    # ------------------------------------------------------------------ background duties
    async def _adopt(self) -> None:
        """At start: reconcile what a previous controller left (interrupted reserves, orphan runs)."""
        with contextlib.suppress(Exception):
            core = await asyncio.to_thread(self.core_for, dict(os.environ))
            await core.reconcile(force=True)
            await self._keep_warm(core)

    async def _maintain(self) -> None:
        cycle = 0
        while True:
            await asyncio.sleep(MAINTAIN_EVERY)
            cycle += 1
            live = 0
            for core in list(self.cores.values()):
                try:
                    live += await self._keep_warm(core)
                    if live and cycle % RECONCILE_EVERY == 0:
                        # Budgets (warning at 80%, release at 100%) and lost pods, also between commands.
                        await core.reconcile(force=True)
                except Exception:
                    log.exception("keeping connections warm failed")
            idle = time.monotonic() - self.last_busy
            if not self.requests and not self.subscribers and not live and idle > self.idle_exit:
                log.info("idle for %.0fs with no live reservation: exiting", idle)
                self.stopping.set()
                return

    async def _keep_warm(self, core: Any) -> int:
        """Open what is missing, close what was released; returns the number of live reservations."""
        from jupyter_neo.model import ReservationState

        active = await asyncio.to_thread(core.store.reservations, True)
        live = {r.id: r for r in active if r.live}
        await core.forget(set(live))
        cold = [r for r in live.values() if r.state is ReservationState.READY and core.cold_pods(r)]
        if cold:
            # A dropped connection may be a dead pod: reconcile before re-opening, so a pod that
            # is gone gets its reservation released instead of a fresh (unclaimed) agent.
            await core.reconcile(force=True)
            for res in cold:
                fresh = await asyncio.to_thread(core.store.reservation, res.id)
                if fresh.state is ReservationState.READY:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(core.connect(fresh), CONNECT_TIMEOUT)
        return len(live) + sum(1 for r in active if r.state is ReservationState.PENDING)

    def describe(self) -> dict[str, Any]:
        rows: dict[str, dict[str, Any]] = {}
        for core in self.cores.values():
            for res in core.store.reservations(active_only=True):
                row = rows.setdefault(
                    res.id,
                    {"id": res.id, "state": res.state.value, "pods": len(res.pods), "warm": 0, "trackers": 0},
                )
                row["warm"] = max(row["warm"], len(res.pods) - len(core.cold_pods(res)))
                row["trackers"] += core.tracker_count(res.id)
        return {
            "pid": os.getpid(),
            "protocol": wire.PROTOCOL,
            "home": str(self.home),
            "started": self.started,
            "uptime_s": time.time() - self.started,
            "requests": len(self.requests),
            "subscribers": len(self.subscribers),
            "idle_exit_s": self.idle_exit,
            "configs": sorted({k[0] for k in self.cores}),
            "reservations": list(rows.values()),
            "environment": self.fingerprint,
        }


def _write_if(state: dict[str, bool], writer: asyncio.StreamWriter, data: bytes) -> None:
    if state["open"]:
        writer.write(data)


async def _outcome(task: asyncio.Future[Any], verb: str) -> dict[str, Any]:
    """The final frame of a call: its result, ``cancelled``, or a typed error."""
    from jupyter_neo.errors import NeoError

    try:
        return {"type": "result", "value": await task}
    except asyncio.CancelledError:
        return {"type": "cancelled"}
    except NeoError as exc:
        return {
            "type": "error",
            "class": type(exc).__name__,
            "code": exc.code,
            "status": exc.http_status,
            "message": exc.message,
            "hint": exc.hint,
        }
    except Exception as exc:  # a bug: one line for the caller, the traceback to errors.log
        from jupyter_neo.errorlog import report

        message = report(exc, f"controller call {verb}")
        return {"type": "error", "class": "InternalError", "code": "internal", "status": 500,
                "message": message, "hint": None}  # fmt: skip


def _bind(sock: socket.socket, path: str) -> None:
    if len(os.fsencode(path)) < 100:
        sock.bind(path)
        return
    fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock.bind(f"/proc/self/fd/{fd}/{os.path.basename(path)}")
    finally:
        os.close(fd)


def _same_user(writer: asyncio.StreamWriter) -> bool:
    """Only the controller's own user may talk to it (the socket mode says so too)."""
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return True
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    if uid != os.getuid():
        log.warning("refused a connection from uid %d", uid)
        return False
    return True


SKIP_PRELOAD = (
    "jupyter_neo.server",
    "jupyter_neo.magics",
    "jupyter_neo.px_magics",
    "jupyter_neo.widgets",
    "jupyter_neo.interactive",
)


def preload() -> None:
    """Import the package's modules once, in this thread, before serving.

    Worker threads that import a package's modules concurrently can meet a partially initialised
    module through a circular package import (``jupyter_neo.sync`` <-> ``.push``) and fail with
    ImportError; importing everything up front (while clients wait for the socket) avoids it.
    Surfaces of other processes (Jupyter server, magics, widgets) are left out, and their
    packages are not even entered: ``pkgutil.walk_packages`` imports every package it descends
    into, which imported ``jupyter_server`` (~1,000 modules) into every controller; with IPython
    (through the ``%%px`` magics) the first command waited 1.8 s instead of 0.35 s.
    """
    import importlib
    import pkgutil

    import jupyter_neo
    from jupyter_neo.cli.parser import build_parser

    pending = [(list(jupyter_neo.__path__), "jupyter_neo.")]
    while pending:
        path, prefix = pending.pop()
        for info in pkgutil.iter_modules(path, prefix):
            if info.name.startswith(SKIP_PRELOAD) or "labextension" in info.name:
                continue
            try:
                module = importlib.import_module(info.name)
            except Exception:  # an optional backend's library missing: imported (and reported) on use
                log.info("preload: %s not importable here", info.name)
                continue
            if info.ispkg:
                pending.append((list(module.__path__), info.name + "."))
    build_parser()


def main() -> int:
    home = Path(os.environ.get("NEO_HOME") or "").absolute()
    if not os.environ.get("NEO_HOME"):
        import platformdirs

        home = Path(platformdirs.user_data_dir("jupyter-neo"))
    home.mkdir(parents=True, exist_ok=True)
    life = os.open(home / wire.LIFE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(life, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another controller serves this home
    os.ftruncate(life, 0)
    os.pwrite(life, str(os.getpid()).encode(), 0)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s controller[%(process)d] %(message)s"
    )
    preload()
    # The preloaded modules (~200k objects) live as long as the process; a full collection that
    # walks them costs ~90 ms on this 2-core machine and would land inside some command's
    # latency. Freezing moves them out of the collector's reach (objects made later are
    # collected as usual): the standard remedy for a long-lived server's static heap.
    gc.freeze()
    sys.stdout = terminal.Router(1, sys.stdout)
    sys.stderr = terminal.Router(2, sys.stderr)
    try:
        asyncio.run(Controller(home).serve())
    finally:
        os.ftruncate(life, 0)
        os.close(life)
    return 0


if __name__ == "__main__":
    sys.exit(main())
