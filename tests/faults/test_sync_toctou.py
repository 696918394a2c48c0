"""A workspace path swapped between the scan and the read: never followed, never a hang.

The swap is real and happens in the middle of a real ``neo sync``: the test waits until the CLI
holds one of the large files open (it is being hashed, so the walk of that directory is under
way) and then replaces a file that was already scanned, or a directory not yet listed.
"""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_neo.client import Client
from jupyter_neo.model import Reservation
from tests.conftest import Neo
from tests.faults.support import MiB, sync_while, write_pattern
from tests.test_sync_support import assert_pods_match, pod_current, tree

SECRET = b"TOP-SECRET outside the workspace\n"


def _workspace(tmp_path: Path) -> Path:
    """Small files and a directory at the top; large files under ``big/`` walked after them."""
    ws = tmp_path / "ws"
    (ws / "big").mkdir(parents=True)
    (ws / "train.py").write_text("print('hi')\n")
    (ws / "victim.txt").write_text("inside the workspace\n")
    for i in range(6):
        write_pattern(ws / "big" / f"shard{i}.bin", 40 * MiB, i)
    return ws


def _outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret.txt").write_bytes(SECRET)
    return out


def _replace(path: Path, make: str, target: Path | None = None) -> None:
    """Atomically replace ``path`` with a symlink to ``target`` or a FIFO (rename over it)."""
    tmp = path.with_name(path.name + ".swap")
    if make == "symlink":
        assert target is not None
        os.symlink(target, tmp)
    else:
        os.mkfifo(tmp)
    os.replace(tmp, path)


def _pod_bytes(res: Reservation) -> bytes:
    root = os.path.realpath(pod_current(res, 0))
    return b"".join(v[2] for v in tree(root).values())


def test_file_swapped_for_a_symlink_after_the_scan_is_not_followed(
    neo: Neo, one_pod: tuple[Client, Reservation], tmp_path: Path
) -> None:
    _, res = one_pod
    ws, outside = _workspace(tmp_path), _outside(tmp_path)
    # While big/ is hashed, victim.txt (top level) is scanned already and not yet read.
    rc, err = sync_while(
        neo, res.id, ws, lambda: _replace(ws / "victim.txt", "symlink", outside / "secret.txt"), ws / "big"
    )
    assert SECRET not in _pod_bytes(res), "content from outside the workspace reached the pod"
    assert rc == 0, err
    assert "Traceback" not in err
    assert "victim.txt" in err and "symlink" in err, err
    # The next sync sees the link, refuses it (it leaves the workspace) and mirrors the rest.
    again = neo.run("sync", res.id, "--path", str(ws))
    assert again.returncode == 0, again.stderr
    assert "victim.txt: symlink points outside the workspace" in again.stderr
    assert_pods_match(res, ws, skip={"victim.txt"})


def test_file_swapped_for_a_fifo_after_the_scan_does_not_hang(
    neo: Neo, one_pod: tuple[Client, Reservation], tmp_path: Path
) -> None:
    _, res = one_pod
    ws = _workspace(tmp_path)
    rc, err = sync_while(neo, res.id, ws, lambda: _replace(ws / "victim.txt", "fifo"), ws / "big")
    assert rc == 0, err
    assert "victim.txt" in err and "not a regular file" in err, err
    assert not (Path(os.path.realpath(pod_current(res, 0))) / "victim.txt").exists()
    again = neo.run("sync", res.id, "--path", str(ws), timeout=120)
    assert again.returncode == 0, again.stderr
    assert "victim.txt: not a regular file" in again.stderr
    assert_pods_match(res, ws, skip={"victim.txt"})


def test_directory_swapped_for_a_symlink_before_its_listing_is_not_entered(
    neo: Neo, one_pod: tuple[Client, Reservation], tmp_path: Path
) -> None:
    """Top-level files are hashed while the top directory is listed; ``conf/`` is listed after."""
    _, res = one_pod
    outside = _outside(tmp_path)
    ws = tmp_path / "ws"
    ws.mkdir()
    for i in range(6):
        write_pattern(ws / f"shard{i}.bin", 40 * MiB, i)
    conf = _listed_first(ws)
    (conf / "secret.txt").write_text("harmless\n")

    def swap() -> None:  # conf/ was seen as a directory; the shards after it are being hashed
        os.rename(conf, tmp_path / "conf.moved")
        os.symlink(outside, conf)

    rc, err = sync_while(neo, res.id, ws, swap)
    assert SECRET not in _pod_bytes(res), "a directory swapped for a link led the scan outside"
    assert rc == 0, err
    assert "Traceback" not in err
    again = neo.run("sync", res.id, "--path", str(ws))
    assert again.returncode == 0, again.stderr
    assert_pods_match(res, ws, skip={conf.name})


def _listed_first(ws: Path) -> Path:
    """A new directory that this filesystem lists before the files already in ``ws``.

    Directory order is the filesystem's (hash order on ext4, newest first on tmpfs); a scan stats
    entries in that order, so the directory must come first for the swap to land after its stat.
    """
    for i in range(200):
        candidate = ws / f"conf{i}"
        candidate.mkdir()
        if os.listdir(ws)[0] == candidate.name:
            return candidate
        candidate.rmdir()
    raise AssertionError("no directory name is listed first on this filesystem")
