"""Sync mirrors a folder into every pod: changed bytes only, whole generations, clear refusals."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_neo.client import Client
from jupyter_neo.model import Reservation
from jupyter_neo.sync import SyncError
from tests.conftest import Neo
from tests.test_sync_support import assert_pods_match, gang, pod_current, tree

__all__ = ["gang"]
Gang = tuple[Client, Reservation]


def write(path: Path, data: bytes | str, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mode is not None:
        path.chmod(mode)


def make_project(root: Path) -> None:
    write(root / "train.py", "import model\nprint(model.VERSION)\n")
    write(root / "model" / "__init__.py", "VERSION = 1\n")
    write(root / "run.sh", "#!/bin/sh\necho hi\n", 0o755)
    write(root / "data" / "notes.txt", "x" * 10000)
    os.symlink("model/__init__.py", root / "entry.py")
    (root / "empty").mkdir()
    write(root / "__pycache__" / "junk.pyc", b"\0")
    write(root / "node_modules" / "left-pad" / "index.js", "module.exports = 1\n")


def test_first_sync_mirrors_the_tree_and_a_resync_is_a_cheap_noop(gang: Gang, tmp_path: Path) -> None:
    client, res = gang
    root = tmp_path / "proj"
    make_project(root)
    weird = os.fsencode(root) + b"/caf\xe9-\xff.txt"  # not UTF-8
    with open(weird, "wb") as f:
        f.write(b"latin-1 name")
    write(root / ("n" * 250 + ".py"), "long = True\n")
    deep = root / "/".join(["d" * 100] * 30)  # a 3000-byte path
    write(deep / "leaf.txt", "deep")
    time.sleep(0.05)  # files hashed in the tick they were written are re-hashed once (racy-git rule)
    first = client.sync(res, root)
    assert first.generation == 1 and not first.noop
    assert_pods_match(res, root)
    for rank in (0, 1):
        assert os.readlink(pod_current(res, rank)) == "gens/1"

    again = client.sync(res, root)
    assert again.noop and again.hashed == 0 and again.bytes_sent == 0
    assert again.root == first.root and again.generation == 1


def test_edits_renames_and_chmod_move_only_what_changed(gang: Gang, tmp_path: Path) -> None:
    client, res = gang
    root = tmp_path / "proj"
    make_project(root)
    write(root / "big.bin", os.urandom(300_000))
    client.sync(res, root)

    (root / "big.bin").rename(root / "data" / "moved.bin")  # content the pods hold: no transfer
    (root / "model").rename(root / "net")
    (root / "run.sh").chmod(0o700)
    report = client.sync(res, root)
    assert report.bytes_sent < 8_000, report
    assert {c.why for c in report.changes} >= {"added", "deleted", "mode changed"}
    assert_pods_match(res, root)

    write(root / "train.py", "import net\nprint(net.VERSION + 1)\n")
    (root / "data" / "notes.txt").unlink()
    report = client.sync(res, root)
    assert (report.added, report.changed, report.deleted) == (0, 1, 1)
    assert report.generation == 3
    assert_pods_match(res, root)
    # The previous generation is kept for rollback, untouched.
    old = Path(res.pods[0].handle.dir) / "ws" / "gens" / "2" / "train.py"
    assert old.read_text() == "import model\nprint(model.VERSION)\n"


def test_escaping_symlinks_large_and_unreadable_files_are_reported_while_the_rest_syncs(
    gang: Gang, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, res = gang
    root = tmp_path / "proj"
    make_project(root)
    os.symlink("/etc/passwd", root / "passwd")
    os.symlink("../../outside", root / "data" / "up")
    write(root / "weights.bin", b"\0" * (2 * 2**20))
    write(root / "secret.txt", "no", 0o000)
    monkeypatch.setenv("NEO_SYNC_MAX_FILE_MB", "1")
    if os.geteuid() == 0:  # root reads mode-000 files; make the scanner see what a user would
        from jupyter_neo.sync import manifest

        real = manifest.hash_file

        def as_user(path: str, expected: tuple[int, int] | None = None) -> tuple[str, int]:
            if os.stat(path).st_mode & 0o444 == 0:
                raise PermissionError(13, "Permission denied", path)
            return real(path, expected)

        monkeypatch.setattr(manifest, "hash_file", as_user)
    from jupyter_neo.sync.push import gang_sync_for

    gang_sync_for(client.core, res, root.absolute(), None).__init__(client.core, res, root.absolute())
    report = client.run_async(client.core.sync(res, root))
    assert "outside the workspace" in report.skipped["passwd"]
    assert "outside the workspace" in report.skipped["data/up"]
    assert "volume or object storage" in report.skipped["weights.bin"]
    assert "permission denied" in report.skipped["secret.txt"]
    assert_pods_match(res, root, skip={"passwd", "data/up", "weights.bin", "secret.txt"})


def test_file_deleted_between_scan_and_send_is_left_out_then_synced_away(gang: Gang, tmp_path: Path) -> None:
    client, res = gang
    root = tmp_path / "proj"
    make_project(root)
    write(root / "fleeting.txt", "here for a moment")

    def on_progress(message: str) -> None:
        if message.startswith("scanned"):
            (root / "fleeting.txt").unlink()

    report = client.sync(res, root, progress=on_progress)
    assert "changed while syncing" in report.skipped["fleeting.txt"]
    assert_pods_match(res, root)
    assert not client.sync(res, root).skipped


def cut(stream: Any) -> None:
    """Kill a stream mid-frame: its relay process, or (a direct unix socket) the socket itself."""
    proc = getattr(stream, "proc", None)
    if proc is not None:
        proc.kill()
    else:
        stream.writer.transport.abort()


def test_a_pod_cut_off_mid_sync_keeps_its_old_generation_and_the_next_sync_repairs_it(
    gang: Gang, tmp_path: Path
) -> None:
    client, res = gang
    root = tmp_path / "proj"
    make_project(root)
    client.sync(res, root)
    before = tree(os.path.realpath(pod_current(res, 1)))
    for i in range(40):
        write(root / "blobs" / f"{i}.bin", os.urandom(1 << 20))

    async def cut_mid_sync() -> None:
        conn = (await client.core.connect(res))[1]
        real_request = conn.request

        async def request_then_cut(op: str, payload: bytes = b"", **kw: Any) -> Any:
            if op == "ws_sync":  # the stream dies while the 40 MiB frame is in flight
                asyncio.get_running_loop().call_later(0.01, cut, conn.stream)
            return await real_request(op, payload, **kw)

        conn.request = request_then_cut  # type: ignore[method-assign]
        with pytest.raises(SyncError) as err:
            await client.core.sync(res, root)
        assert "did not take generation" in str(err.value)
        assert err.value.hint and "neo sync" in err.value.hint

    client.run_async(cut_mid_sync())
    assert tree(os.path.realpath(pod_current(res, 1))) == before  # no partial generation current
    report = client.sync(res, root)
    assert report.pods[1].status in ("repaired", "applied", "noop")
    assert_pods_match(res, root)


def test_cli_sync_dry_run_json_and_clear_errors(neo: Neo, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    make_project(root)
    proc = neo.run("sync", "--path", str(root))
    assert proc.returncode == 1 and "no active reservation" in proc.stderr

    rid = neo.run("reserve", "--gpus", "8", check=True).stdout.strip()
    proc = neo.run("sync", "--path", str(tmp_path / "nope"))
    assert proc.returncode == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr

    dry = json.loads(neo.run("sync", rid, "--path", str(root), "--dry-run", "--json", check=True).stdout)
    assert dry["dry_run"] and {"path": "train.py", "why": "added"} in dry["changes"]
    assert not any(c["path"].startswith(("node_modules", "__pycache__")) for c in dry["changes"])
    assert dry["pods"][0]["generation"] == 0

    proc = neo.run("sync", "--path", str(root), check=True)
    assert "generation 1" in proc.stderr
    res = neo.client().status(rid)[0]
    assert_pods_match(res, root)
    again = json.loads(neo.run("sync", "--path", str(root), "--json", check=True).stdout)
    assert again["noop"] and again["hashed"] == 0
    neo.run("release", rid, check=True)
