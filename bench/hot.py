"""Hot-reload benchmark (issue #9): edit -> every rank prints its first line with the new code.

Run: ``python -m bench.hot`` (``--quick``: 3 repetitions). Warm 2x2 gangs on the local backend:

- ``hot``: ``Client.run(..., hot=True)`` after one unmeasured cold-start hot run; the persistent
  rank workers re-run the edited script (same PIDs, checked);
- ``cold``: ``Client.run`` without ``hot`` (sync + torchrun restart) on a second warm reservation
  (the hot workers keep the first one busy);
- ``baseline``: rsync to each node's copy + two fresh ``torchrun --node-rank i``.

Latency = edit (file written) -> the ``BENCH first`` line of the new generation has reached the
benchmark process from all 4 ranks (the script prints it after ``init_process_group``). Tool
order rotates between repetitions. Also reported: neo's ``run.timings`` (sync, reload,
first_output, iteration: seconds, measured by the controller from its notification of the ranks).
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

TOOLS = ["hot", "cold", "baseline"]
TIMINGS = ["sync", "reload", "first_output", "iteration", "launch"]


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    work = new_work()
    ws = Workspace(work / "ws", args.files)
    base = Baseline(work, ws, args.steps)
    rec = Recorder()
    rows: list[dict[str, Any]] = []
    try:
        with local_client(work) as client:
            res_hot = client.reserve(gpus=RANKS, nodes=2, cluster="bench", idle_ttl=None)
            res_cold = client.reserve(gpus=RANKS, nodes=2, cluster="bench", idle_ttl=None)

            def once(tool: str) -> tuple[int, float, dict[str, float]]:
                gen = ws.edit()
                t_edit = time.time()
                if tool == "baseline":
                    info = base.iterate(rec)
                else:
                    res = res_hot if tool == "hot" else res_cold
                    info = neo_iterate(client, res, ws, rec, args.steps, hot=tool == "hot")
                return gen, t_edit, info

            tools = [t for t in TOOLS if t in args.tools]
            warm: dict[str, set[int]] = {}
            for tool in tools:  # warm-up; for hot this is the cold start of the workers
                gen, _, _ = once(tool)
                warm[tool] = {r.pid for r in rec.complete(gen).values()}
            for rep in range(args.reps):
                k = rep % len(tools)
                for tool in tools[k:] + tools[:k]:
                    gen, t_edit, info = once(tool)
                    try:
                        ranks = rec.complete(gen)
                    except Incomplete as exc:
                        print(f"rep {rep} {tool}: sample dropped: {exc}", flush=True)
                        rows.append({"tool": tool, "rep": rep, "dropped": 1})
                        continue
                    pids = {r.pid for r in ranks.values()}
                    if tool == "hot" and pids != warm["hot"]:
                        raise RuntimeError(f"hot iteration ran in new processes: {pids} vs {warm['hot']}")
                    row: dict[str, Any] = {
                        "tool": tool,
                        "rep": rep,
                        "first_line": max(r.first_at for r in ranks.values()) - t_edit,
                        "first_step": max(r.step_at for r in ranks.values()) - t_edit,
                        **{f"neo_{k}": info[k] for k in TIMINGS if k in info and tool != "baseline"},
                        "sync": info.get("sync", 0.0),
                        "load1": load().split()[0],
                    }
                    rows.append(row)
                    extra = "  ".join(f"{k} {info[k] * 1000:.0f}" for k in TIMINGS if k in info)
                    print(
                        f"rep {rep} {tool:<9} first line on all ranks {row['first_line'] * 1000:7.0f} ms  "
                        f"first step {row['first_step'] * 1000:7.0f} ms  [{extra}]",
                        flush=True,
                    )
    finally:
        base.close()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _med(rs: list[dict[str, Any]], key: str) -> str:
    xs = [r[key] for r in rs if key in r]
    return f"{statistics.median(xs) * 1000:.0f}" if xs else "-"


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| tool | reps | first line median ms | p90 ms | first step median ms | sync | reload | "
        "first_output | iteration |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tool in TOOLS:
        rs = [r for r in rows if r["tool"] == tool and not r.get("dropped")]
        dropped = sum(1 for r in rows if r["tool"] == tool and r.get("dropped"))
        reps = f"{len(rs)}" + (f" ({dropped} dropped)" if dropped else "")
        if not rs:
            continue
        med, p90 = summary([r["first_line"] for r in rs])
        step, _ = summary([r["first_step"] for r in rs])
        neo = " | ".join(_med(rs, f"neo_{k}") for k in ("reload", "first_output", "iteration"))
        out.append(f"| {tool} | {reps} | {med:.0f} | {p90:.0f} | {step:.0f} | {_med(rs, 'sync')} | {neo} |")
    hot = [r["first_line"] for r in rows if r["tool"] == "hot" and not r.get("dropped")]
    cold = [r["first_line"] for r in rows if r["tool"] == "cold" and not r.get("dropped")]
    if hot and cold:
        out.append(
            f"\nhot vs cold: {statistics.median(cold) / statistics.median(hot):.1f}x faster (median); "
            f"target hot <= 500 ms and >= 5x"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=10)
    p.add_argument(
        "--files", type=int, default=1000, help="generated modules in the workspace besides the script"
    )
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--tools", nargs="+", default=TOOLS, choices=TOOLS)
    p.add_argument("--quick", action="store_true", help="3 repetitions")
    args = p.parse_args(argv)
    if args.quick:
        args.reps = 3
    before = load()
    rows = measure(args)
    print(
        f"\nedit -> new code's first line on all 4 ranks (ms; neo timings: median ms); load {before} -> {load()}"
    )
    print(table(rows))
    print(f"wrote {write_csv('hot', rows)}")


if __name__ == "__main__":
    main()
