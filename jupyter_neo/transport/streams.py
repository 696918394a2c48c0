"""Byte streams to a pod. A backend's only transport duty is to return one of these.

Local pods, ``srun`` and ``ssh`` give a subprocess whose stdin/stdout is the stream; Kubernetes
gives an exec websocket adapted to the same interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Sequence
from typing import Protocol


class ByteStream(Protocol):
    """A bidirectional byte stream to a process in a pod."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def close(self) -> None: ...

    def describe(self) -> str: ...

    def stderr_tail(self) -> str: ...

    async def stderr_done(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until the stream's stderr is read to its end, so that
        :meth:`stderr_tail` holds a process's last words after its stdout ended."""


class UnixSocketStream:
    """A direct connection to a resident agent's unix socket (pods on this machine).

    No boot stub runs (``booted``): the agent is already there, so a connection costs a
    ``connect(2)`` instead of a Python start, and no relay process stays alive per connection.
    """

    booted = True

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, label: str) -> None:
        self.reader = reader
        self.writer = writer
        self.label = label

    @classmethod
    async def open(cls, path: str, label: str = "") -> UnixSocketStream:
        """Connect to ``path`` (also when it is longer than a socket address allows)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
            try:
                sock.setblocking(False)
                await asyncio.get_running_loop().sock_connect(
                    sock, f"/proc/self/fd/{fd}/{os.path.basename(path)}"
                )
            finally:
                os.close(fd)
            reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 20)
        except BaseException:
            sock.close()
            raise
        return cls(reader, writer, label or path)

    def stderr_tail(self) -> str:
        return ""

    async def stderr_done(self, timeout: float) -> None:
        return None  # no stderr: an agent's socket

    def describe(self) -> str:
        return self.label

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2)


class SubprocessStream:
    """A stream over a local subprocess's stdin/stdout (which may itself reach a remote pod)."""

    def __init__(self, proc: asyncio.subprocess.Process, label: str) -> None:
        self.proc = proc
        assert proc.stdout is not None and proc.stdin is not None
        self.reader = proc.stdout
        self.writer = proc.stdin
        self.label = label
        self._stderr: list[bytes] = []
        self._stderr_task = asyncio.ensure_future(self._drain_stderr())

    @classmethod
    async def open(
        cls, argv: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None, label: str = ""
    ) -> SubprocessStream:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            limit=1 << 20,
        )
        return cls(proc, label or argv[0])

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(4096):
            self._stderr.append(chunk)
            del self._stderr[:-16]

    def stderr_tail(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")[-2000:]

    async def stderr_done(self, timeout: float) -> None:
        """Wait (briefly) until the process's stderr is read to its end: after stdout ended, its
        last words (why the boot stub gave up) may still be in the pipe."""
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._stderr_task), timeout)

    def describe(self) -> str:
        return self.label

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 2)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self._stderr_task.cancel()
