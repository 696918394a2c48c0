"""Helpers for the fault-injection tests: a real tmpfs, a process caught mid-read, one-line errors."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Neo

MiB = 2**20


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real, small tmpfs mounted at ``path`` (root only); unmounted on the way out."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "harden-sync-tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(path)], check=False, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(path)], check=False)


def write_pattern(path: Path, size: int, seed: int) -> None:
    """A file of ``size`` bytes that compresses badly (a random MiB repeated), written in chunks."""
    block = random.Random(seed).randbytes(MiB)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, MiB)
            f.write(block[:n])
            left -= n


def wait_for_open(pid: int, under: Path, timeout: float = 60.0) -> str:
    """Block until process ``pid`` holds a file below ``under`` open; return its path.

    This is how a test acts *between* two steps of a real sync without patching it: the scan
    hashes large files in the same pass as the rest of their directory, so while one of them is
    open the walk is mid-way, and what the test does now lands between scan and read.
    """
    needle = str(under) + os.sep
    deadline = time.monotonic() + timeout
    fd_dir = f"/proc/{pid}/fd"
    while time.monotonic() < deadline:
        try:
            names = os.listdir(fd_dir)
        except FileNotFoundError:
            raise AssertionError(f"process {pid} ended before it opened anything below {under}") from None
        for name in names:
            try:
                target = os.readlink(os.path.join(fd_dir, name))
            except OSError:
                continue
            if target.startswith(needle):
                return target
        time.sleep(0.0005)
    raise AssertionError(f"process {pid} never opened a file below {under}")


def assert_one_line_error(stderr: str, *needles: str) -> None:
    """The CLI failed with one ``error:`` line (plus its optional hint) and no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    other = [
        line for line in stderr.splitlines() if line.strip() and not line.startswith(("error:", "  hint:"))
    ]
    assert not other, f"more than the error and its hint:\n{stderr}"
    for needle in needles:
        assert needle.lower() in errors[0].lower(), f"{needle!r} not in {errors[0]!r}"


def agent_pid(agent_dir: Path) -> int:
    return int((agent_dir / "agent.pid").read_text())


def peak_rss_mib(pid: int) -> float:
    """The high-water mark of a live process's resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def reader_pid(neo: Neo, cli_pid: int, timeout: float = 60.0) -> int:
    """The process that reads the workspace for a ``neo`` command: the resident controller the
    command forwards to (started by it if needed), or the command itself when it runs in-process."""
    from jupyter_neo.controller.client import controller_pid

    if neo.env.get("NEO_CONTROLLER") == "off":
        return cli_pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = controller_pid(str(neo.home))
        if pid and pid > 0:
            return pid
        time.sleep(0.01)
    raise AssertionError("no controller started for the command")


def sync_while(
    neo: Neo, rid: str, ws: Path, act: Callable[[], None], under: Path | None = None
) -> tuple[int, str]:
    """Run ``neo sync`` and call ``act`` while it holds a file below ``under`` open (mid-scan).

    Returns (exit status, stderr); a sync that does not end within two minutes is killed and
    reported as a hang.
    """
    proc = neo.popen("sync", rid, "--path", str(ws))
    wait_for_open(reader_pid(neo, proc.pid), under or ws)
    act()
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("neo sync hung after the fault") from None
    return proc.returncode, err
