"""Interactive ranks: one notebook cell on every selected rank of a warm hot session.

The ranks are the hot-reload workers (:mod:`neo_agent.hot`), so a cell sees the process group,
the CUDA context and whatever a ``--hot`` script built. Each pod's agent fans a cell out to its
local ranks (:mod:`neo_agent.px_ops`); here the replies of every pod are merged into one
:class:`PxResult`, and grouped for display so 32 identical answers read as one line.

Interrupts: cancelling :func:`run_px` (Ctrl-C in a terminal, the stop button of a kernel) sends
``interrupt`` to every rank - a ``KeyboardInterrupt`` inside the cell, not a kill - and waits
briefly for the cells to report. A cell where some ranks failed while others are still running
after :data:`STUCK_AFTER` seconds is almost always a collective the failed ranks never entered:
the result names the waiting ranks and where their main thread is.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jupyter_neo.errors import InvalidRequest, NeoError
from jupyter_neo.transport.connection import AgentConnection

STUCK_AFTER = 1.0
INTERRUPT_GRACE = 2.0
_cells = itertools.count(1)


@dataclass
class RankReply:
    """What one rank answered to a cell."""

    rank: int
    done: bool = False
    ok: bool = True
    output: list[tuple[str, str]] = field(default_factory=list)  # (stream, text) in arrival order
    value: dict[str, str] | None = None
    error: str | None = None
    traceback: str | None = None
    data: bytes = b""
    matches: list[str] = field(default_factory=list)
    lost: bool = False
    """The rank's worker could not be reached (it exited, or a cold restart replaced it)."""

    @property
    def text(self) -> str:
        return "".join(t for _, t in self.output)


@dataclass
class PxResult:
    """The merged replies of one cell; filled while the cell runs (live views read it)."""

    action: str
    ranks: list[int]
    replies: dict[int, RankReply] = field(default_factory=dict)
    waiting: dict[int, list[str]] = field(default_factory=dict)
    interrupted: bool = False

    def reply(self, rank: int) -> RankReply:
        if rank not in self.replies:
            self.replies[rank] = RankReply(rank)
        return self.replies[rank]

    @property
    def done(self) -> bool:
        return all(self.reply(r).done for r in self.ranks)

    @property
    def ok(self) -> bool:
        return all(self.reply(r).ok for r in self.ranks)

    @property
    def failed(self) -> list[int]:
        return [r for r in self.ranks if self.reply(r).done and not self.reply(r).ok]

    def values(self) -> dict[int, str | None]:
        """Each rank's value as text (None: the cell ended on a statement or failed)."""
        return {r: (self.reply(r).value or {}).get("text/plain") for r in self.ranks}


def group(items: dict[int, Any]) -> list[tuple[list[int], Any]]:
    """Ranks with equal items, in first-rank order: ``{0: a, 1: a, 2: b}`` -> ``[([0, 1], a), ([2], b)]``."""
    groups: dict[Any, list[int]] = {}
    for rank in sorted(items):
        groups.setdefault(items[rank], []).append(rank)
    return sorted(((ranks, item) for item, ranks in groups.items()), key=lambda g: g[0][0])


def rank_label(ranks: Sequence[int]) -> str:
    """``[0, 1, 2, 3]`` -> ``ranks 0\u20133``; ``[0, 2]`` -> ``ranks 0,2``; ``[5]`` -> ``rank 5``."""
    ranks = sorted(ranks)
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    if ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"ranks {ranks[0]}\u2013{ranks[-1]}"
    return "ranks " + ",".join(map(str, ranks))


def select_ranks(spec: str | None, nodes: int, per_node: int) -> list[int]:
    """``all`` (or None), ``0,3``, ``node:1`` -> global ranks (node-major, as torchrun numbers them)."""
    world = nodes * per_node
    if spec is None or spec == "all":
        return list(range(world))
    picked: set[int] = set()
    for raw in spec.split(","):
        part = raw.strip()
        try:
            if part.startswith("node:"):
                node = int(part[5:])
                if not 0 <= node < nodes:
                    raise InvalidRequest(f"--ranks {spec}: node {node} is not in 0..{nodes - 1}")
                picked.update(range(node * per_node, (node + 1) * per_node))
            else:
                rank = int(part)
                if not 0 <= rank < world:
                    raise InvalidRequest(f"--ranks {spec}: rank {rank} is not in 0..{world - 1}")
                picked.add(rank)
        except ValueError:
            raise InvalidRequest(f"--ranks {spec}: use all, a list like 0,3, or node:N") from None
    return sorted(picked)


OnChange = Callable[[PxResult], None]


async def run_px(
    conns: list[AgentConnection],
    session: str,
    action: str,
    ranks: list[int],
    *,
    result: PxResult | None = None,
    on_change: OnChange | None = None,
    payload: bytes = b"",
    **fields: Any,
) -> PxResult:
    """Send one cell action to every pod and merge the replies into ``result`` as they arrive."""
    result = result or PxResult(action, ranks)
    cell = next(_cells)
    notify = on_change or (lambda r: None)

    def on_event(header: dict[str, Any], data: bytes) -> None:
        rank = header.get("rank")
        if not isinstance(rank, int) or rank not in ranks:
            return
        reply = result.reply(rank)
        kind = header.get("t")
        if kind == "out":
            reply.output.append((str(header.get("stream")), str(header.get("text", ""))))
        elif kind == "result":
            reply.done = True
            reply.ok = bool(header.get("ok"))
            reply.value = header.get("value")
            reply.error = header.get("error")
            reply.traceback = header.get("traceback")
            reply.matches = list(header.get("matches") or [])
            reply.lost = bool(header.get("lost"))
            reply.data = data
        notify(result)

    async def one(conn: AgentConnection) -> None:
        await conn.request(
            "px", payload, on_event=on_event, session=session, action=action, ranks=ranks, cell=cell, **fields
        )

    calls = asyncio.gather(*(one(c) for c in conns))
    try:
        await _watch(calls, conns, session, result, notify)
    except asyncio.CancelledError:
        result.interrupted = True
        await _interrupt(conns, session, ranks, calls)
        notify(result)
        raise
    for rank in ranks:
        if not result.reply(rank).done:  # the pod answered without this rank: it has no worker
            reply = result.reply(rank)
            reply.done, reply.ok, reply.lost = True, False, True
            reply.error = f"rank {rank} has no live worker"
    return result


async def _watch(
    calls: asyncio.Future[Any], conns: list[AgentConnection], session: str, result: PxResult, notify: OnChange
) -> None:
    """Wait for the cell; if some ranks failed and the rest are still in it, say where they wait."""
    try:
        await asyncio.wait_for(asyncio.shield(calls), STUCK_AFTER)
        return
    except TimeoutError:
        pass
    while True:
        if result.failed and not result.waiting:
            pending = [r for r in result.ranks if not result.reply(r).done]
            if pending:
                result.waiting = await where(conns, session, pending)
                notify(result)
        try:
            await asyncio.wait_for(asyncio.shield(calls), 0.25)
            return
        except TimeoutError:
            continue


async def where(conns: list[AgentConnection], session: str, ranks: list[int]) -> dict[int, list[str]]:
    """Each rank's innermost frames while a cell runs."""
    found: dict[int, list[str]] = {}
    for reply in await asyncio.gather(
        *(c.call("px_signal", session=session, what="where", ranks=ranks) for c in conns),
        return_exceptions=True,
    ):
        if isinstance(reply, dict):
            for rank, info in reply.get("ranks", {}).items():
                if isinstance(info, dict) and info.get("busy"):
                    found[int(rank)] = list(info.get("stack") or [])
    return found


async def _interrupt(
    conns: list[AgentConnection], session: str, ranks: list[int], calls: asyncio.Future[Any]
) -> None:
    """KeyboardInterrupt in every rank's cell, then give the cells a moment to report it."""
    with contextlib.suppress(NeoError, OSError):
        await asyncio.gather(
            *(c.call("px_signal", session=session, what="interrupt", ranks=ranks) for c in conns),
            return_exceptions=True,
        )
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(asyncio.shield(calls), INTERRUPT_GRACE)
