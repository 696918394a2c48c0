"""Property: after any sequence of create/edit/delete/rename/chmod/symlink, every pod equals the tree."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_neo.client import Client
from jupyter_neo.model import Reservation
from tests.test_sync_support import assert_pods_match, gang

__all__ = ["gang"]
NAMES = st.sampled_from(["a", "b", "c.py", "d", "ü", "e e"])
PATHS = st.lists(NAMES, min_size=1, max_size=3).map("/".join)
OPS = st.one_of(
    st.tuples(st.just("write"), PATHS, st.binary(max_size=64)),
    st.tuples(st.just("delete"), PATHS, st.none()),
    st.tuples(st.just("rename"), PATHS, PATHS),
    st.tuples(st.just("chmod"), PATHS, st.sampled_from([0o600, 0o644, 0o755, 0o700])),
    st.tuples(st.just("symlink"), PATHS, st.sampled_from(["a", "../a", "b/c.py", "d/../a"])),
    st.tuples(st.just("mkdir"), PATHS, st.none()),
)


def apply(root: Path, op: tuple[str, str, object]) -> None:
    """Apply one operation if it makes sense in the current tree; otherwise do nothing."""
    kind, rel, arg = op
    path = root / rel
    try:
        if kind == "write":
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir() and not path.is_symlink():
                return
            if path.is_symlink():
                path.unlink()
            path.write_bytes(arg)  # type: ignore[arg-type]
        elif kind == "delete":
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)
        elif kind == "rename" and (path.exists() or path.is_symlink()):
            dest = root / str(arg)
            if dest.exists() or dest.is_symlink() or str(dest).startswith(str(path) + "/"):
                return
            dest.parent.mkdir(parents=True, exist_ok=True)
            path.rename(dest)
        elif kind == "chmod" and path.is_file() and not path.is_symlink():
            path.chmod(int(arg))  # type: ignore[call-overload]
        elif kind == "symlink" and not path.exists() and not path.is_symlink():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(str(arg), path)
        elif kind == "mkdir" and not path.exists() and not path.is_symlink():
            path.mkdir(parents=True)
    except OSError:
        return  # a component is a file or a link: the operation does not apply


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(OPS, min_size=1, max_size=6), min_size=1, max_size=3))
def test_every_pod_equals_the_local_tree_after_random_edits(
    gang: tuple[Client, Reservation], tmp_path: Path, batches: list[list[tuple[str, str, object]]]
) -> None:
    client, res = gang
    root = tmp_path / "prop"
    root.mkdir(exist_ok=True)
    apply_and_check(client, res, root, batches)


def apply_and_check(
    client: Client, res: Reservation, root: Path, batches: list[list[tuple[str, str, object]]]
) -> None:
    """Apply each batch of operations, sync, and require every pod to equal the tree."""
    for batch in batches:
        for op in batch:
            apply(root, op)
        report = client.sync(res, root)
        escaping = {p for p, why in report.skipped.items() if "outside" in why}
        assert_pods_match(res, root, skip=escaping)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(OPS, min_size=1, max_size=6), min_size=1, max_size=3))
def test_the_watcher_alone_keeps_every_pod_equal_to_the_tree(
    gang: tuple[Client, Reservation], tmp_path: Path, batches: list[list[tuple[str, str, object]]]
) -> None:
    """The same random edits with no ``sync`` call: only watchdog's events (and the settle/debounce
    choice they drive) move them; every pod must end equal to the tree."""
    client, res = gang
    root = tmp_path / "watched-prop"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    with client.watch(res, root) as handle:
        for batch in batches:
            for op in batch:
                apply(root, op)
            time.sleep(0.02)  # batches a few ms apart, as saves from an editor
        deadline = time.monotonic() + 20
        while True:
            escaping = {p for r in handle.reports for p, why in r.skipped.items() if "outside" in why}
            try:
                assert_pods_match(res, root, skip=escaping)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert not handle.watcher.errors
