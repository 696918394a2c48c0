"""Defect 10: the state store (every reservation's HMAC secret) with its WAL and SHM, the pods'
workspaces and the run logs are owner-only even under a umask of 000."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from tests.conftest import Neo
from tests.faults.state_invariants import assert_released_and_clean


def open_umask() -> None:
    os.umask(0)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_workspaces_and_logs_are_owner_only_under_umask_000(neo: Neo, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text("print('hi')\n")
    reserve = neo.run("reserve", "--gpus", "8", "--nodes", "2", "--json", preexec_fn=open_umask)
    assert reserve.returncode == 0, reserve.stderr
    res: Any = json.loads(reserve.stdout)
    run = neo.run(
        "run",
        "-r",
        res["id"],
        "--path",
        str(ws),
        "--cmd",
        "echo secret-output",
        "--json",
        preexec_fn=open_umask,
    )
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)

    state = neo.home / "state.sqlite"
    log_dir = Path(record["log_dir"])
    dirs = [log_dir, neo.home / "local"]
    old_umask = os.umask(0)
    try:  # a long-lived controller (the Jupyter server) keeps the WAL and SHM open beside the store
        client = neo.client()
    finally:
        os.umask(old_umask)
    try:
        held = client.status(res["id"])[0]
        for pod in held.pods:
            dirs += [Path(pod.handle.dir), Path(pod.handle.dir) / "ws"]
        files = [state, neo.home / "state.id", Path(f"{state}-wal"), Path(f"{state}-shm")]
        files += sorted(log_dir.glob("*.log"))
        assert any(f.name.startswith("rank") for f in files)
        loose = {str(p): oct(mode(p)) for p in files if mode(p) & 0o077}
        loose |= {str(p): oct(mode(p)) for p in dirs if mode(p) & 0o077}
    finally:
        client.close()
    assert loose == {}, f"readable by others under umask 000: {loose}"
    assert (Path(held.pods[0].handle.dir) / "ws" / "current").exists(), "the workspace was used"

    neo.run("release", "--all", check=True)
    assert_released_and_clean(neo, free=32)


def test_an_existing_world_readable_store_is_tightened(neo: Neo) -> None:
    neo.run("status", check=True)
    state = neo.home / "state.sqlite"
    state.chmod(0o644)
    neo.run("status", check=True)
    assert mode(state) == 0o600
