"""Run-loop benchmark (issue #4): edit -> first DDP training step on every rank, warm 2x2 gang.

Run: ``python -m bench.run_loop`` (``--quick``: 3 repetitions). ``neo`` = ``Client.run`` on a warm
reservation (sync + torchrun relaunch on both pods); ``baseline`` = rsync to each node's copy of
the workspace + two ``torchrun --node-rank i`` processes. Tool order alternates between
repetitions; one unmeasured warm-up iteration per tool first. Breakdown, on the rank that
finished its first step last (the critical path), all from ``time.time()`` on one machine:

- sync: neo's ``run.timings["sync"]`` (connect + sync), the baseline's parallel rsync;
- process start: edit -> script start, minus sync (launcher, torchrun, rendezvous, interpreter);
- torch import, init_process_group, first step: from the stamps of ``train_ddp_timed.py``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from typing import Any

from bench.gang import (
    RANKS,
    Baseline,
    Incomplete,
    Recorder,
    Workspace,
    load,
    local_client,
    neo_iterate,
    new_work,
    summary,
    write_csv,
)

TOOLS = ["neo", "baseline"]
PHASES = ["sync", "process_start", "torch_import", "init_pg", "first_step"]


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    work = new_work()
    ws = Workspace(work / "ws", args.files)
    base = Baseline(work, ws, args.steps)
    rec = Recorder()
    rows: list[dict[str, Any]] = []
    try:
        with local_client(work) as client:
            res = client.reserve(gpus=RANKS, nodes=2, cluster="bench", idle_ttl=None)

            def once(tool: str) -> tuple[int, float, dict[str, float]]:
                gen = ws.edit()
                t_edit = time.time()
                if tool == "neo":
                    info = neo_iterate(client, res, ws, rec, args.steps, hot=False)
                else:
                    info = base.iterate(rec)
                return gen, t_edit, info

            for tool in TOOLS:  # warm-up: first sync of the pods/copies, page cache, torch on disk
                once(tool)
            for rep in range(args.reps):
                order = TOOLS if rep % 2 == 0 else TOOLS[::-1]
                for tool in order:
                    gen, t_edit, info = once(tool)
                    try:
                        ranks = rec.complete(gen)
                    except Incomplete as exc:
                        print(f"rep {rep} {tool}: sample dropped: {exc}", flush=True)
                        rows.append({"tool": tool, "rep": rep, "dropped": 1})
                        continue
                    last = max(ranks.values(), key=lambda r: r.step)
                    sync = info.get("sync", 0.0)
                    row: dict[str, Any] = {
                        "tool": tool,
                        "rep": rep,
                        "total": last.step - t_edit,
                        "sync": sync,
                        "process_start": last.start - t_edit - sync,
                        "torch_import": last.imported - last.start,
                        "init_pg": last.init - last.imported,
                        "first_step": last.step - last.init,
                        "load1": load().split()[0],
                    }
                    rows.append(row)
                    print(
                        f"rep {rep} {tool:<9} total {row['total'] * 1000:7.0f} ms  "
                        + "  ".join(f"{p} {row[p] * 1000:6.0f}" for p in PHASES),
                        flush=True,
                    )
    finally:
        base.close()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| tool | reps | total median ms | p90 ms | sync | process start | torch import | init_process_group | first step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tool in TOOLS:
        rs = [r for r in rows if r["tool"] == tool and not r.get("dropped")]
        dropped = sum(1 for r in rows if r["tool"] == tool and r.get("dropped"))
        reps = f"{len(rs)}" + (f" ({dropped} dropped)" if dropped else "")
        if not rs:
            continue
        med, p90 = summary([r["total"] for r in rs])
        phases = " | ".join(f"{statistics.median(r[p] for r in rs) * 1000:.0f}" for p in PHASES)
        out.append(f"| {tool} | {reps} | {med:.0f} | {p90:.0f} | {phases} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=10)
    p.add_argument(
        "--files", type=int, default=1000, help="generated modules in the workspace besides the script"
    )
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="3 repetitions")
    args = p.parse_args(argv)
    if args.quick:
        args.reps = 3
    before = load()
    rows = measure(args)
    print(
        f"\nedit -> first training step on all 4 ranks (phases: median ms, critical rank); load {before} -> {load()}"
    )
    print(table(rows))
    print(f"wrote {write_csv('run_loop', rows)}")


if __name__ == "__main__":
    main()
