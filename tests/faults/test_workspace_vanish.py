"""The workspace folder deleted while ``neo sync`` reads it: nothing is published, one line, exit 1."""

from __future__ import annotations

import shutil
from pathlib import Path

from jupyter_neo.client import Client
from tests.conftest import Neo
from tests.faults.support import MiB, assert_one_line_error, sync_while, write_pattern
from tests.test_sync_support import pod_current, tree


def test_workspace_deleted_mid_sync_publishes_nothing(neo: Neo, tmp_path: Path) -> None:
    client: Client = neo.client()
    res = client.reserve(gpus=16)
    try:
        ws = tmp_path / "ws"
        for d in ("src", "src/model", "configs"):
            (ws / d).mkdir(parents=True)
            for i in range(20):
                (ws / d / f"f{i}.py").write_text(f"# {d} {i}\n")
        first = neo.run("sync", res.id, "--path", str(ws))
        assert first.returncode == 0, first.stderr
        before = [tree(pod_current(res, rank).resolve()) for rank in range(len(res.pods))]
        assert before[0] == tree(ws)
        # Large new files at the top: while one is hashed the walk has not reached src/ yet.
        for i in range(6):
            write_pattern(ws / f"data{i}.bin", 40 * MiB, i)
        rc, err = sync_while(neo, res.id, ws, lambda: shutil.rmtree(ws))
        assert rc == 1, err
        assert_one_line_error(err, "vanished")
        after = [tree(pod_current(res, rank).resolve()) for rank in range(len(res.pods))]
        assert after == before, "a generation was published from a workspace that was being deleted"
    finally:
        client.release(res.id)
        client.close()
