"""Per-rank logs: split each node's torchrun stream into one file per global rank.

torchrun prefixes every worker line with ``[neo-rank R]:`` (we set its prefix template); lines
without the prefix are the launcher's own and go to the node's file. torchrun reads each worker's
output file line by line and writes what it read with the prefix, so a line the worker had only
partly written (``print("tick", t)`` is four writes under ``PYTHONUNBUFFERED``) comes out in two
pieces, each with a prefix, possibly with other ranks' lines in between:
``[neo-rank 1]:tick 17[neo-rank 0]:loss 2.3`` then, later, ``[neo-rank 1]:95.8``. A prefix in the
middle of a line therefore ends an unfinished piece of that rank's line, held until its rest.
Files live under ``$NEO_HOME/runs/<run>/`` so ``neo logs`` works from any process, during and
after the run.
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

from jupyter_neo.private import open_private, private_dir

FAILED_MARKER = "NEO_RANK_FAILED "
STARTED_MARKER = "NEO_RANK_STARTED "
HOT_MARKER = "NEO_HOT "
METRIC_MARKER = "NEO_METRIC "
PREFIX = re.compile(rb"\[neo-rank (\d+)\]:")
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
        *,
        plain: bool = False,
        on_hot: Callable[[int, dict[str, Any]], None] | None = None,
        on_phase: Callable[[int, str], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_metric: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.dir = log_dir
        private_dir(self.dir)  # a run's output is its owner's, whatever the umask
        self.on_line = on_line
        self.on_hot = on_hot
        self.on_phase = on_phase or (lambda rank, phase: None)
        self.on_error = on_error
        self.write_error: str | None = None
        """Why the logs could not be written (a full disk): later lines only reach the screen."""
        self.on_metric = on_metric
        self.first_output: dict[int, float] = {}
        """rank -> monotonic time of its first user line (hot iterations measure from here)"""
        self.plain = plain
        self._files: dict[str, IO[bytes]] = {}
        self._partial: dict[tuple[int, str], bytes] = {}
        self._unended: dict[tuple[int, str, int], bytes] = {}
        """(node, stream, rank) -> the start of a rank's line that torchrun passed on unfinished"""
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
            self._files[key] = open_private(path, "ab")
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
        for (node, stream, rank), start in list(self._unended.items()):
            self._deliver(node, stream, rank, start)
        self._unended.clear()
        for f in self._files.values():
            with contextlib.suppress(OSError):
                f.flush()

    def _write(self, path: Path, data: bytes) -> None:
        """Append to a log file; the first failure (ENOSPC, EDQUOT...) is reported once, not raised.

        Raising here would surface in the middle of a connection's read loop, far from anyone
        who can end the run cleanly; the supervisor is told through ``on_error`` instead.
        """
        if self.write_error is not None:
            return
        try:
            f = self._file(path)
            f.write(data)
            f.flush()
        except OSError as exc:
            self.write_error = f"cannot write the run's logs: {exc.strerror or exc} ({path})"
            if self.on_error is not None:
                self.on_error(self.write_error)

    def _line(self, node: int, stream: str, raw: bytes) -> None:
        """One line of a node's stream: the launcher's, or one or more pieces of ranks' lines."""
        if self.plain:
            self._deliver(node, stream, node, raw)
            return
        marks = list(PREFIX.finditer(raw))
        if not marks:
            self._deliver(node, stream, None, raw)
            return
        if marks[0].start():
            self._deliver(node, stream, None, raw[: marks[0].start()])
        for mark, after in zip(marks, [*marks[1:], None], strict=True):
            key = (node, stream, int(mark.group(1)))
            piece = raw[mark.end() : after.start() if after else len(raw)]
            if after is not None:  # the line of this rank goes on in a later piece
                self._unended[key] = self._unended.get(key, b"") + piece
            else:
                self._deliver(node, stream, key[2], self._unended.pop(key, b"") + piece)

    def _deliver(self, node: int, stream: str, rank: int | None, body: bytes) -> None:
        """A whole line of ``rank`` (None: the launcher): a marker, or output for the logs."""
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
        if rank is not None and text.startswith(STARTED_MARKER):
            self.on_phase(rank, "importing")
            return
        if rank is not None and rank not in self.first_output:
            self.first_output[rank] = time.monotonic()
            self.on_phase(rank, "running")
        self._write(self.rank_path(rank) if rank is not None else self.node_path(node), body + b"\n")
        tails = (
            self.tails.setdefault(rank, deque(maxlen=40))
            if rank is not None
            else (self.node_tails.setdefault(node, deque(maxlen=80)))
        )
        tails.append(text)
        self.on_line(rank, node, stream, text)

    def unfinished(self, node: int, stream: str) -> int:
        """Bytes of a node's stream held back because their line has not ended yet."""
        return len(self._partial.get((node, stream), b""))

    def close(self, finish_lines: bool = True) -> None:
        """Close the files; ``finish_lines=False`` drops unended lines instead of writing them."""
        if not finish_lines:
            self._partial.clear()
        self.flush()
        for f in self._files.values():
            with contextlib.suppress(OSError):
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
