"""Star vs relay fan-out for a first sync: latency to all pods acknowledged, and controller bytes.

    python -m bench.relay [--quick]

Loopback has no per-link limit, so this measures the *cost* of relaying (one more hop, the
leader's CPU) against the *saving* it exists for: the controller's uplink carries each byte once
instead of once per pod. On a real cluster, where the controller sits behind a slower link than
the pods' network, the saving is (N - 1) x payload / uplink bandwidth.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.results import load, write_csv

MiB = 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    sizes = [1, 8, 32] if args.quick else [1, 8, 32, 64]
    pods_list = [4] if args.quick else [4, 8]
    reps = 2 if args.quick else 3
    home = Path(tempfile.mkdtemp(prefix="neo-bench-relay-"))
    cfg = home / "neo.yaml"
    cfg.write_text("clusters:\n  - {name: wide, nodes: 8, gpus_per_node: 1}\n")
    os.environ["NEO_HOME"] = str(home / "home")
    os.environ["NEO_CONFIG"] = str(cfg)
    from jupyter_neo.client import Client
    from jupyter_neo.sync.push import SyncOptions, gang_sync_for

    rows = []
    with Client() as client:
        for pods in pods_list:
            for size in sizes:
                for mode in ("star", "relay"):
                    times, sent = [], []
                    for _ in range(reps):
                        res = client.reserve(gpus=pods, nodes=pods, idle_ttl="10m")
                        ws = Path(tempfile.mkdtemp(prefix="ws-", dir=home))
                        for i in range(max(1, size // 4)):
                            (ws / f"blob{i}.bin").write_bytes(os.urandom(min(size, 4) * MiB))
                        opts = SyncOptions(relay="on" if mode == "relay" else "off", relay_min_bytes=0)
                        gang = gang_sync_for(client.core, res, ws, opts)
                        t0 = time.perf_counter()
                        report = client.run_async(gang.sync(None))
                        times.append(time.perf_counter() - t0)
                        sent.append(report.bytes_sent)
                        client.release(res.id)
                    rows.append(
                        {
                            "pods": pods,
                            "payload_mib": size,
                            "mode": mode,
                            "median_s": statistics.median(times),
                            "controller_mib": statistics.median(sent) / MiB,
                        }
                    )
                    print(
                        f"{pods} pods {size:3d} MiB {mode:5s}: {rows[-1]['median_s'] * 1000:8.1f} ms, "
                        f"controller sent {rows[-1]['controller_mib']:7.1f} MiB",
                        flush=True,
                    )
    print(f"\nload average: {load()}; CSV: {write_csv('relay', rows, stamp=False)}", file=sys.stderr)


if __name__ == "__main__":
    main()
