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


def test_a_line_torchrun_passed_on_in_pieces_is_joined_again(tmp_path: Path) -> None:
    """What torchrun's log tailer writes when it reads a rank's line half-written: the first part
    with a prefix, other ranks' lines, the rest with a prefix again (and chunks split anywhere)."""
    lines: list[tuple[int | None, str]] = []
    logs = RunLogs(tmp_path, lambda r, n, s, line: lines.append((r, line)))
    stream = b"[neo-rank 1]:tick 17[neo-rank 0]:loss 2.3\nstarting\n[neo-rank 1]:95.8\n[neo-rank 0]:half"
    for i in range(0, len(stream), 7):
        logs.feed(0, "stdout", stream[i : i + 7])
    logs.feed(0, "stdout", b"[neo-rank 2]:x\n")  # rank 0's piece never ends: delivered at close
    logs.close()
    assert lines == [(0, "loss 2.3"), (None, "starting"), (1, "tick 1795.8"), (2, "x"), (0, "half")]
    assert (tmp_path / "rank1.log").read_text() == "tick 1795.8\n"
    assert (tmp_path / "rank0.log").read_text() == "loss 2.3\nhalf\n"
