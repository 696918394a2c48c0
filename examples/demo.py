"""The quick start on the embedded local backend: the whole edit-run loop, no cluster needed.

``make demo`` runs this: reserve a 2-node x 2-GPU gang (all or nothing), run the DDP example with
torchrun on both nodes, edit a hyper-parameter, run again on the same warm gang, then twice more
with ``hot=True`` (the second time in the same warm rank processes), print the timings, release. Every step is the public Python API that the ``neo`` CLI also uses.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from jupyter_neo import Client
from jupyter_neo.cli.output import clusters_table, reservations_table

console = Console(highlight=False)
HERE = Path(__file__).resolve().parent


def show(rank: int | None, node: int, stream: str, line: str) -> None:
    if rank is not None and ("first step" in line or "final loss" in line or "Error" in line):
        console.print(f"  [dim]{escape(f'[node {node} rank {rank}]')}[/dim] {escape(line)}")


def main() -> None:
    workspace = Path(tempfile.mkdtemp(prefix="neo-demo-"))
    shutil.copy(HERE / "train_ddp.py", workspace / "train_ddp.py")
    timings: list[tuple[str, float, float]] = []
    with Client() as neo:
        console.rule("clusters")
        console.print(clusters_table(neo.clusters()))

        console.rule("reserve 2 nodes x 2 GPUs as one gang")
        t0 = time.perf_counter()
        res = neo.reserve(gpus=4, nodes=2, idle_ttl="10m", progress=lambda m: console.print(f"  … {m}"))
        console.print(f"ready in {time.perf_counter() - t0:.2f}s: {res.id}")
        console.print(reservations_table(neo.status()))
        try:
            for attempt, lr in enumerate(("0.05", "0.01")):
                if attempt:
                    console.rule(f"edit: lr 0.05 -> {lr} (the workspace file changes; the gang stays warm)")
                    script = workspace / "train_ddp.py"
                    script.write_text(
                        re.sub(
                            r'"--lr", type=float, default=[0-9.]+',
                            f'"--lr", type=float, default={lr}',
                            script.read_text(),
                        )
                    )
                console.rule(f"run {attempt + 1}: torchrun on 2 nodes x 2 ranks (gloo on CPU)")
                t0 = time.perf_counter()
                run = neo.run(
                    "train_ddp.py", ["--steps", "10"], reservation=res.id, workspace=workspace, on_line=show
                )
                wall = time.perf_counter() - t0
                console.print(f"run {run.id}: {run.state.value} (exit {run.exit_code}) in {wall:.2f}s")
                if run.exit_code:
                    console.print(run.error or "", markup=False)
                    raise SystemExit(run.exit_code)
                timings.append((f"run {attempt + 1} (lr={lr})", wall, run.timings.get("sync", 0.0)))

            console.rule("hot reload: the ranks stay warm, only the code changes")
            script = workspace / "train_ddp.py"
            for attempt, lr in enumerate(("0.02", "0.03")):
                if attempt:
                    script.write_text(script.read_text().replace("default=0.02", "default=0.03"))
                else:
                    script.write_text(
                        re.sub(
                            r'"--lr", type=float, default=[0-9.]+',
                            '"--lr", type=float, default=0.02',
                            script.read_text(),
                        )
                    )
                t0 = time.perf_counter()
                run = neo.run(
                    "train_ddp.py",
                    ["--steps", "10"],
                    reservation=res.id,
                    workspace=workspace,
                    on_line=show,
                    hot=True,
                )
                wall = time.perf_counter() - t0
                console.print(f"run {run.id}: {run.note}; {run.state.value} in {wall:.2f}s")
                if run.exit_code:
                    console.print(run.error or "", markup=False)
                    raise SystemExit(run.exit_code)
                timings.append((f"hot {attempt + 1} (lr={lr})", wall, run.timings.get("sync", 0.0)))
        finally:
            console.rule("release")
            done = neo.release(res.id)
            console.print(f"released {done.id}: state={done.state.value}")
    console.rule("timings")
    for name, wall, sync in timings:
        console.print(f"  {name:18} total {wall:6.2f}s   sync {sync * 1000:7.1f} ms")
    shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    main()
