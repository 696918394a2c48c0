"""Where a request's output goes inside the controller: the client's terminal, frame by frame.

The controller runs each ``neo`` command line in a worker thread with the very code the
in-process CLI runs, so output, exit codes and ``--json`` documents are the same by construction.
``sys.stdout``/``sys.stderr`` are replaced by :class:`Router` objects that send what a request
writes to that request's client; the request is found through a context variable, which asyncio
copies into every task (and ``to_thread``) a request starts, so lines printed from the event loop
(a rank's output, a watcher's report) reach the right terminal too.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

CURRENT: ContextVar[Terminal | None] = ContextVar("neo_terminal", default=None)


class Terminal:
    """One client's terminal: whether stdout/stderr are ttys, its width and its environment."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[dict[str, Any]], None],
        tty: dict[str, bool],
        columns: int | None,
        env: dict[str, str],
    ) -> None:
        self.loop = loop
        self._send = send
        self.tty = tty
        self.columns = columns
        self.env = env
        self.closed = False
        self.consoles: dict[bool, Any] = {}

    def write(self, fd: int, data: str) -> None:
        if self.closed or not data:
            return
        # Always through the loop, in call order, so stdout and stderr interleave as written.
        self.loop.call_soon_threadsafe(self._emit, fd, data)

    def _emit(self, fd: int, data: str) -> None:
        if not self.closed:
            self._send({"type": "out", "fd": fd, "data": data})

    def is_tty(self, stderr: bool) -> bool:
        return bool(self.tty.get("stderr" if stderr else "stdout"))


class Router(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of the controller: the current request's terminal, else the log."""

    def __init__(self, fd: int, fallback: Any) -> None:
        self.fd = fd
        self.fallback = fallback

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def write(self, s: str) -> int:
        term = CURRENT.get()
        if term is None:
            return int(self.fallback.write(s))
        term.write(self.fd, s)
        return len(s)

    def flush(self) -> None:
        if CURRENT.get() is None:
            self.fallback.flush()

    def isatty(self) -> bool:
        term = CURRENT.get()
        return term.is_tty(self.fd == 2) if term is not None else False

    def writable(self) -> bool:
        return True
