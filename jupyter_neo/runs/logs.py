"""Per-rank logs: split each node's torchrun stream into one file per global rank.

torchrun prefixes every worker line with ``[neo-rank R]:`` (we set its prefix template); lines
without the prefix are the launcher's own and go to the node's file. Files live under
``$NEO_HOME/runs/<run>/`` so ``neo logs`` works from any process, during and after the run.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

FAILED_MARKER = "NEO_RANK_FAILED "
HOT_MARKER = "NEO_HOT "
METRIC_MARKER = "NEO_METRIC "
PREFIX = re.compile(rb"^\[neo-rank (\d+)\]:")
# torchrun's failure summary: "rank      : 3 (local_rank: 1)" then "exitcode  : 1 (pid: 123)"
SUMMARY_RANK = re.compile(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\)")
SUMMARY_EXIT = re.compile(r"exitcode\s*:\s*(-?\d+)")

LineCallback = Callable[[int | None, int, str, str], None]
"""(global rank or None for launcher lines, node, stream, line without newline)"""


class RunLogs:
    """Demultiplexes node streams into rank files and keeps a tail of each rank in memory."""

    def __init__(
        self,
        log_dir: Path,
        on_line: LineCallback,
        plain: bool = False,
        on_hot: Callable[[int, dict[str, Any]], None] | None = None,
        on_metric: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.dir = log_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.on_line = on_line
        self.on_hot = on_hot
        self.on_metric = on_metric
        self.first_output: dict[int, float] = {}
        """rank -> monotonic time of its first user line (hot iterations measure from here)"""
        self.plain = plain
        self._files: dict[str, IO[bytes]] = {}
        self._partial: dict[tuple[int, str], bytes] = {}
        self.tails: dict[int, deque[str]] = {}
        self.failures: dict[int, float] = {}
        """rank -> wall-clock time its code raised (from the rank entry's NEO_RANK_FAILED line)"""
        self.node_tails: dict[int, deque[str]] = {}

    def rank_path(self, rank: int) -> Path:
        return self.dir / f"rank{rank}.log"

    def node_path(self, node: int) -> Path:
        return self.dir / f"node{node}.log"

    def _file(self, path: Path) -> IO[bytes]:
        key = str(path)
        if key not in self._files:
            self._files[key] = path.open("ab")
        return self._files[key]

    def feed(self, node: int, stream: str, data: bytes) -> None:
        """Accept a chunk of a node's stdout/stderr (chunks may split lines anywhere)."""
        buf = self._partial.pop((node, stream), b"") + data
        *lines, rest = buf.split(b"\n")
        if rest:
            self._partial[(node, stream)] = rest
        for raw in lines:
            self._line(node, stream, raw)

    def flush(self) -> None:
        for (node, stream), rest in list(self._partial.items()):
            self._line(node, stream, rest)
        self._partial.clear()
        for f in self._files.values():
            f.flush()

    def _line(self, node: int, stream: str, raw: bytes) -> None:
        rank: int | None
        match = PREFIX.match(raw)
        if self.plain:
            rank, body = node, raw
        elif match:
            rank, body = int(match.group(1)), raw[match.end() :]
        else:
            rank, body = None, raw
        text = body.decode("utf-8", errors="replace")
        # The rank entry's markers are protocol, not output: they never reach a log or a screen.
        if rank is not None and text.startswith(HOT_MARKER):
            with contextlib.suppress(ValueError):
                event = json.loads(text[len(HOT_MARKER) :])
                if self.on_hot is not None and isinstance(event, dict):
                    self.on_hot(rank, event)
            return
        if rank is not None and text.startswith(METRIC_MARKER):
            with contextlib.suppress(ValueError):
                record = json.loads(text[len(METRIC_MARKER) :])
                if self.on_metric is not None and isinstance(record, dict):
                    self.on_metric(dict(record, rank=rank))
            return
        if rank is not None and text.startswith(FAILED_MARKER):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self.failures.setdefault(rank, float(json.loads(text[len(FAILED_MARKER) :])["time"]))
            return
        if rank is not None:
            self.first_output.setdefault(rank, time.monotonic())
        f = self._file(self.rank_path(rank) if rank is not None else self.node_path(node))
        f.write(body + b"\n")
        f.flush()
        tails = (
            self.tails.setdefault(rank, deque(maxlen=40))
            if rank is not None
            else (self.node_tails.setdefault(node, deque(maxlen=80)))
        )
        tails.append(text)
        self.on_line(rank, node, stream, text)

    def close(self) -> None:
        self.flush()
        for f in self._files.values():
            f.close()
        self._files.clear()


def failed_ranks(launcher_lines: list[str]) -> dict[int, int]:
    """Global rank -> exit code, from torchrun's failure summary on one node."""
    out: dict[int, int] = {}
    pending: int | None = None
    for line in launcher_lines:
        m = SUMMARY_RANK.search(line)
        if m:
            pending = int(m.group(1))
            continue
        m = SUMMARY_EXIT.search(line)
        if m and pending is not None:
            out.setdefault(pending, int(m.group(1)))
            pending = None
    return out


def tail_file(path: Path, lines: int) -> list[str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return (
        data.decode("utf-8", errors="replace").splitlines()[-lines:]
        if lines
        else data.decode("utf-8", errors="replace").splitlines()
    )
