"""Large files and bad sync settings: streamed in bounded chunks, or refused in one line.

A file over the 512 MiB frame limit (with ``NEO_SYNC_MAX_FILE_MB`` raised so it is not skipped)
must arrive byte-identical without either side holding it whole: the controller's and the
agent's peak RSS are read from the kernel (``ru_maxrss`` of the CLI, ``VmHWM`` of the agent).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_neo.client import Client
from jupyter_neo.model import Reservation
from tests.conftest import NEO, Neo
from tests.faults.support import agent_pid, assert_one_line_error, peak_rss_mib, write_pattern
from tests.test_sync_support import assert_pods_match

# Runs the CLI and prints its own peak RSS in KiB (ru_maxrss of the one waited-for child).
MEASURE = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)"
)


def _sync_measured(neo: Neo, res: Reservation, ws: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, *NEO, "sync", res.id, "--path", str(ws)],
        env=neo.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return proc, int(proc.stderr.strip().splitlines()[-1]) / 1024


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("NEO_SYNC_RELAY_PODS", "x"),
        ("NEO_SYNC_RELAY_PODS", "0"),
        ("NEO_SYNC_RELAY_MB", "inf"),
        ("NEO_SYNC_MAX_FILE_MB", "nan"),
        ("NEO_SYNC_MAX_FILE_MB", "-1"),
        ("NEO_SYNC_RELAY", "sometimes"),
        ("NEO_SYNC_RELAY_FANOUT", "0"),
        ("NEO_SYNC_RELAY_FANOUT", "four"),
    ],
)
def test_a_bad_sync_setting_is_one_line(
    neo: Neo, one_pod: tuple[Client, Reservation], tmp_path: Path, var: str, value: str
) -> None:
    _, res = one_pod
    (tmp_path / "ws").mkdir()
    neo.env[var] = value
    proc = neo.run("sync", res.id, "--path", str(tmp_path / "ws"))
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, var)


def test_a_file_over_the_frame_limit_streams_in_bounded_memory(
    neo: Neo, one_pod: tuple[Client, Reservation], tmp_path: Path
) -> None:
    _, res = one_pod
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text("print('hi')\n")
    small, small_rss = _sync_measured(neo, res, ws)
    assert small.returncode == 0, small.stderr
    write_pattern(ws / "weights.bin", 600 * 10**6, 3)  # 600 MB: over one 512 MiB frame
    neo.env["NEO_SYNC_MAX_FILE_MB"] = "1024"
    agent = agent_pid(Path(res.pods[0].handle.dir) / "agent")
    agent_before = peak_rss_mib(agent)
    big, big_rss = _sync_measured(neo, res, ws)
    assert big.returncode == 0, big.stderr
    assert "Traceback" not in big.stderr
    agent_growth = peak_rss_mib(agent) - agent_before
    print(
        f"controller peak RSS {small_rss:.0f} MiB (small) -> {big_rss:.0f} MiB (600 MB file); "
        f"agent peak RSS +{agent_growth:.0f} MiB"
    )
    assert big_rss - small_rss < 100, f"the controller held the file: {small_rss:.0f} -> {big_rss:.0f} MiB"
    assert agent_growth < 100, f"the agent held the file: +{agent_growth:.0f} MiB"
    assert_pods_match(res, ws)
    os.unlink(ws / "weights.bin")
