"""An exec websocket (the official client's ``WSClient``) as a :class:`ByteStream`.

The exec subprotocol multiplexes channels in websocket frames whose first byte is the channel:
0 stdin, 1 stdout, 2 stderr, 3 error (status), and on v5 255 "close channel". ``v4`` cannot
half-close stdin, so nothing here relies on EOF: the agent's boot protocol is length-prefixed
(``NEED`` / size line / bytes) and the stream then stays open for framed messages.

One thread owns the socket (reads *and* writes): websocket-client's WebSocket is not safe for
concurrent send and recv on a TLS socket. It sleeps in ``poll`` on the socket and a wake-up
pipe; writes from the event loop are queued and the pipe is poked. Received stdout is fed to an
``asyncio.StreamReader`` on the loop; stderr is kept as a tail for error messages.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import select
import ssl
import threading
from typing import Any, cast

CHUNK = 256 * 1024  # large single frames hit BrokenPipe behind some proxies (python client #1866)


class _Writer:
    """The write half that :class:`AgentConnection` expects (write/drain/close/is_closing)."""

    def __init__(self, stream: ExecStream) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream._enqueue(bytes(data))

    async def drain(self) -> None:
        await self._stream._drained()

    def close(self) -> None:
        self._stream._request_close()

    def is_closing(self) -> bool:
        return self._stream._closing

    async def wait_closed(self) -> None:
        await self._stream._finished.wait()


class ExecStream:
    """A ByteStream over one exec session. Use :meth:`open`."""

    def __init__(self, ws: Any, loop: asyncio.AbstractEventLoop, label: str) -> None:
        from kubernetes.stream import ws_client

        self.ws = ws
        # The client buffers every byte it ever received unless told not to capture; stream()
        # offers no switch, and a warm agent stream lives for hours.
        ws._all = ws_client._IgnoredIO()
        self.loop = loop
        self.label = label
        self.reader = asyncio.StreamReader(limit=1 << 20, loop=loop)
        # ByteStream types its writer as StreamWriter; callers use only write/drain/close/is_closing.
        self.writer = cast(asyncio.StreamWriter, _Writer(self))
        self._out: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._queued = 0
        self._sent = 0
        self._sent_cond = asyncio.Condition()
        self._stderr: collections.deque[bytes] = collections.deque(maxlen=32)
        self._closing = False
        self._error: str | None = None
        self._finished = asyncio.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"exec:{label}", daemon=True)
        self._thread.start()

    @classmethod
    async def open(
        cls, core_api: Any, pod: str, namespace: str, argv: list[str], container: str
    ) -> ExecStream:
        from kubernetes.stream import stream

        def connect() -> Any:
            return stream(
                core_api.connect_get_namespaced_pod_exec,
                pod,
                namespace,
                command=argv,
                container=container,
                stdin=True,
                stdout=True,
                stderr=True,
                tty=False,
                binary=True,
                _preload_content=False,
            )

        ws = await asyncio.to_thread(connect)
        return cls(ws, asyncio.get_running_loop(), f"kubernetes exec {namespace}/{pod} ({ws.subprotocol})")

    # ------------------------------------------------------------------ loop side
    def _enqueue(self, data: bytes) -> None:
        if self._closing:
            raise ConnectionResetError(f"{self.label}: stream closed")
        with self._lock:
            for i in range(0, len(data), CHUNK):
                self._out.append(data[i : i + CHUNK])
            self._queued += len(data)
        self._wake()

    async def _drained(self) -> None:
        target = self._queued
        async with self._sent_cond:
            await self._sent_cond.wait_for(lambda: self._sent >= target or self._finished.is_set())
        if self._sent < target:
            raise ConnectionResetError(f"{self.label}: stream closed while writing ({self._error or 'eof'})")

    def _request_close(self) -> None:
        self._closing = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    async def _notify_sent(self, n: int) -> None:
        async with self._sent_cond:
            self._sent += n
            self._sent_cond.notify_all()

    async def _notify_finished(self) -> None:
        self._finished.set()
        self.reader.feed_eof()
        async with self._sent_cond:
            self._sent_cond.notify_all()

    async def close(self) -> None:
        self._request_close()
        try:
            await asyncio.wait_for(self._finished.wait(), 5)
        except TimeoutError:
            pass

    def describe(self) -> str:
        return self.label

    async def stderr_done(self, timeout: float) -> None:
        return None  # stderr frames arrive on the same websocket, before the end of stdout

    def stderr_tail(self) -> str:
        text = b"".join(self._stderr).decode(errors="replace")
        if self._error:
            text += f"\n[exec status] {self._error}"
        return text[-2000:]

    # ------------------------------------------------------------------ socket thread
    def _run(self) -> None:
        ws = self.ws
        sock = ws.sock.sock
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while ws.is_open() and not self._closing:
                pending_tls = isinstance(sock, ssl.SSLSocket) and sock.pending()
                events = [] if pending_tls else poller.poll(1000)
                if any(fd == self._wake_r for fd, _ in events):
                    os.read(self._wake_r, 4096)
                self._flush()
                if pending_tls or any(fd != self._wake_r for fd, _ in events):
                    ws.update(timeout=0)
                    self._deliver()
        except Exception as exc:  # the socket broke: report through the reader's EOF
            self._error = f"{type(exc).__name__}: {exc}"
        finally:
            self._deliver()
            with contextlib.suppress(Exception):
                ws.close()
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(self._notify_finished(), self.loop)

    def _flush(self) -> None:
        while True:
            with self._lock:
                if not self._out:
                    return
                chunk = self._out.popleft()
            self.ws.write_stdin(chunk)
            asyncio.run_coroutine_threadsafe(self._notify_sent(len(chunk)), self.loop)

    def _deliver(self) -> None:
        """Hand over what ``update`` buffered. Not via ``read_channel``: on an empty channel it
        calls ``update`` itself, which can buffer a frame of *another* channel that nobody then
        delivers until the next socket event (a lost ``READY`` in practice)."""
        from kubernetes.stream.ws_client import ERROR_CHANNEL, STDERR_CHANNEL, STDOUT_CHANNEL

        channels: dict[int, bytes] = self.ws._channels
        out = channels.pop(STDOUT_CHANNEL, b"")
        if out:
            self.loop.call_soon_threadsafe(self.reader.feed_data, out)
        err = channels.pop(STDERR_CHANNEL, b"")
        if err:
            self._stderr.append(err)
        status = channels.pop(ERROR_CHANNEL, b"")
        if status:
            self._error = status.decode(errors="replace")
        channels.clear()
