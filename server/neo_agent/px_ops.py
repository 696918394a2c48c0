"""Agent side of ``%%neo px``: forward a notebook cell to this pod's ranks and stream back.

The controller sends one ``px`` request per pod; the agent passes it to every selected local rank
of the hot session over the rank's cell socket (:mod:`neo_agent.px_worker`) and streams each
rank's frames (output lines, then one result) back on the request, tagged with the rank. The
connection to each rank is kept open between cells: a cell costs two local socket hops, not a
connect. ``px_signal`` (``interrupt`` / ``where``) goes over a fresh connection, because the
cell's own connection is busy while the cell runs.
"""

import asyncio
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from neo_agent import protocol as wire
from neo_agent.agent import RequestError
from neo_agent.px_worker import socket_name

SESSION_RE = re.compile(r"^[A-Za-z0-9-]{1,80}$")
SOCKET_RE = re.compile(r"^px(\d+)\.sock$")
ACTIONS = ("exec", "pull", "push", "complete")
Link = Tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Lock]


class Px:
    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.links: Dict[Tuple[str, int], Link] = {}

    def control(self, h: Dict[str, Any]) -> str:
        session = h.get("session")
        if not isinstance(session, str) or not SESSION_RE.match(session):
            raise RequestError("bad session id", "bad_request")
        return os.path.join("hot", session)  # relative: the agent's cwd is its directory

    def local_ranks(self, control: str, wanted: Any) -> List[int]:
        try:
            names = os.listdir(control)
        except OSError:
            names = []
        ranks = sorted(int(m.group(1)) for m in map(SOCKET_RE.match, names) if m)
        if wanted is None:
            return ranks
        if not isinstance(wanted, list) or not all(
            isinstance(r, int) and not isinstance(r, bool) for r in wanted
        ):
            raise RequestError("ranks must be a list of integers", "bad_request")
        return [r for r in ranks if r in wanted]

    async def link(self, control: str, rank: int) -> Link:
        key = (control, rank)
        link = self.links.get(key)
        if link is not None and not link[1].is_closing():
            return link
        reader, writer = await asyncio.open_unix_connection(os.path.join(control, socket_name(rank)))
        link = (reader, writer, asyncio.Lock())
        self.links[key] = link
        return link

    def drop(self, control: str, rank: int) -> None:
        link = self.links.pop((control, rank), None)
        if link is not None:
            link[1].close()

    async def op_px(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        """Run one cell action on the selected local ranks; frames stream back as they come."""
        action = h.get("action")
        if action not in ACTIONS:
            raise RequestError("action must be one of %s" % ", ".join(ACTIONS), "bad_request")
        control = self.control(h)
        ranks = self.local_ranks(control, h.get("ranks"))
        cell = h.get("cell")
        request: Dict[str, Any] = {k: h[k] for k in ("code", "name", "text", "max_bytes") if k in h}
        request.update(op=action, cell=cell)
        await asyncio.gather(*(self._one(control, r, request, p, emit) for r in ranks))
        return {"ranks": ranks}

    async def _one(self, control: str, rank: int, request: Dict[str, Any], payload: bytes, emit: Any) -> None:
        try:
            reader, writer, lock = await self.link(control, rank)
        except OSError as exc:
            error = "rank %d is not serving cells: %s" % (rank, exc)
            emit({"t": "result", "rank": rank, "ok": False, "lost": True, "error": error})
            return
        async with lock:
            try:
                writer.write(wire.encode(request, payload))
                await writer.drain()
                while True:
                    frame = await wire.read_frame(reader)
                    if frame is None:
                        raise ConnectionError("the worker closed its cell socket")
                    header, data = frame
                    if header.get("cell") != request.get("cell"):
                        continue  # a late frame of an earlier, abandoned cell
                    emit(dict(header, rank=rank), data)
                    if header.get("t") == "result":
                        return
            except (OSError, ConnectionError, wire.ProtocolError) as exc:
                self.drop(control, rank)
                error = "rank %d: worker lost (%s)" % (rank, exc)
                emit({"t": "result", "rank": rank, "ok": False, "lost": True, "error": error})

    async def op_px_signal(self, h: Dict[str, Any], p: bytes, emit: Any) -> Dict[str, Any]:
        """``interrupt`` the running cell on the selected ranks, or ask ``where`` they are."""
        what = h.get("what")
        if what not in ("interrupt", "where"):
            raise RequestError("what must be interrupt or where", "bad_request")
        control = self.control(h)
        replies: Dict[str, Any] = {}

        async def one(rank: int) -> None:
            reply: Optional[Dict[str, Any]] = None
            try:
                reader, writer = await asyncio.open_unix_connection(os.path.join(control, socket_name(rank)))
            except OSError as exc:
                replies[str(rank)] = {"error": str(exc)}
                return
            try:
                writer.write(wire.encode({"op": what, "cell": h.get("cell")}))
                await writer.drain()
                frame = await asyncio.wait_for(wire.read_frame(reader), 5.0)
                reply = frame[0] if frame else None
            except (OSError, asyncio.TimeoutError, wire.ProtocolError) as exc:
                reply = {"error": str(exc) or type(exc).__name__}
            finally:
                writer.close()
            replies[str(rank)] = reply or {"error": "no answer"}

        await asyncio.gather(*(one(r) for r in self.local_ranks(control, h.get("ranks"))))
        return {"ranks": replies}


def register(agent: Any) -> None:
    px = Px(agent)
    agent.handlers["px"] = px.op_px
    agent.handlers["px_signal"] = px.op_px_signal
