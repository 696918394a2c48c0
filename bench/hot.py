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

import statistics
from typing import Any

from bench.gang import Sample, arguments, kept, report, summary

TOOLS = {"hot": True, "cold": False, "baseline": False}
TIMINGS = ["sync", "reload", "first_output", "iteration", "launch"]


class HotRows:
    """Turns samples into rows; checks that every hot iteration ran in the warm-up's processes."""

    def __init__(self) -> None:
        self.warm: set[int] = set()

    def __call__(self, s: Sample) -> dict[str, Any]:
        pids = {r.pid for r in s.ranks.values()}
        if s.tool == "hot" and s.rep < 0:  # the cold start of the persistent rank workers
            self.warm = pids
        elif s.tool == "hot" and pids != self.warm:
            raise RuntimeError(f"hot iteration ran in new processes: {pids} vs {self.warm}")
        info = s.info
        row: dict[str, Any] = {
            "first_line": max(r.first_at for r in s.ranks.values()) - s.t_edit,
            "first_step": max(r.step_at for r in s.ranks.values()) - s.t_edit,
            **{f"neo_{k}": info[k] for k in TIMINGS if k in info and s.tool != "baseline"},
            "sync": info.get("sync", 0.0),
        }
        extra = "  ".join(f"{k} {info[k] * 1000:.0f}" for k in TIMINGS if k in info)
        print(
            f"{s.label} {s.tool:<9} first line on all ranks {row['first_line'] * 1000:7.0f} ms  "
            f"first step {row['first_step'] * 1000:7.0f} ms  [{extra}]",
            flush=True,
        )
        return row


def _med(rs: list[dict[str, Any]], key: str) -> str:
    xs = [r[key] for r in rs if key in r]
    return f"{statistics.median(xs) * 1000:.0f}" if xs else "-"


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| tool | reps | first line median ms | p90 ms | first step median ms | sync | reload | "
        "first_output | iteration |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tool, reps, rs in kept(rows, TOOLS):
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
    p = arguments(__doc__)
    p.add_argument("--tools", nargs="+", default=list(TOOLS), choices=list(TOOLS))
    args = p.parse_args(argv)
    tools = {t: hot for t, hot in TOOLS.items() if t in args.tools}
    heading = "edit -> new code's first line on all 4 ranks (ms; neo timings: median ms)"
    report("hot", args, tools, HotRows(), table, heading)


if __name__ == "__main__":
    main()
