"""An authenticated, multiplexed connection to one pod's agent over a :class:`ByteStream`.

Handshake: the boot stub answers ``NEED`` (send the agent zip) or ``READY``; the agent then sends
``hello`` with a nonce, and the controller either *claims* a fresh agent with the reservation
secret or answers the challenge with an HMAC of the nonce. Afterwards many requests share the
stream; replies are matched by id and streaming replies are delivered to a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

from neo_agent import PROTOCOL_VERSION
from neo_agent import protocol as wire

from jupyter_neo.errors import AgentError, BackendError
from jupyter_neo.transport.bundle import agent_bundle
from jupyter_neo.transport.streams import ByteStream

EventCallback = Callable[[dict[str, Any], bytes], None]


class AgentConnection:
    """One open connection; use :meth:`open` to create it."""

    # Bytes of request frames written to pod streams by this process, all connections together
    # (the controller's uplink; ``bytes_out`` is this connection's share). Read by the sync report
    # and ``neo daemon status`` so a benchmark can see what one edit costs the uplink.
    total_bytes_out = 0

    def __init__(self, stream: ByteStream, hello: dict[str, Any], name: str) -> None:
        self.bytes_out = 0
        self.stream = stream
        self.hello = hello
        self.name = name
        self._ids = itertools.count(1)
        self._pending: dict[
            int, tuple[asyncio.Future[tuple[dict[str, Any], bytes]], EventCallback | None]
        ] = {}
        self._closed: BaseException | None = None
        self._reader = asyncio.ensure_future(self._read_loop())

    @classmethod
    async def open(
        cls,
        stream: ByteStream,
        secret: str,
        *,
        claim: dict[str, Any] | None = None,
        name: str = "pod",
        timeout: float = 60.0,
    ) -> AgentConnection:
        """Boot (if needed) and authenticate; closes the stream on any failure."""
        try:
            return await asyncio.wait_for(cls._handshake(stream, secret, claim, name), timeout)
        except TimeoutError:
            await stream.close()
            raise BackendError(
                f"{name}: agent did not answer within {timeout:.0f}s",
                f"stream: {stream.describe()}; stderr: {stream.stderr_tail()!r}",
            ) from None
        except BaseException:
            await stream.close()
            raise

    @classmethod
    async def _handshake(
        cls, stream: ByteStream, secret: str, claim: dict[str, Any] | None, name: str
    ) -> AgentConnection:
        reader, writer = stream.reader, stream.writer
        # A stream straight to the agent's socket has no boot stub in front (UnixSocketStream).
        line = b"READY\n" if getattr(stream, "booted", False) else await reader.readline()
        if line == b"NEED\n":
            bundle = agent_bundle()
            writer.write(b"%d\n" % len(bundle.data) + bundle.data)
            await writer.drain()
            line = await reader.readline()
        if line != b"READY\n":
            if not line:
                await stream.stderr_done(1.0)
            refused = [ln for ln in stream.stderr_tail().splitlines() if ln.startswith("neo-agent: refusing")]
            if refused:  # the stub would not trust the pod's agent directory (boot.GUARD)
                raise BackendError(f"{name}: {refused[-1].removeprefix('neo-agent: ')}")
            raise BackendError(
                f"{name}: agent bootstrap failed (got {line[:80]!r})",
                f"is python3 >= 3.8 in the pod? stderr: {stream.stderr_tail()!r}",
            )
        frame = await wire.read_frame(reader)
        if frame is None or frame[0].get("op") != "hello":
            raise BackendError(f"{name}: agent sent no hello")
        hello = frame[0]
        if hello.get("protocol") != PROTOCOL_VERSION:
            raise BackendError(
                f"{name}: agent speaks protocol {hello.get('protocol')}, expected {PROTOCOL_VERSION}"
            )
        if claim is not None:
            first: dict[str, Any] = {"id": 0, "op": "claim", "secret": secret, **claim}
        else:
            first = {"id": 0, "op": "auth", "mac": wire.auth_mac(secret, str(hello["nonce"]))}
        writer.write(wire.encode(first))
        await writer.drain()
        answer = await wire.read_frame(reader)
        if answer is None or not answer[0].get("ok"):
            raise AgentError(
                f"{name}: agent refused authentication",
                "the pod belongs to another reservation",
                agent_code="auth",
            )
        return cls(stream, hello, name)

    async def _read_loop(self) -> None:
        try:
            while True:
                frame = await wire.read_frame(self.stream.reader)
                if frame is None:
                    break
                header, payload = frame
                entry = self._pending.get(header.get("id", -1))
                if entry is None:
                    continue
                future, on_event = entry
                if header.get("done"):
                    self._pending.pop(header["id"], None)
                    if not future.done():
                        future.set_result((header, payload))
                elif on_event is not None:
                    on_event(header, payload)
        except (wire.ProtocolError, ConnectionError, asyncio.IncompleteReadError) as exc:
            self._closed = exc
        finally:
            err = BackendError(
                f"{self.name}: connection to the agent was lost",
                f"stderr: {self.stream.stderr_tail()!r}" if self.stream.stderr_tail() else None,
            )
            self._closed = self._closed or err
            for future, _ in self._pending.values():
                if not future.done():
                    future.set_exception(err)
            self._pending.clear()

    @property
    def closed(self) -> bool:
        return self._reader.done()

    async def request(
        self, op: str, payload: bytes = b"", *, on_event: EventCallback | None = None, **fields: Any
    ) -> tuple[dict[str, Any], bytes]:
        """Send one request and wait for its final reply; streamed frames go to ``on_event``."""
        if self._reader.done():
            raise BackendError(f"{self.name}: connection to the agent is closed")
        rid = next(self._ids)
        future: asyncio.Future[tuple[dict[str, Any], bytes]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = (future, on_event)
        try:
            frame = wire.encode({"id": rid, "op": op, **fields}, payload)
            self.bytes_out += len(frame)
            AgentConnection.total_bytes_out += len(frame)
            self.stream.writer.write(frame)
            await self.stream.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            self._pending.pop(rid, None)
            raise BackendError(f"{self.name}: cannot send to the agent: {exc}") from None
        try:
            header, data = await future
        finally:
            self._pending.pop(rid, None)
        if not header.get("ok"):
            raise AgentError(
                f"{self.name}: {header.get('error', 'agent error')}", agent_code=header.get("code", "")
            )
        return header, data

    async def call(self, op: str, payload: bytes = b"", **fields: Any) -> dict[str, Any]:
        return (await self.request(op, payload, **fields))[0]

    async def close(self) -> None:
        await self.stream.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
