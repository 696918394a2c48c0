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
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.gang import free_port
from bench.results import pctl, write_csv

CELLS = {"x = 1": "x = 1", "all_reduce": "dist.all_reduce(t)"}


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


@dataclass(frozen=True)
class Tool:
    """How one tool gets its 4 ranks ready in a kernel, sends them a cell, and lets them go.

    ``kernel`` cells run in the kernel itself (load the extension, start the ranks); ``ranks``
    is the first cell every rank runs (torch, the gloo group, the tensor ``t``), sent the way
    measured cells are: under ``magic``. A cell may name ``{port}``: a free port picked at start.
    """

    kernel: tuple[str, ...]
    magic: str
    ranks: str
    stop: str

    def start(self, k: Kernel) -> None:
        port = free_port()
        for code in (*self.kernel, self.cell(self.ranks)):
            k.must(code.format(port=port))

    def cell(self, body: str) -> str:
        return f"{self.magic}\n{body}"


TOOLS = {
    "neo": Tool(
        kernel=(
            "%load_ext jupyter_neo",
            "%neo reserve --gpus 4 --nodes 2 --name bench",
            "%neo px --start -r bench",
        ),
        magic="%%neo px -r bench",
        ranks="t = torch.ones(1)",
        stop="%neo release bench",
    ),
    "ipyparallel": Tool(
        kernel=(
            "import ipyparallel as ipp\n"
            "cluster = ipp.Cluster(n=4, log_level=40)\n"
            "rc = cluster.start_and_connect_sync()\n"
            "view = rc[:]\nview.block = True\nview.activate()\n"
            "view.scatter('rank', list(range(4)), flatten=True)",
        ),
        magic="%%px",
        ranks="import os, torch, torch.distributed as dist\n"
        "os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT='{port}')\n"
        "dist.init_process_group('gloo', rank=rank, world_size=4)\n"
        "t = torch.ones(1)",
        stop="cluster.stop_cluster_sync()",
    ),
    "nbdistributed": Tool(
        kernel=("%load_ext nbdistributed", "%dist_init -n 4"),
        magic="%%distributed",
        ranks="import torch, torch.distributed as dist\nt = torch.ones(1)",
        stop="%dist_shutdown",
    ),
}


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
    times: dict[tuple[str, str], list[float]] = {}
    try:
        for tool in args.tools:
            print(f"setting up {tool} ...", file=sys.stderr, flush=True)
            kernels[tool] = Kernel(env, tmp)
            TOOLS[tool].start(kernels[tool])
        done = 0
        while done < reps:
            n = min(args.block, reps - done)
            for tool in args.tools:
                for name, body in CELLS.items():
                    code = TOOLS[tool].cell(body)
                    for _ in range(n):
                        elapsed, errors = kernels[tool].run(code)
                        if errors:
                            raise RuntimeError(f"{tool} {name}: {errors[0]}")
                        times.setdefault((tool, name), []).append(elapsed)
            done += n
            print(f"  {done}/{reps}", file=sys.stderr, flush=True)
    finally:
        for tool, kernel in kernels.items():
            kernel.run(TOOLS[tool].stop)
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
                "p95_ms": round(pctl(values, 0.95) * 1000, 1),
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
    print(f"wrote {write_csv('px', rows)}")


if __name__ == "__main__":
    main()
