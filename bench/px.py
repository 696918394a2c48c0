"""Cells on 4 ranks from a warm Jupyter kernel: ``%%neo px`` vs ipyparallel ``%%px`` vs nbdistributed.

Each tool gets its own real ipykernel, driven through jupyter_client exactly as a notebook front
end drives it (execute request -> idle). Setup per tool, not measured:

- jupyter-neo: a 2 x 2 gang on the local backend (private ``NEO_HOME``), ``%neo px --start``.
- ipyparallel: ``ipp.Cluster(n=4)`` engines, the gloo process group set up by hand with ``%px``.
- nbdistributed: ``%dist_init -n 4`` (single machine only; it sets up gloo itself).

Measured: ``x = 1`` and ``dist.all_reduce(t)`` on the 4 ranks, in interleaved blocks so machine
load drifts hit every tool alike; median and p95 per (tool, cell), and the median of the first
and last quarter of the repetitions (a cell's cost must not grow with the cells already run).

    python -m bench.px [--reps 200] [--block 20] [--tools neo ipyparallel nbdistributed]
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
CELLS = {"x = 1": "x = 1", "all_reduce": "dist.all_reduce(t)"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Kernel:
    """A real ipykernel and a blocking client, as a notebook front end uses them."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(cwd))

    def run(self, code: str, timeout: float = 300) -> tuple[float, list[str]]:
        """Execute ``code``; wall seconds until the kernel is idle again, and the errors shown."""
        errors: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "error":
                errors.append("\n".join(msg["content"]["traceback"]))
            elif msg["msg_type"] == "stream" and msg["content"]["name"] == "stderr":
                text = msg["content"]["text"]
                if "Error" in text or "Traceback" in text:
                    errors.append(text)

        t0 = time.perf_counter()
        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)
        elapsed = time.perf_counter() - t0
        if reply["content"]["status"] != "ok":
            errors.append(str(reply["content"].get("evalue")))
        return elapsed, errors

    def must(self, code: str, timeout: float = 600) -> None:
        _, errors = self.run(code, timeout)
        if errors:
            raise RuntimeError(f"setup cell failed:\n{code}\n{errors[0]}")

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def setup_neo(k: Kernel) -> Callable[[str], str]:
    k.must("%load_ext jupyter_neo")
    k.must("%neo reserve --gpus 4 --nodes 2 --name bench")
    k.must("%neo px --start -r bench")
    k.must("%%neo px -r bench\nt = torch.ones(1)")
    return lambda body: f"%%neo px -r bench\n{body}"


def teardown_neo(k: Kernel) -> None:
    k.run("%neo release bench")


def setup_ipyparallel(k: Kernel) -> Callable[[str], str]:
    port = free_port()
    k.must(
        "import ipyparallel as ipp\n"
        "cluster = ipp.Cluster(n=4, log_level=40)\n"
        "rc = cluster.start_and_connect_sync()\n"
        "view = rc[:]\nview.block = True\nview.activate()\n"
        "view.scatter('rank', list(range(4)), flatten=True)"
    )
    k.must("%px import os, torch, torch.distributed as dist")
    k.must(f"%px os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT='{port}')")
    k.must("%px dist.init_process_group('gloo', rank=rank, world_size=4)")
    k.must("%px t = torch.ones(1)")
    return lambda body: f"%%px\n{body}"


def teardown_ipyparallel(k: Kernel) -> None:
    k.run("cluster.stop_cluster_sync()")


def setup_nbdistributed(k: Kernel) -> Callable[[str], str]:
    k.must("%load_ext nbdistributed")
    k.must("%dist_init -n 4")
    k.must("%%distributed\nimport torch, torch.distributed as dist\nt = torch.ones(1)")
    return lambda body: f"%%distributed\n{body}"


def teardown_nbdistributed(k: Kernel) -> None:
    k.run("%dist_shutdown")


TOOLS = {
    "neo": (setup_neo, teardown_neo),
    "ipyparallel": (setup_ipyparallel, teardown_ipyparallel),
    "nbdistributed": (setup_nbdistributed, teardown_nbdistributed),
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.px", description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=list(TOOLS))
    parser.add_argument("--quick", action="store_true", help="20 repetitions")
    args = parser.parse_args(argv)
    reps = 20 if args.quick else args.reps
    tmp = Path(tempfile.mkdtemp(prefix="neo-bench-px-"))
    env = dict(os.environ, NEO_HOME=str(tmp / "home"), XDG_CONFIG_HOME=str(tmp / "xdg"), PYTHONUNBUFFERED="1")
    env.pop("NEO_CONFIG", None)
    kernels: dict[str, Kernel] = {}
    cells: dict[str, Callable[[str], str]] = {}
    times: dict[tuple[str, str], list[float]] = {}
    try:
        for tool in args.tools:
            print(f"setting up {tool} ...", file=sys.stderr, flush=True)
            kernels[tool] = Kernel(env, tmp)
            cells[tool] = TOOLS[tool][0](kernels[tool])
        done = 0
        while done < reps:
            n = min(args.block, reps - done)
            for tool in args.tools:
                for name, body in CELLS.items():
                    code = cells[tool](body)
                    for _ in range(n):
                        elapsed, errors = kernels[tool].run(code)
                        if errors:
                            raise RuntimeError(f"{tool} {name}: {errors[0]}")
                        times.setdefault((tool, name), []).append(elapsed)
            done += n
            print(f"  {done}/{reps}", file=sys.stderr, flush=True)
    finally:
        for tool, kernel in kernels.items():
            TOOLS[tool][1](kernel)
            kernel.close()
    rows = []
    for (tool, name), values in times.items():
        q = max(1, len(values) // 4)
        rows.append(
            {
                "tool": tool,
                "cell": name,
                "reps": len(values),
                "median_ms": round(statistics.median(values) * 1000, 1),
                "p95_ms": round(pct(values, 0.95) * 1000, 1),
                "first_quarter_median_ms": round(statistics.median(values[:q]) * 1000, 1),
                "last_quarter_median_ms": round(statistics.median(values[-q:]) * 1000, 1),
            }
        )
    print(f"\ncells on 4 ranks from a warm kernel, {reps} reps each, load {os.getloadavg()[0]:.2f}")
    print(f"{'tool':<14}{'cell':<12}{'median':>9}{'p95':>9}{'1st 1/4':>9}{'last 1/4':>9}")
    for r in rows:
        print(
            f"{r['tool']:<14}{r['cell']:<12}{r['median_ms']:>7.1f}ms{r['p95_ms']:>7.1f}ms"
            f"{r['first_quarter_median_ms']:>7.1f}ms{r['last_quarter_median_ms']:>7.1f}ms"
        )
    medians = {(r["tool"], r["cell"]): r["median_ms"] for r in rows}
    for name in CELLS:
        if ("neo", name) in medians:
            for other in ("ipyparallel", "nbdistributed"):
                if (other, name) in medians:
                    ratio = medians[(other, name)] / medians[("neo", name)]
                    print(f"{name}: {other} / neo = {ratio:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"px-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
