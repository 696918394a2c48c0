"""The quick start on the embedded local backend: reserve a gang, use it, release it.

Run with ``make demo``. Every step is the public Python API that the ``neo`` CLI also uses.
"""

from __future__ import annotations

import time

from rich.console import Console

from jupyter_neo import Client
from jupyter_neo.cli.output import clusters_table, reservations_table

console = Console(highlight=False)


def main() -> None:
    with Client() as neo:
        console.rule("clusters")
        console.print(clusters_table(neo.clusters()))

        console.rule("reserve 16 GPUs as one gang")
        t0 = time.perf_counter()
        res = neo.reserve(gpus=16, idle_ttl="10m", progress=lambda m: console.print(f"  … {m}"))
        console.print(f"ready in {time.perf_counter() - t0:.2f}s: {res.id}")
        console.print(reservations_table(neo.status()))

        console.rule("ping every pod's agent")
        for pod, rtt in zip(res.pods, neo.ping(res.id), strict=True):
            console.print(f"  {pod.name:24} {rtt * 1000:.2f} ms")

        console.rule("release")
        done = neo.release(res.id)
        console.print(f"released {done.id}: state={done.state.value}")


if __name__ == "__main__":
    main()
