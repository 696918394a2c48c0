"""Syncs driven by the change tracker (the resident controller's path): random edit sequences end
byte-identical on every pod, a kernel queue overflow falls back to a full and correct scan, and
the pods prepare each next generation from an old one (O(change)) instead of cloning the tree,
except one a run wrote into."""

from __future__ import annotations

import os
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
from tests.test_sync_support import assert_pods_match, pod_current


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


# What a run leaves in the generation it ran in: an output file, the bytecode Python writes next to
# the modules it imports, and a synced directory swapped for a symlink to somewhere else; and
# what it keeps where it should, in $NEO_OUTPUT_DIR.
LEFTOVERS = """\
import os, sys
sys.dont_write_bytecode = False
import pkg.mod
open("junk.txt", "w").write("an old run's output\\n")
open(os.path.join(os.environ["NEO_OUTPUT_DIR"], "kept.txt"), "w").write("kept on node %s\\n" % os.environ["GROUP_RANK"])
os.rename("data", "data.old")
os.symlink(sys.argv[1], "data")
"""

SHOW_OUTPUT = """\
import os
print(open(os.path.join(os.environ["NEO_OUTPUT_DIR"], "kept.txt")).read(), end="")
"""


def test_a_generation_a_run_wrote_into_is_not_carried_forward(neo: Neo, tmp_path: Path) -> None:
    """Through the CLI and the controller: a run writes into its generation; later generations are
    the local tree exactly (no output, no stale bytecode) and the agent never writes through the
    symlink the run planted. Generations no process ran under are still recycled (O(change)), and
    what the run wrote into ``$NEO_OUTPUT_DIR`` is still there for the next run."""
    ws = tmp_path / "ws"
    (ws / "pkg").mkdir(parents=True)
    (ws / "pkg" / "__init__.py").write_text("")
    (ws / "pkg" / "mod.py").write_text("X = 0\n")
    (ws / "data").mkdir()
    (ws / "data" / "a.txt").write_text("a0\n")
    (ws / "leave.py").write_text(LEFTOVERS)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.txt").write_text("not the workspace's\n")
    res = neo.json("reserve", "--gpus", "2", "--nodes", "2", "--name", "gens")
    assert isinstance(res, dict)
    neo.run("run", "-r", "gens", "--nproc-per-node", "1", "leave.py", str(outside), cwd=ws, check=True)
    client = neo.client()
    try:
        (reservation,) = client.status(res["id"])
        for rank in range(2):
            ran_in = Path(os.path.realpath(pod_current(reservation, rank)))
            assert (ran_in / "junk.txt").exists() and (ran_in / "pkg" / "__pycache__").is_dir()
            assert (ran_in / "data").is_symlink(), "the run really changed its generation"
        for step in range(1, 9):  # the run's generation falls out of the window and is reused
            (ws / "pkg" / "mod.py").write_text(f"X = {step}\n")  # same size: bytecode's check passes
            (ws / "data" / "a.txt").write_text(f"a{step}\n")
            neo.run("sync", "gens", "--path", str(ws), check=True)
            assert_pods_match(reservation, ws)
            for rank in range(2):
                assert not (pod_current(reservation, rank) / "pkg" / "__pycache__").exists()
        assert sorted(p.name for p in outside.iterdir()) == ["a.txt"]
        assert (outside / "a.txt").read_text() == "not the workspace's\n"
        for conn in client.run_async(client.core.connect(reservation)):
            spares = client.run_async(conn.call("ws_state", settle=True))["spares"]
            assert spares["written"] == 1, spares  # the run's generation was cloned around
            assert spares["recycled"] >= 4, spares  # the ones after it were reused as before
        # What the run wrote where it should, $NEO_OUTPUT_DIR, outlived all those syncs.
        (ws / "show.py").write_text(SHOW_OUTPUT)
        shown = neo.run(
            "run", "-r", "gens", "--nproc-per-node", "1", "--ranks", "all", "show.py", cwd=ws, check=True
        )
        assert "kept on node 0" in shown.stdout and "kept on node 1" in shown.stdout, shown.stdout
    finally:
        client.close()
        neo.run("release", "gens")
