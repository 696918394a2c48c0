"""Whole generations only (an atomicity probe inside a pod), and watch mode on real file events."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from jupyter_neo.client import Client
from jupyter_neo.model import Reservation
from jupyter_neo.sync import SyncReport
from tests.test_sync_support import assert_pods_match, gang, pod_current

__all__ = ["gang"]
PARTS = ["a.py", "pkg/b.py", "pkg/sub/c.py", "d.txt", "e.json"]

# The reader pins a generation the way a process does (by resolving `current` once, as its cwd
# does), reads every interdependent file, and counts generations it saw mixed.
READER = r"""
import os, sys, time
ws = os.environ["NEO_WORKSPACE"]
parts = sys.argv[1].split(",")
seen, mixed, reads, deadline = set(), 0, 0, time.time() + float(sys.argv[2])
while time.time() < deadline:
    root = os.path.realpath(ws)
    try:
        values = {open(os.path.join(root, p)).read().strip() for p in parts}
    except FileNotFoundError:
        continue  # a generation retired under a slow reader: not a mix, try the next one
    reads += 1
    seen |= values
    if len(values) != 1:
        mixed += 1
print(mixed, reads, len(seen))
"""


def write_generation(root: Path, n: int) -> None:
    for i, rel in enumerate(PARTS):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{n}" + " " * (i * 1000 * (n % 3)))  # sizes vary, content must agree
    for i, rel in enumerate(PARTS):
        text = (root / rel).read_text()
        (root / rel).write_text(text.rstrip() if i % 2 else text)


def test_a_reader_never_sees_a_mix_of_generations(gang: tuple[Client, Reservation], tmp_path: Path) -> None:
    client, res = gang
    root = tmp_path / "atomic"
    write_generation(root, 0)
    client.sync(res, root)
    conn = client.run_async(client.core.connect(res))[0]
    started = client.run_async(conn.call("exec", argv=[sys.executable, "-c", READER, ",".join(PARTS), "4"]))
    deadline = time.monotonic() + 3.5
    n = 0
    while time.monotonic() < deadline:
        n += 1
        write_generation(root, n)
        client.sync(res, root)
    out: list[bytes] = []

    async def attach() -> None:
        await conn.request("attach", proc=started["proc"], on_event=lambda h, p: out.append(p))

    client.run_async(attach())
    mixed, reads, distinct = (int(x) for x in b"".join(out).split())
    assert mixed == 0
    assert reads > 50 and distinct > 3, (reads, distinct, n)
    assert_pods_match(res, root)


def test_watch_mode_picks_up_a_real_edit(gang: tuple[Client, Reservation], tmp_path: Path) -> None:
    client, res = gang
    root = tmp_path / "watched"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "model.py").write_text("LR = 0.1\n")
    reports: list[SyncReport] = []
    with client.watch(res, root, on_report=reports.append) as handle:
        assert reports and reports[0].generation == 1
        (root / "pkg" / "model.py").write_text("LR = 0.2\n")
        (root / "new.py").write_text("print('new')\n")
        target = pod_current(res, 1) / "pkg" / "model.py"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            target.exists()
            and target.read_text() == "LR = 0.2\n"
            and (pod_current(res, 1) / "new.py").exists()
        ):
            time.sleep(0.02)
        assert target.read_text() == "LR = 0.2\n"
        (root / ".git").mkdir()
        (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")  # ignored: no sync
        time.sleep(0.4)
        assert_pods_match(res, root)
        assert len(handle.reports) >= 2
        assert all(p.latency_ms < 5000 for r in handle.reports for p in r.pods)
        assert not any(c.path.startswith(".git") for r in handle.reports for c in r.changes)


def test_a_closed_file_syncs_at_once_and_one_still_written_waits_for_quiet(
    gang: tuple[Client, Reservation], tmp_path: Path
) -> None:
    """A save (written and closed) skips the debounce; a file a writer still holds open waits for it."""
    client, res = gang
    root = tmp_path / "settle"
    root.mkdir()
    (root / "a.py").write_text("A = 0\n")
    reports: list[SyncReport] = []

    def wait_for(rel: str, text: str) -> None:
        target = pod_current(res, 0) / rel
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (target.exists() and target.read_text() == text):
            time.sleep(0.01)
        assert target.read_text() == text

    with client.watch(res, root, on_report=reports.append, debounce=2.0):
        t0 = time.monotonic()
        (root / "a.py").write_text("A = 1\n")
        wait_for("a.py", "A = 1\n")
        saved_s = time.monotonic() - t0
        before = len(reports)
        with open(root / "b.py", "w") as f:  # the writer keeps it open between its two writes
            f.write("B = ")
            f.flush()
            time.sleep(0.3)
            f.write("1\n")
        wait_for("b.py", "B = 1\n")
        time.sleep(0.3)
    assert saved_s < 1.5, f"a closed file waited for the 2 s debounce ({saved_s:.2f} s)"
    with_b = [r for r in reports[before:] if any(c.path == "b.py" for c in r.changes)]
    assert len(with_b) == 1, "a file still being written was synced before its writer finished"


def test_watch_mode_says_why_a_new_symlink_out_of_the_workspace_is_not_synced(
    gang: tuple[Client, Reservation], tmp_path: Path
) -> None:
    """Found by the hypothesis property: a save that only adds a refused path moves nothing, and
    the report saying why was dropped as a no-op; the user never heard that the link stays local."""
    client, res = gang
    root = tmp_path / "watched-link"
    root.mkdir()
    (root / "a.py").write_text("A = 1\n")
    reports: list[SyncReport] = []
    with client.watch(res, root, on_report=reports.append):
        (root / "out").symlink_to("../a.py")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("out" in r.skipped for r in reports):
            time.sleep(0.02)
        told = [r for r in reports if "out" in r.skipped]
        assert told and "outside the workspace" in told[0].skipped["out"]
        assert told[0].noop  # nothing moved: the report is there for the refusal
        (root / "a.py").write_text("A = 2\n")  # the next edit syncs; the refusal is not repeated
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (pod_current(res, 0) / "a.py").read_text() != "A = 2\n":
            time.sleep(0.02)
        time.sleep(0.3)
    assert (pod_current(res, 0) / "a.py").read_text() == "A = 2\n"
    assert not (pod_current(res, 0) / "out").exists()
    assert sum(1 for r in reports if r.noop and r.skipped) == 1
