"""Relay fan-out: pods pass sync content to each other so the controller sends it once.

For a large payload and many pods, the controller uploads the content to the leader only; the
leader then serves it to the other pods over the cluster network (``ws_relay_serve``), and each of
them pulls what it lacks (``ws_relay_fetch``). The controller's uplink, usually the slowest link
(a laptop, a notebook server outside the cluster), carries each byte once instead of N times.

The relay server is a plain TCP listener on the pod, speaking the agent's frame format. It serves
only objects of the content store, by digest, to a client presenting a one-time token that the
controller handed to both sides over their authenticated connections; tokens expire.
"""

import asyncio
import secrets
import time
from typing import Any, Dict, List, Optional

from neo_agent import protocol as wire

TOKEN_TTL = 120.0
MAX_WANT = 100000


class Relay:
    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.server: Optional[asyncio.AbstractServer] = None
        self.port = 0
        self.tokens: Dict[str, float] = {}

    @property
    def ws(self) -> Any:
        return self.agent.workspace_sync

    async def op_serve(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        """Start (once) the relay listener and register a token for this round of fetches."""
        now = time.time()
        self.tokens = {t: exp for t, exp in self.tokens.items() if exp > now}
        token = secrets.token_hex(16)
        self.tokens[token] = now + TOKEN_TTL
        if self.server is None:
            self.server = await asyncio.start_server(self._serve, host="0.0.0.0", port=0)  # noqa: S104
            self.port = self.server.sockets[0].getsockname()[1]
        return {"port": self.port, "token": token}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            frame = await asyncio.wait_for(wire.read_frame(reader), 30)
            if frame is None:
                return
            header = frame[0]
            if self.tokens.get(str(header.get("token")), 0) < time.time():
                writer.write(wire.encode({"ok": False, "error": "bad relay token"}))
                return
            want = header.get("want") or []
            if not isinstance(want, list) or len(want) > MAX_WANT:
                writer.write(wire.encode({"ok": False, "error": "bad request"}))
                return
            blobs: List[List[Any]] = []
            chunks: List[bytes] = []
            for item in want:
                digest, mode = str(item[0]), int(item[1]) & 0o7777
                if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                    continue
                path = self.ws.obj(digest, mode)
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                blobs.append([digest, len(data), False, mode])
                chunks.append(data)
            writer.write(wire.encode({"ok": True, "blobs": blobs}, b"".join(chunks)))
            await writer.drain()
        except (wire.ProtocolError, ConnectionError, asyncio.TimeoutError, ValueError, TypeError, IndexError):
            pass
        finally:
            writer.close()

    async def op_fetch(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        """Pull the objects this pod lacks from a relay (another pod), into the content store."""
        want = [[str(d), int(m)] for d, m in (h.get("want") or [])]
        async with self.ws.lock:
            self.ws.load()
            want = [w for w in want if w[1] not in self.ws.objects.get(w[0], ())]
        if not want:
            return {"stored": 0, "bytes": 0}
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(str(h["host"]), int(h["port"]), limit=1 << 20), 30
        )
        try:
            writer.write(wire.encode({"token": h.get("token"), "want": want}))
            await writer.drain()
            frame = await wire.read_frame(reader)
        finally:
            writer.close()
        if frame is None or not frame[0].get("ok"):
            from neo_agent.agent import RequestError

            raise RequestError("relay refused: %s" % (frame[0].get("error") if frame else "closed"), "relay")
        blobs, payload = frame[0]["blobs"], frame[1]
        async with self.ws.lock:
            await asyncio.get_event_loop().run_in_executor(None, self.ws._store_blobs, blobs, payload, 0)
        return {"stored": len(blobs), "bytes": len(payload)}

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


def register(agent: Any) -> None:
    relay = Relay(agent)
    agent.handlers["ws_relay_serve"] = relay.op_serve
    agent.handlers["ws_relay_fetch"] = relay.op_fetch


__all__ = ["Relay", "register"]
