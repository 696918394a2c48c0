"""``neo check``: turn every rank's all-reduce timings into a per-size table and outlier flags.

A node far below the others usually means its transport is wrong (NCCL fell back to TCP sockets
instead of InfiniBand, a missing RDMA device, a slow NIC). The threshold is relative, so it works
for gloo on loopback as well as NCCL on InfiniBand.
"""

from __future__ import annotations

import statistics
from typing import Any

SLOW_FRACTION = 0.5


def analyse(results: list[dict[str, Any]]) -> dict[str, Any]:
    sizes: list[dict[str, Any]] = []
    flags: list[str] = []
    for size in sorted({int(r["bytes"]) for r in results}):
        rows = [r for r in results if int(r["bytes"]) == size]
        per_node: dict[int, list[float]] = {}
        for r in rows:
            per_node.setdefault(int(r["node"]), []).append(float(r["busbw_gbps"]))
        node_bw = {n: min(v) for n, v in per_node.items()}
        slowest = min(node_bw, key=lambda n: node_bw[n])
        sizes.append(
            {
                "bytes": size,
                "backend": rows[0]["backend"],
                "algbw_gbps": statistics.median(float(r["algbw_gbps"]) for r in rows),
                "busbw_gbps": statistics.median(float(r["busbw_gbps"]) for r in rows),
                "slowest_node": slowest,
                "slowest_busbw_gbps": node_bw[slowest],
                "per_node_busbw_gbps": {str(n): bw for n, bw in sorted(node_bw.items())},
            }
        )
    if sizes and len(sizes[-1]["per_node_busbw_gbps"]) > 1:
        largest = sizes[-1]
        for node, bw in largest["per_node_busbw_gbps"].items():
            others = [b for n, b in largest["per_node_busbw_gbps"].items() if n != node]
            ref = statistics.median(others)
            if ref > 0 and bw < SLOW_FRACTION * ref:
                flags.append(
                    f"node {node} reaches {bw:.3f} GB/s bus bandwidth at {largest['bytes']} bytes, "
                    f"far below the others ({ref:.3f} GB/s): check its network (NCCL may have fallen back to TCP)"
                )
    return {"sizes": sizes, "flags": flags, "ranks": len({r["rank"] for r in results})}
