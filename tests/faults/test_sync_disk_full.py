"""Disk full during a sync, on a real (small) tmpfs: one line, nothing left over, and a retry works.

Two disks fill up: the pod's workspace (content arrives and does not fit) and the controller's
stat-cache directory (the sync itself succeeds; saving its cache fails).
"""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_neo.client import Client
from jupyter_neo.model import Reservation
from tests.conftest import Neo
from tests.faults.support import MiB, assert_one_line_error, tmpfs, write_pattern
from tests.test_sync_support import assert_pods_match


def _pod_workspace_on_tmpfs(ws: Path) -> None:
    """What the agent's claim created, recreated on the fresh (empty) mount."""
    (ws / "gens" / "0").mkdir(parents=True)
    os.symlink(os.path.join("gens", "0"), ws / "current")


def _leftovers(ws: Path) -> list[str]:
    """Objects no generation links to, and anything under tmp/ (partial uploads, spare trees)."""
    out = [f"objects/{p.name}" for p in (ws / "objects").iterdir() if p.stat().st_nlink == 1]
    out += [f"tmp/{p.name}" for p in (ws / "tmp").iterdir()]
    return out


def _used_mib(path: Path) -> float:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize / MiB


def test_pod_disk_full_cleans_up_reports_one_line_and_a_retry_works(
    neo: Neo, one_pod: tuple[Client, Reservation], tmp_path: Path
) -> None:
    _, res = one_pod
    pod_ws = Path(res.pods[0].handle.dir) / "ws"
    local = tmp_path / "project"
    local.mkdir()
    (local / "train.py").write_text("print('train')\n")
    for i, name in enumerate(("a.bin", "b.bin", "c.bin")):
        write_pattern(local / name, 14 * MiB, i)
    with tmpfs(pod_ws, "32m"):
        _pod_workspace_on_tmpfs(pod_ws)
        first = neo.run("sync", res.id, "--path", str(local))
        assert first.returncode == 1, first.stderr
        assert_one_line_error(first.stderr, "no space left")
        assert os.readlink(pod_ws / "current") == os.path.join("gens", "0"), "nothing partial is current"
        assert _leftovers(pod_ws) == [], "a failed sync left its content behind"
        assert _used_mib(pod_ws) < 1, f"{_used_mib(pod_ws):.1f} MiB still used after the failed sync"
        # The user shrinks the workspace (drops the data, edits the rest): the next sync must fit.
        (local / "b.bin").unlink()
        (local / "c.bin").unlink()
        write_pattern(local / "a.bin", 20 * MiB, 9)
        second = neo.run("sync", res.id, "--path", str(local))
        assert second.returncode == 0, second.stderr
        assert_pods_match(res, local)


def test_controller_disk_full_when_saving_the_stat_cache_is_a_warning(
    neo: Neo, one_pod: tuple[Client, Reservation], tmp_path: Path
) -> None:
    _, res = one_pod
    local = tmp_path / "project"
    local.mkdir()
    for i in range(300):
        (local / f"module_{i:03d}.py").write_text(f"VALUE = {i}\n")
    with tmpfs(neo.home / "sync", "64k") as cache_dir:
        fd = os.open(cache_dir / "filler", os.O_WRONLY | os.O_CREAT)  # fill it to the last byte
        try:
            while os.write(fd, b"x" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        proc = neo.run("sync", res.id, "--path", str(local))
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "warning: could not save the stat cache" in proc.stderr, proc.stderr
        assert sorted(p.name for p in cache_dir.iterdir()) == ["filler"], "no partial cache file left"
        assert_pods_match(res, local)
