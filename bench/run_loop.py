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

import statistics
from typing import Any

from bench.gang import Sample, arguments, kept, report, summary

TOOLS = {"neo": False, "baseline": False}
PHASES = ["sync", "process_start", "torch_import", "init_pg", "first_step"]


def row(s: Sample) -> dict[str, Any]:
    """The phases on the rank that finished its first step last (the critical path)."""
    last = max(s.ranks.values(), key=lambda r: r.step)
    sync = s.info.get("sync", 0.0)
    out: dict[str, Any] = {
        "total": last.step - s.t_edit,
        "sync": sync,
        "process_start": last.start - s.t_edit - sync,
        "torch_import": last.imported - last.start,
        "init_pg": last.init - last.imported,
        "first_step": last.step - last.init,
    }
    print(
        f"{s.label} {s.tool:<9} total {out['total'] * 1000:7.0f} ms  "
        + "  ".join(f"{p} {out[p] * 1000:6.0f}" for p in PHASES),
        flush=True,
    )
    return out


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| tool | reps | total median ms | p90 ms | sync | process start | torch import | init_process_group | first step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tool, reps, rs in kept(rows, TOOLS):
        med, p90 = summary([r["total"] for r in rs])
        phases = " | ".join(f"{statistics.median(r[p] for r in rs) * 1000:.0f}" for p in PHASES)
        out.append(f"| {tool} | {reps} | {med:.0f} | {p90:.0f} | {phases} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    args = arguments(__doc__).parse_args(argv)
    heading = "edit -> first training step on all 4 ranks (phases: median ms, critical rank)"
    report("run_loop", args, TOOLS, row, table, heading)


if __name__ == "__main__":
    main()
