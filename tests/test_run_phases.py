"""Per-rank phases from the log stream: starting -> importing (process up) -> running (first line)."""

from __future__ import annotations

from pathlib import Path

from jupyter_neo.runs.logs import RunLogs
from jupyter_neo.runs.supervisor import not_applied


def test_markers_move_ranks_through_their_phases_and_never_reach_the_logs(tmp_path: Path) -> None:
    seen: list[tuple[int, str]] = []
    lines: list[tuple[int | None, str]] = []
    logs = RunLogs(
        tmp_path, lambda r, n, s, line: lines.append((r, line)), on_phase=lambda r, p: seen.append((r, p))
    )
    logs.feed(0, "stderr", b'[neo-rank 1]:NEO_RANK_STARTED {"time": 1.0}\n')
    logs.feed(0, "stdout", b"[neo-rank 1]:hello\n[neo-rank 1]:again\n[neo-rank 0]:first\n")
    logs.close()
    assert seen == [(1, "importing"), (1, "running"), (0, "running")], "the first line only, once per rank"
    assert lines == [(1, "hello"), (1, "again"), (0, "first")]
    assert "NEO_RANK_STARTED" not in (tmp_path / "rank1.log").read_text()


def test_not_applied_names_the_file_line_and_the_generation_kept() -> None:
    assert (
        not_applied("train_ddp.py:30: '(' was never closed", 2)
        == "not applied: syntax error at train_ddp.py:30 ('(' was never closed) \u2014 ranks still run generation 2"
    )
    assert (
        not_applied("something else", 1) == "not applied: something else \u2014 ranks still run generation 1"
    )
