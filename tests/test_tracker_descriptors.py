"""The change tracker across rebuilds: a directory rename forces a new inotify descriptor, and
neither the old descriptor's late events nor its thread may outlive that.

A late event matters because watch descriptor numbers restart at 1 in every inotify instance:
an old "directory deleted" event names a directory of the new set, and dropping that live watch
made a later edit in it invisible to ``neo sync`` (seen in CI as a symlink missing on a pod).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from jupyter_neo.sync import tracker as tracker_mod
from jupyter_neo.sync.ignore import IgnoreRules
from jupyter_neo.sync.tracker import ChangeTracker

pytestmark = pytest.mark.skipif(not tracker_mod.AVAILABLE, reason="inotify is Linux-only")


def make(tmp_path: Path) -> tuple[ChangeTracker, Path]:
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    t = ChangeTracker(root, IgnoreRules(root), tmp_path / "state")
    assert t.take() is None  # the first read is a walk
    return t, root


def inotify_instances() -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if _target(fd) == "anon_inode:inotify")


def reader_threads() -> int:
    from watchdog.observers.inotify_c import InotifyFD

    return sum(1 for t in threading.enumerate() if isinstance(t, InotifyFD) and t.is_alive())


def _target(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:
        return ""


def test_rebuilds_after_directory_renames_keep_one_descriptor_and_thread(tmp_path: Path) -> None:
    # Counted relative to what the process held before (other tests' watchers may live in it).
    threads0, instances0 = reader_threads(), inotify_instances()
    t, root = make(tmp_path)
    assert (reader_threads(), inotify_instances()) == (threads0 + 1, instances0 + 1)
    # More renames than the default per-user inotify instance limit (128): a tracker that kept
    # its old descriptors would hit EMFILE here and fall back to walking on every sync.
    for i in range(150):
        (root / ("pkg" if i % 2 == 0 else "moved")).rename(root / ("moved" if i % 2 == 0 else "pkg"))
        assert t.take() is None, "a directory moved: the tracker cannot know, it walks"
    assert (reader_threads(), inotify_instances()) == (threads0 + 1, instances0 + 1)
    (root / "pkg" / "mod.py").write_text("x = 2\n")
    assert t.take() == {"pkg/mod.py"}, "still tracking without a walk"
    t.close()
    assert (reader_threads(), inotify_instances()) == (threads0, instances0)


def test_a_replaced_descriptors_late_event_does_not_drop_a_live_watch(tmp_path: Path) -> None:
    from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent

    t, root = make(tmp_path)
    old = t._watches
    assert old is not None
    (root / "pkg").rename(root / "pkg2")
    (root / "pkg2").rename(root / "pkg")
    assert t.take() is None
    new = t._watches
    assert new is not None and new is not old
    (wd,) = [wd for wd, rel in new.dirs.items() if rel == "pkg"]
    # What the old reader thread delivers after the rebuild: "pkg's watch is gone", numbered
    # like the new descriptor's watch on pkg.
    old.on_event(InotifyEvent(wd, InotifyConstants.IN_DELETE_SELF, 0, b""))
    old.on_watch_deleted(wd)
    old.on_queue_overflow()
    (root / "pkg" / "late.py").symlink_to("mod.py")
    assert t.take() == {"pkg/late.py"}
    t.close()
