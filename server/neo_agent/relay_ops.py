"""Relay fan-out: pods pass sync content to each other so the controller sends it once.

For a large payload and many pods, the controller uploads the content to the leader only; the
leader then serves it to the other pods over the cluster network (``ws_relay_serve``), and each of
them pulls what it lacks (``ws_relay_fetch``). The controller's uplink, usually the slowest link
(a laptop, a notebook server outside the cluster), carries each byte once instead of N times.

The relay server is a plain TCP listener on the pod, speaking the agent's frame format. It is a
door into the pod from the network, so it is kept narrow:

- it binds only the address the other pods use to reach the leader (``host``; loopback if none);
- it serves only content-store objects, by digest, to a client whose first frame (at most
  :data:`wire.PREAUTH_HEADER` bytes, no payload, within :data:`AUTH_TIMEOUT`) carries a token the
  controller handed to both sides over their authenticated agent connections;
- at most :data:`MAX_CONNS` connections at a time; the rest are closed on arrival;
- objects go out in chunks of :data:`CHUNK` bytes, so neither side holds a whole large file;
- ``ws_relay_close`` (sent by the controller when its sync ends) revokes the token and closes the
  listener; a listener whose tokens all expired closes by itself (a controller killed mid-sync).

Relay tree (the sync frames themselves, docs/sync.md "Relay tree"): so that the controller's
uplink for a small edit does not grow with the gang, the controller tells each pod once which
pods are its children in a k-ary tree (``ws_relay_children``: their relay address and a token
from their own ``ws_relay_serve`` with a longer, sliding ``ttl``) and then sends each ``ws_sync``
to the root only, with ``tree`` naming that tree. Every pod applies the frame itself and, at the
same time, forwards the very same frame to its children over their relay listeners; the reply
lists every pod of the subtree (``results``: pod, status, generation, root). Each pod validates and
applies the frame exactly as one from the controller (same checks, same atomic flip), so a parent
can make a child do nothing it could not do itself; a pod that is unreachable or answers anything
but ``applied``/``noop`` is missing from (or marked in) the results and the controller syncs it
directly over its own connection.
"""

import asyncio
import os
import secrets
import stat
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from neo_agent import protocol as wire
from neo_agent import validate
from neo_agent.workspace_ops import answered

TOKEN_TTL = 120.0
AUTH_TIMEOUT = 10.0
MAX_CONNS = 64
MAX_WANT = 20000  # objects asked for in one request (a want frame stays under 2 MiB)
CHUNK = 4 * 1024 * 1024
MAX_TTL = 3600.0  # longest a tree token lives without being used
MAX_CHILDREN = 64
MAX_TREES = 16
FRAME_TIMEOUT = 120.0  # the request after the token (a sync frame may be tens of MiB)
FORWARD_TIMEOUT = 600.0  # a child's whole subtree applying a sync


class Relay:
    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.server: Optional[asyncio.AbstractServer] = None
        self.host = ""
        self.port = 0
        self.tokens: Dict[str, float] = {}
        self.ttls: Dict[str, float] = {}  # sliding lifetime of tree tokens (refreshed on use)
        self.trees: Dict[str, List[Dict[str, Any]]] = {}  # tree id -> this pod's children
        self.conns: Set["asyncio.Task[Any]"] = set()
        self.expiry: Optional[asyncio.Handle] = None

    @property
    def ws(self) -> Any:
        return self.agent.workspace_sync

    async def op_serve(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        """Start the relay listener on ``host`` (once) and register a token for this sync."""
        host = validate.text(h, "host", "127.0.0.1", 255)
        ttl = float(validate.integer(h, "ttl", int(TOKEN_TTL), 1, int(MAX_TTL)))
        now = time.time()
        self.tokens = {t: exp for t, exp in self.tokens.items() if exp > now}
        self.ttls = {t: v for t, v in self.ttls.items() if t in self.tokens}
        if self.server is not None and host != self.host:
            await self._shut()
        if self.server is None:
            try:
                self.server = await asyncio.start_server(self._accept, host=host, port=0, limit=1 << 20)
            except OSError as exc:
                from neo_agent.agent import RequestError

                raise RequestError("relay cannot listen on %s: %s" % (host, exc.strerror), "relay") from None
            self.host = host
            self.port = self.server.sockets[0].getsockname()[1]
        token = secrets.token_hex(16)
        self.tokens[token] = now + ttl
        if ttl != TOKEN_TTL:
            self.ttls[token] = ttl
        self._arm_expiry()
        return {"port": self.port, "token": token, "host": self.host}

    async def op_close(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        """The sync that asked for ``token`` is over: revoke it; close the listener if it was the last."""
        self.tokens.pop(validate.text(h, "token", "", 64), None)
        if not self.tokens:
            await self._shut()
        return {"listening": self.server is not None}

    def _arm_expiry(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        soonest = min(self.tokens.values(), default=time.time() + TOKEN_TTL)
        self.expiry = asyncio.get_event_loop().call_later(max(1.0, soonest - time.time() + 1), self._expire)

    def _expire(self) -> None:
        self.expiry = None
        now = time.time()
        self.tokens = {t: exp for t, exp in self.tokens.items() if exp > now}
        if self.tokens:
            self._arm_expiry()
        else:
            self.agent._spawn(self._shut())

    async def _shut(self) -> None:
        server, self.server = self.server, None
        self.tokens.clear()
        self.ttls.clear()
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        for task in list(self.conns):
            task.cancel()
        if server is not None:
            server.close()
            await server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.conns) >= MAX_CONNS or self.server is None:
            writer.close()
            return
        task = asyncio.ensure_future(self._serve(reader, writer))
        self.conns.add(task)
        task.add_done_callback(self.conns.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # Authenticate first: a small frame without payload, soon, or the connection is closed.
            frame = await asyncio.wait_for(wire.read_frame(reader, wire.PREAUTH_HEADER, 0), AUTH_TIMEOUT)
            token = frame[0].get("token") if frame is not None else None
            if not isinstance(token, str) or self.tokens.get(token, 0) < time.time():
                writer.write(wire.encode({"ok": False, "error": "bad relay token"}))
                return
            if token in self.ttls:  # a tree token lives as long as it is used
                self.tokens[token] = time.time() + self.ttls[token]
            writer.write(wire.encode({"ok": True}))
            frame = await asyncio.wait_for(wire.read_frame(reader), FRAME_TIMEOUT)
            if frame is None:
                return
            if frame[0].get("op") == "ws_sync":  # a parent in the relay tree forwards a sync
                results = await self._tree_sync(frame[0], frame[1])
                writer.write(wire.encode({"ok": True, "done": True, "results": results}))
                await writer.drain()
                return
            if frame[1]:
                return
            try:
                want = validate.wants(frame[0], "want", MAX_WANT)
            except validate.FieldError as exc:
                writer.write(wire.encode({"ok": False, "error": str(exc)}))
                return
            loop = asyncio.get_event_loop()
            served = 0
            for digest, mode in want:
                path = self.ws.obj(digest, mode)
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                except OSError:
                    continue
                with os.fdopen(fd, "rb") as f:
                    st = os.fstat(f.fileno())
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    offset = 0
                    while True:
                        chunk = await loop.run_in_executor(None, f.read, CHUNK)
                        head = {"digest": digest, "mode": mode, "offset": offset, "total": st.st_size}
                        if chunk or offset == 0:
                            writer.write(wire.encode(head, chunk))
                            await writer.drain()
                        offset += len(chunk)
                        if not chunk or offset >= st.st_size:
                            break
                served += 1
            writer.write(wire.encode({"ok": True, "done": True, "served": served}))
            await writer.drain()
        except (wire.ProtocolError, ConnectionError, asyncio.TimeoutError, OSError):
            pass
        finally:
            writer.close()

    # ------------------------------------------------------------------ relay tree
    async def op_children(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        """Remember this pod's children in relay tree ``tree`` (an empty list forgets it)."""
        tree = validate.text(h, "tree", None, 64)
        raw = h.get("children")
        if not isinstance(raw, list) or len(raw) > MAX_CHILDREN:
            raise validate.FieldError("children must be a list of at most %d pods" % MAX_CHILDREN)
        children = [
            {
                "pod": validate.text(c, "pod", None, 255),
                "host": validate.text(c, "host", None, 255),
                "port": validate.integer(c, "port", None, 1, 65535),
                "token": validate.text(c, "token", None, 64),
            }
            for c in raw
            if isinstance(c, dict)
        ]
        if len(children) != len(raw):
            raise validate.FieldError("children must be objects")
        self.trees.pop(tree, None)
        if children:
            while len(self.trees) >= MAX_TREES:  # the oldest tree goes (a controller restarted)
                self.trees.pop(next(iter(self.trees)))
            self.trees[tree] = children
        return {"children": len(children)}

    def wrap_sync(self, plain: Any) -> Any:
        """``ws_sync`` with ``tree``: apply here and forward down the tree; else the plain op."""

        async def op(h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
            if "tree" not in h:
                reply: Dict[str, Any] = await plain(h, p, emit)
                return reply
            validate.text(h, "tree", None, 64)
            return {"status": "tree", "results": await self._tree_sync(h, p, plain)}

        self.plain_sync = plain
        return op

    async def _tree_sync(self, h: Dict[str, Any], p: bytes, plain: Any = None) -> List[Dict[str, Any]]:
        """This pod's own outcome and its subtree's, applied and forwarded at the same time."""
        from neo_agent.agent import RequestError

        fields = {k: v for k, v in h.items() if k not in ("id", "op", "_checked", "token")}
        me = self.agent.labels.get("pod", "")

        async def own() -> List[Dict[str, Any]]:
            try:
                reply = await (plain or self.plain_sync)(dict(fields), p, None)
            except Exception as exc:  # reported for this pod; the controller retries it directly
                code = getattr(exc, "code", "bad_request") if isinstance(exc, RequestError) else "error"
                return [{"pod": me, "status": "failed", "error": str(exc), "code": code}]
            out = {k: reply.get(k) for k in ("status", "generation", "root", "digests") if k in reply}
            return [dict(out, pod=me)]

        kids = self.trees.get(str(fields.get("tree")), [])
        parts = await asyncio.gather(own(), *(self._forward(c, fields, p) for c in kids))
        return [r for part in parts for r in part]

    async def _forward(self, child: Dict[str, Any], fields: Dict[str, Any], p: bytes) -> List[Dict[str, Any]]:
        """Send the sync frame to one child; its subtree's results, or none if it cannot be reached."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(child["host"], child["port"], limit=1 << 20), 30
            )
        except (OSError, asyncio.TimeoutError):
            return []
        try:
            writer.write(wire.encode({"token": child["token"]}))
            await writer.drain()
            answer = await asyncio.wait_for(wire.read_frame(reader, wire.PREAUTH_HEADER, 0), 30)
            if answer is None or not answer[0].get("ok"):
                return []
            writer.write(wire.encode(dict(fields, op="ws_sync"), p))
            await writer.drain()
            frame = await asyncio.wait_for(wire.read_frame(reader, wire.MAX_HEADER, 0), FORWARD_TIMEOUT)
            if frame is None or not isinstance(frame[0].get("results"), list):
                return []
            return [r for r in frame[0]["results"] if isinstance(r, dict)]
        except (wire.ProtocolError, ConnectionError, asyncio.TimeoutError, OSError):
            return []
        finally:
            writer.close()

    async def op_fetch(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        """Pull the objects this pod lacks from a relay (another pod), into the content store."""
        from neo_agent.agent import RequestError

        host = validate.text(h, "host", None, 255)
        port = validate.integer(h, "port", None, 1, 65535)
        token = validate.text(h, "token", None, 64)
        want = validate.wants(h, "want", 10**6)
        async with self.ws.lock:
            self.ws.load()
            want = [w for w in want if w[1] not in self.ws.objects.get(w[0], ())]
        stored = received = 0
        for start in range(0, len(want), MAX_WANT):
            got, nbytes = await self._pull(host, port, token, want[start : start + MAX_WANT], RequestError)
            stored += got
            received += nbytes
        return {"stored": stored, "bytes": received}

    async def _pull(
        self, host: str, port: int, token: str, want: List[List[Any]], error: Any
    ) -> Tuple[int, int]:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 20), 30)
        stored = received = 0
        try:
            writer.write(wire.encode({"token": token}))
            await writer.drain()
            answer = await asyncio.wait_for(wire.read_frame(reader, wire.PREAUTH_HEADER, 0), 30)
            if answer is None or not answer[0].get("ok"):
                raise error("relay refused: %s" % (answer[0].get("error") if answer else "closed"), "relay")
            writer.write(wire.encode({"want": want}))
            await writer.drain()
            while True:
                frame = await asyncio.wait_for(wire.read_frame(reader, wire.PREAUTH_HEADER, CHUNK), 60)
                if frame is None:
                    raise error("relay closed the connection mid-transfer", "relay")
                head, data = frame
                if head.get("done"):
                    break
                if "ok" in head:
                    raise error("relay refused: %s" % head.get("error"), "relay")
                digest = validate.digest(head.get("digest"))
                mode = validate.mode(head.get("mode"))
                total = validate.integer(head, "total")
                offset = validate.integer(head, "offset", 0, 0, total)
                async with self.ws.lock:
                    done = await self.ws._guarded(
                        asyncio.get_event_loop().run_in_executor(
                            None, self.ws.receive_part, digest, mode, offset, total, data
                        )
                    )
                stored += bool(done)
                received += len(data)
        finally:
            writer.close()
        return stored, received


def register(agent: Any) -> None:
    relay = Relay(agent)
    agent.relay = relay
    agent.handlers["ws_relay_serve"] = relay.op_serve
    agent.handlers["ws_relay_fetch"] = answered(relay.op_fetch)
    agent.handlers["ws_relay_close"] = relay.op_close
    agent.handlers["ws_relay_children"] = answered(relay.op_children)
    agent.handlers["ws_sync"] = relay.wrap_sync(agent.handlers["ws_sync"])


__all__ = ["Relay", "register"]
