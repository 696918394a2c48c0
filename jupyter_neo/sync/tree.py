"""Relay tree: the controller sends each sync frame to one pod, and pods forward it down a k-ary tree.

Why: with a star, the controller writes one ``ws_sync`` frame (delta + new content) per pod, so
its uplink for a one-line edit grows linearly with the gang (64 pods: 64 copies). With relay
fan-out on (docs/sync.md), the controller builds, once per set of warm connections, a tree over
the gang's pods (pod ``i``'s children are ``k*i+1 .. k*i+k``; depth ``log_k N``) by giving each
non-root pod a relay token (``ws_relay_serve`` with a sliding ``ttl``) and each parent its
children (``ws_relay_children``). Each later sync is then one frame to the root; the pods apply it
and forward it at the same time (``neo_agent.relay_ops``), and the root's reply lists every pod.

Building the tree costs O(N) small frames once (like opening the warm streams themselves); a
sync through it costs the controller's uplink O(1) frames. Anything the tree cannot do (a pod
unreachable, a mismatching or failed pod) is finished over that pod's own connection, so the
tree can make a sync cheaper, never make it fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jupyter_neo.errors import InvalidRequest, NeoError

if TYPE_CHECKING:
    from jupyter_neo.model import Pod
    from jupyter_neo.transport.connection import AgentConnection

TREE_TTL = 1800  # seconds a child's tree token lives unused (refreshed by every forwarded sync)
RETRY_AFTER = 300.0  # after a tree could not reach a pod, star for this long before trying again


def fanout_from_env() -> int:
    """``NEO_SYNC_RELAY_FANOUT``: children per pod in the relay tree (default 4)."""
    raw = os.environ.get("NEO_SYNC_RELAY_FANOUT", "4")
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        raise InvalidRequest(
            f"NEO_SYNC_RELAY_FANOUT must be a whole number from 1 to 64 (got {raw!r})",
            "unset NEO_SYNC_RELAY_FANOUT or set e.g. NEO_SYNC_RELAY_FANOUT=4",
        )
    return value


def layout(n: int, k: int) -> dict[int, list[int]]:
    """Children of each pod index in a k-ary tree rooted at 0 (pods without children left out)."""
    out: dict[int, list[int]] = {}
    for i in range(n):
        kids = [j for j in range(k * i + 1, k * i + k + 1) if j < n]
        if kids:
            out[i] = kids
    return out


def depth(n: int, k: int) -> int:
    """Hops from the root to the deepest pod."""
    d, last = 0, 0
    while last < n - 1:
        last = k * last + k
        d += 1
    return d


@dataclass
class _Tree:
    id: str
    key: tuple[int, ...]  # the connections it was built over (a reconnect may be a new agent)
    fanout: int
    offers: list[dict[str, Any]]  # pod i+1's relay listener and token (the root needs none)


_trees: weakref.WeakKeyDictionary[AgentConnection, _Tree] = weakref.WeakKeyDictionary()
_broken: dict[str, float] = {}  # reservation id -> when its tree last failed to reach a pod


async def ensure(res_id: str, pods: list[Pod], conns: list[AgentConnection], fanout: int) -> str | None:
    """The id of a relay tree over ``conns`` (built now if needed); None: use the star."""
    if time.monotonic() - _broken.get(res_id, -RETRY_AFTER) < RETRY_AFTER:
        return None
    root = conns[0]
    key = tuple(id(c) for c in conns)
    tree = _trees.get(root)
    if tree is not None and tree.key == key and tree.fanout == fanout:
        return tree.id
    tree_id = secrets.token_hex(8)
    try:
        offers = await asyncio.gather(
            *(
                c.call("ws_relay_serve", host=p.address, ttl=TREE_TTL)
                for p, c in zip(pods[1:], conns[1:], strict=True)
            )
        )
        plan = layout(len(pods), fanout)
        await asyncio.gather(
            *(
                conns[i].call(
                    "ws_relay_children",
                    tree=tree_id,
                    children=[
                        {
                            "pod": pods[j].name,
                            "host": offers[j - 1]["host"],
                            "port": offers[j - 1]["port"],
                            "token": offers[j - 1]["token"],
                        }
                        for j in kids
                    ],
                )
                for i, kids in plan.items()
            )
        )
    except NeoError:  # an agent without tree support, or a pod that cannot listen: star
        broken(res_id, root)
        return None
    _trees[root] = _Tree(tree_id, key, fanout, list(offers))
    return tree_id


def broken(res_id: str, root: AgentConnection) -> None:
    """The tree failed to reach some pod: forget it and use the star for a while."""
    _trees.pop(root, None)
    _broken[res_id] = time.monotonic()


__all__ = ["TREE_TTL", "broken", "depth", "ensure", "fanout_from_env", "layout"]
