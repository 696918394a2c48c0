"""Syncs driven by the change tracker (the resident controller's path): random edit sequences end
byte-identical on every pod, a kernel queue overflow falls back to a full and correct scan, and
the pods prepare each next generation from an old one (O(change)) instead of cloning the tree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_neo.client import Client
from jupyter_neo.model import Reservation
from jupyter_neo.sync.push import gang_sync_for
from tests.conftest import Neo
from tests.test_sync_property import OPS, apply_and_check
from tests.test_sync_support import assert_pods_match


@pytest.fixture
def tracked(neo: Neo) -> Iterator[tuple[Client, Reservation]]:
    client = neo.client()
    client.core.track_changes = True  # what the controller's core does
    res = client.reserve(gpus=16)
    yield client, res
    client.release(res.id)
    client.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(OPS, min_size=1, max_size=6), min_size=1, max_size=4))
def test_tracked_syncs_keep_every_pod_equal_to_the_tree(
    tracked: tuple[Client, Reservation], tmp_path: Path, batches: list[list[tuple[str, str, object]]]
) -> None:
    client, res = tracked
    root = tmp_path / "prop"
    root.mkdir(exist_ok=True)
    client.sync(res, root)  # the first sync of a root walks it and starts its tracker
    gang = gang_sync_for(client.core, res, root.absolute())
    walks = gang.tracker.full_scans if gang.tracker else 0
    apply_and_check(client, res, root, batches)
    assert gang.tracker is not None
    # Walks only where the tracker could not know (directory renames, rule files), never per sync.
    renames = sum(1 for batch in batches for op in batch if op[0] == "rename")
    assert gang.tracker.full_scans - walks <= renames


def test_an_edit_is_seen_without_a_walk_and_a_queue_overflow_forces_a_correct_one(
    tracked: tuple[Client, Reservation], tmp_path: Path
) -> None:
    client, res = tracked
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    client.sync(res, root)
    gang = gang_sync_for(client.core, res, root.absolute())
    assert gang.tracker is not None
    walks = gang.tracker.full_scans

    (root / "pkg" / "mod.py").write_text("x = 2\n")
    report = client.sync(res, root)  # right after the edit: the barrier makes it visible
    assert [c.path for c in report.changes] == ["pkg/mod.py"]
    assert gang.tracker.full_scans == walks, "an edit costs no walk"
    assert_pods_match(res, root)

    # Hold the tracker while the kernel queue overflows (its reader blocks on our lock), so
    # events are really lost; the next sync must notice and walk.
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    with gang.tracker._lock:
        for i in range(limit // 2 + 100):  # create + modify + close_write: >= 2 events each
            (root / "pkg" / f"f{i}.txt").write_text(str(i))
        (root / "pkg" / "mod.py").write_text("x = 3\n")
    report = client.sync(res, root)
    assert gang.tracker.full_scans == walks + 1, "the overflow was noticed"
    assert report.added == limit // 2 + 100 and report.changed == 1
    assert_pods_match(res, root)


def test_pods_prepare_the_next_generation_from_an_old_one(
    tracked: tuple[Client, Reservation], tmp_path: Path
) -> None:
    client, res = tracked
    root = tmp_path / "ws"
    root.mkdir()
    for i in range(50):
        (root / f"m{i}.py").write_text(f"v = {i}\n")
    client.sync(res, root)
    for step in range(8):
        (root / f"m{step}.py").write_text(f"v = {step} + 1\n")
        if step == 3:
            (root / "m40.py").unlink()
            (root / "sub").mkdir()
            (root / "sub" / "new.py").write_text("n = 1\n")
        client.sync(res, root)
        assert_pods_match(res, root)
    conns = client.run_async(client.core.connect(res))
    for conn in conns:
        state = client.run_async(conn.call("ws_state", settle=True))
        # The first generations are cloned (no old generation to recycle yet); later ones are not.
        assert state["spares"]["recycled"] >= 5, state
        assert state["spares"]["cloned"] <= 4, state
