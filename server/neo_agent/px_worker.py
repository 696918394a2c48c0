"""Notebook cells in a warm rank: the worker side of ``%%neo px``.

A hot-reload worker (:mod:`neo_agent.hot`) owns the rank's expensive state: imports, the CUDA
context, the process group, objects kept with ``keep``. Between script iterations it serves cells
sent by the notebook, so an engineer can talk to the live ranks (``dist.all_reduce(x); x``).

Why a socket per rank and a thread: the agent (one per pod) must reach every local rank without
going through torchrun, and a cell must run on the *main* thread (signals, and user code that
assumes it). A listener thread accepts the agent's connection on ``CONTROL/px<RANK>.sock``
(owner-only, in the session's control directory) and queues requests; the worker's idle loop
runs them on the main thread. What must work while a cell runs is handled on the listener thread
itself: ``interrupt`` (SIGINT to the main thread: a ``KeyboardInterrupt`` in the cell, the worker
lives on) and ``where`` (the main thread's current stack: which ranks wait in which collective).

Namespaces: one dict per rank, alive as long as the worker. It starts with ``rank``,
``world_size``, ``local_rank``, ``device``, ``torch`` and ``dist``; after each hot iteration the
script's top-level globals are merged in (the script wins on a name clash), so a cell can inspect
the ``model`` a ``--hot`` run built.

Frames use the agent protocol's encoding (``>II`` + JSON header + payload), read blocking here.
"""

import ast
import linecache
import os
import pickle
import queue
import rlcompleter
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

from neo_agent import protocol as wire

# A cell's value or a pulled object larger than this is refused unless the request raises it.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
REPR_LIMIT = 20000
Request = Tuple["PxLink", Dict[str, Any], bytes]


def socket_name(rank: int) -> str:
    """The file name (relative to the control directory) of a rank's cell socket."""
    return "px%d.sock" % rank


class PxLink:
    """One connection from the agent; writes come from the main thread and the listener."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, header: Dict[str, Any], payload: bytes = b"") -> None:
        data = wire.encode(header, payload)
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # the agent went away; the next connection gets the next cell

    def read(self) -> Optional[Tuple[Dict[str, Any], bytes]]:
        raw = self._exact(wire.HEADER.size)
        if raw is None:
            return None
        head_len, payload_len = wire.HEADER.unpack(raw)
        if head_len > wire.MAX_HEADER or payload_len > wire.MAX_PAYLOAD:
            return None
        head = self._exact(head_len)
        payload = self._exact(payload_len) if payload_len else b""
        if head is None or payload is None:
            return None
        header = __import__("json").loads(head.decode("utf-8"))
        return (header, payload) if isinstance(header, dict) else None

    def _exact(self, n: int) -> Optional[bytes]:
        chunks: List[bytes] = []
        while n:
            try:
                chunk = self.sock.recv(min(n, 1 << 20))
            except OSError:
                return None
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)


class _Stream:
    """``sys.stdout``/``sys.stderr`` during a cell: whole lines go to the notebook as they come."""

    def __init__(self, name: str, link: PxLink, cell: int) -> None:
        self.name = name
        self.link = link
        self.cell = cell
        self.buf = ""

    def write(self, text: str) -> int:
        self.buf += text
        if "\n" in self.buf:
            head, _, self.buf = self.buf.rpartition("\n")
            self.link.send({"t": "out", "cell": self.cell, "stream": self.name, "text": head + "\n"})
        return len(text)

    def flush(self) -> None:
        if self.buf:
            self.link.send({"t": "out", "cell": self.cell, "stream": self.name, "text": self.buf})
            self.buf = ""

    def isatty(self) -> bool:
        return False


def display_data(value: Any) -> Dict[str, str]:
    """The value of a cell's last expression as a MIME bundle (rich where the object has one)."""
    bundle: Dict[str, str] = {}
    for mime, method in (("text/html", "_repr_html_"), ("text/markdown", "_repr_markdown_")):
        fn = getattr(value, method, None)
        if callable(fn):
            try:
                rich = fn()
            except Exception:  # a broken rich repr falls back to text
                rich = None
            if isinstance(rich, str):
                bundle[mime] = rich
    try:
        text = repr(value)
    except Exception as exc:
        text = "<repr failed: %s>" % exc
    bundle["text/plain"] = text if len(text) <= REPR_LIMIT else text[:REPR_LIMIT] + "..."
    return bundle


def initial_namespace(rank: int, world: int, local_rank: int) -> Dict[str, Any]:
    ns: Dict[str, Any] = {
        "__name__": "__px__",
        "rank": rank,
        "world_size": world,
        "local_rank": local_rank,
        "device": "cpu",
    }
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        return ns
    ns["torch"] = torch
    ns["dist"] = dist
    if torch.cuda.is_available():
        ns["device"] = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    else:
        ns["device"] = torch.device("cpu")
    return ns


class PxServer:
    """Serves cells to this rank's namespace; :meth:`serve` runs them on the calling thread."""

    def __init__(self, control: str, rank: int, world: int, local_rank: int) -> None:
        self.rank = rank
        self.namespace = initial_namespace(rank, world, local_rank)
        self.requests: "queue.Queue[Request]" = queue.Queue()
        self.main_ident = threading.get_ident()
        self.busy = False
        self.cells = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # A relative bind: unix socket paths are limited to ~107 bytes and pod dirs can be longer.
        here = os.getcwd()
        os.chdir(control)
        try:
            name = socket_name(rank)
            if os.path.exists(name):
                os.unlink(name)
            self.sock.bind(name)
            os.chmod(name, 0o600)
        finally:
            os.chdir(here)
        self.sock.listen(4)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        threading.Thread(target=self._accept, name="neo-px-accept", daemon=True).start()

    # ------------------------------------------------------------------ listener thread
    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._reader, args=(PxLink(conn),), daemon=True).start()

    def _reader(self, link: PxLink) -> None:
        while True:
            frame = link.read()
            if frame is None:
                return
            header, payload = frame
            op = header.get("op")
            if op == "interrupt":
                self.interrupt()
                link.send({"t": "ack", "cell": header.get("cell"), "busy": self.busy})
            elif op == "where":
                link.send(
                    {"t": "where", "cell": header.get("cell"), "busy": self.busy, "stack": self.where()}
                )
            else:
                self.requests.put((link, header, payload))

    def interrupt(self) -> None:
        """A ``KeyboardInterrupt`` in the running cell (not a kill: the worker survives)."""
        if self.busy:
            signal.pthread_kill(self.main_ident, signal.SIGINT)

    def where(self) -> List[str]:
        """The main thread's innermost frames, e.g. a collective a cell is blocked in."""
        frame = sys._current_frames().get(self.main_ident)
        if frame is None:
            return []
        entries = traceback.extract_stack(frame)
        picked = [e for e in entries if not e.filename.endswith(("px_worker.py", "hot.py"))]
        return ["%s:%s in %s" % (e.filename, e.lineno, e.name) for e in picked[-4:]]

    # ------------------------------------------------------------------ main thread
    def serve(self, stop: Callable[[], bool], poll: float) -> None:
        """Run queued requests until ``stop()`` says a new code generation is due."""
        while True:
            try:
                if stop():
                    return
                link, header, payload = self.requests.get(timeout=poll)
            except queue.Empty:
                continue
            except KeyboardInterrupt:
                continue  # an interrupt that arrived after its cell ended
            try:
                self.handle(link, header, payload)
            except KeyboardInterrupt:
                link.send(
                    {"t": "result", "cell": header.get("cell"), "ok": False, "error": "KeyboardInterrupt"}
                )

    def handle(self, link: PxLink, header: Dict[str, Any], payload: bytes) -> None:
        op = header.get("op")
        cell = header.get("cell")
        reply: Dict[str, Any] = {"t": "result", "cell": cell, "ok": True}
        data = b""
        try:
            if op == "exec":
                reply.update(self.run_cell(str(header.get("code", "")), link, cell))
            elif op == "pull":
                data = self.pull(
                    str(header.get("name", "")), int(header.get("max_bytes") or DEFAULT_MAX_BYTES)
                )
            elif op == "push":
                self.push(str(header.get("name", "")), payload)
            elif op == "complete":
                reply["matches"] = self.complete(str(header.get("text", "")))
            else:
                reply.update(ok=False, error="unknown px operation %r" % op)
        except _Refused as exc:
            reply.update(ok=False, error=str(exc))
        link.send(reply, data)

    def run_cell(self, code: str, link: PxLink, cell: Any) -> Dict[str, Any]:
        """Execute ``code`` like a REPL: statements, then the last expression's value."""
        self.cells += 1
        filename = "<px cell %d>" % self.cells
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        out, err = _Stream("stdout", link, cell), _Stream("stderr", link, cell)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        self.busy = True
        try:
            tree = ast.parse(code, filename, "exec")
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, filename, "exec"), self.namespace)  # noqa: S102 (the user's cell)
            value = None
            if last is not None:
                expr = ast.Expression(last.value)  # type: ignore[attr-defined]
                value = eval(compile(expr, filename, "eval"), self.namespace)  # noqa: S307
            if value is not None:
                self.namespace["_"] = value
                return {"value": display_data(value)}
            return {}
        except BaseException as exc:  # the user's error is reported; the warm worker lives on
            if isinstance(exc, SystemExit):
                exc = RuntimeError("SystemExit(%s) in a px cell (the worker stays up)" % exc.code)
            tb = exc.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
                tb = tb.tb_next  # show the user's frames, not this module's
            text = "".join(traceback.format_exception(type(exc), exc, tb))
            return {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc), "traceback": text}
        finally:
            self.busy = False
            out.flush()
            err.flush()
            sys.stdout, sys.stderr = saved

    def pull(self, name: str, max_bytes: int) -> bytes:
        if name not in self.namespace:
            raise _Refused("name %r is not defined on rank %d" % (name, self.rank))
        value = self.namespace[name]
        detach = getattr(value, "detach", None)
        if callable(detach) and hasattr(value, "cpu"):
            value = detach().cpu()  # a CUDA tensor becomes loadable where there is no GPU
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise _Refused("%r cannot be pickled on rank %d: %s" % (name, self.rank, exc)) from None
        if len(data) > max_bytes:
            raise _Refused(
                "%r is %d bytes on rank %d, over the %d-byte limit (raise it with --max-bytes)"
                % (name, len(data), self.rank, max_bytes)
            )
        return data

    def push(self, name: str, payload: bytes) -> None:
        if not name.isidentifier():
            raise _Refused("%r is not a Python identifier" % name)
        self.namespace[name] = pickle.loads(payload)  # noqa: S301 (from the authenticated controller)

    def complete(self, text: str) -> List[str]:
        completer = rlcompleter.Completer(self.namespace)
        matches: List[str] = []
        for state in range(500):
            match = completer.complete(text, state)
            if match is None:
                break
            matches.append(match)
        return matches

    def merge_script_globals(self, script_globals: Dict[str, Any]) -> None:
        """After a hot iteration: the script's top-level names become visible to cells."""
        for name, value in script_globals.items():
            if not (name.startswith("__") and name.endswith("__")):
                self.namespace[name] = value

    def close(self) -> None:
        self.sock.close()


class _Refused(Exception):
    """A request that cannot be served; the message is the one line the notebook shows."""


def wait_between(server: Optional[PxServer], due: Callable[[], bool], poll: float) -> None:
    """The worker's idle loop: serve cells until a new generation is due."""
    if server is None:
        while not due():
            time.sleep(poll)
        return
    server.serve(due, poll)
