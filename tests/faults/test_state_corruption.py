"""Defect 13: a corrupt state row is quarantined with a one-line warning and never makes every
command fail (``release --all`` included); a missing, zero-length or truncated state file is never
read as "no reservations", so no reconcile kills live pods as orphans."""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

import pytest

from tests.conftest import Neo
from tests.faults.state_invariants import assert_consistent, assert_one_line_error, assert_released_and_clean


def corrupt(neo: Neo, sql: str, *args: Any) -> None:
    db = sqlite3.connect(neo.home / "state.sqlite")
    db.execute(sql, args)
    db.commit()
    db.close()


BAD_DOCS = ['{"id": "r-trunc', '{"id": 5, "pods": "x"}', "null"]


@pytest.mark.parametrize("doc", BAD_DOCS, ids=["truncated-json", "wrong-types", "null"])
def test_a_corrupt_row_is_quarantined_and_release_all_still_works(neo: Neo, doc: str) -> None:
    bad: Any = neo.json("reserve", "--gpus", "8", "--name", "bad")
    good: Any = neo.json("reserve", "--gpus", "8")
    corrupt(neo, "UPDATE reservations SET doc = ? WHERE id = ?", doc, bad["id"])

    status = neo.run("status", "--json")
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    warnings = [ln for ln in status.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and bad["id"] in warnings[0] and "quarantined" in warnings[0], status.stderr
    shown = {r["id"]: r for r in json.loads(status.stdout)}
    assert shown[good["id"]]["state"] == "ready"
    assert shown[bad["id"]]["state"] == "degraded" and "quarantined" in shown[bad["id"]]["reason"]
    assert bad["id"] in " ".join(neo.processes()), "the quarantined gang's pods were not killed as orphans"
    assert neo.json("clusters")[0]["free_gpus"] == 16  # type: ignore[index]

    released = neo.run("release", "--all", "--json")
    assert released.returncode == 0 and "Traceback" not in released.stderr, released.stderr
    assert {r["id"] for r in json.loads(released.stdout)} == {bad["id"], good["id"]}
    db = sqlite3.connect(neo.home / "state.sqlite")
    kept = db.execute("SELECT doc FROM quarantine WHERE id = ?", (bad["id"],)).fetchone()
    db.close()
    assert kept == (doc,), "the unreadable row is kept for forensics"
    assert_released_and_clean(neo, free=32)


def test_a_corrupt_run_record_is_skipped_with_a_warning(neo: Neo) -> None:
    neo.run("status", check=True)  # creates the store
    corrupt(neo, "INSERT INTO runs (id, reservation, state, doc) VALUES ('run-bad', 'r-x', 'running', '{')")
    runs = neo.run("runs", "--json")
    assert runs.returncode == 0 and json.loads(runs.stdout) == [], runs.stderr
    assert "run run-bad's record is unreadable" in runs.stderr
    assert_one_line_error(neo.run("logs", "run-bad"), "run run-bad's record is unreadable")


def backup(neo: Neo) -> bytes:
    """A consistent copy of the store, as a backup tool would take it."""
    src = sqlite3.connect(neo.home / "state.sqlite")
    dst = sqlite3.connect(":memory:")
    src.backup(dst)
    src.close()
    data = dst.serialize()
    dst.close()
    return data


def restore(neo: Neo, data: bytes) -> None:
    for suffix in ("-wal", "-shm"):
        (neo.home / f"state.sqlite{suffix}").unlink(missing_ok=True)
    (neo.home / "state.sqlite").write_bytes(data)


@pytest.mark.parametrize("damage", ["zero-length", "half", "missing", "garbage"])
def test_lost_state_is_refused_and_live_pods_survive(neo: Neo, damage: str) -> None:
    res: Any = neo.json("reserve", "--gpus", "16")
    saved = backup(neo)
    pods = neo.processes()
    assert pods
    path = neo.home / "state.sqlite"
    for suffix in ("-wal", "-shm"):
        (neo.home / f"state.sqlite{suffix}").unlink(missing_ok=True)
    if damage == "zero-length":
        path.write_bytes(b"")
    elif damage == "half":
        path.write_bytes(saved[: len(saved) // 2])
    elif damage == "missing":
        path.unlink()
    else:
        path.write_bytes(os.urandom(4096))

    for command in (["status"], ["release", "--all"], ["clusters"], ["reserve", "--gpus", "8"]):
        proc = neo.run(*command)
        assert_one_line_error(proc, "state store", "damaged", "restore it from a backup")
    assert neo.processes() == pods, "live pods were taken for orphans"

    restore(neo, saved)
    assert [r["id"] for r in assert_consistent(neo)] == [res["id"]]
    neo.run("release", "--all", check=True)
    assert_released_and_clean(neo, free=32)


def rewrite_handles(neo: Neo, rid: str, change: Any) -> None:
    """Apply ``change`` to every pod's stored handle of ``rid`` (a dict, as sqlite holds it)."""
    db = sqlite3.connect(neo.home / "state.sqlite")
    doc = json.loads(db.execute("SELECT doc FROM reservations WHERE id = ?", (rid,)).fetchone()[0])
    for pod in doc["pods"]:
        pod["handle"] = change(pod["handle"])
    db.execute("UPDATE reservations SET doc = ? WHERE id = ?", (json.dumps(doc), rid))
    db.commit()
    db.close()


def test_a_row_with_untyped_pod_handles_still_loads_and_releases(neo: Neo) -> None:
    """Rows written before handles were typed (plain dicts, no ``kind``) are adopted as they are:
    status shows the gang live without a warning and release stops its pods by their handles."""
    res: Any = neo.json("reserve", "--gpus", "8", "--nodes", "2")
    rewrite_handles(neo, res["id"], lambda h: {k: v for k, v in h.items() if k != "kind"})

    status = neo.run("status", "--json")
    assert status.returncode == 0 and not status.stderr.strip(), status.stderr
    assert [r["state"] for r in json.loads(status.stdout)] == ["ready"]
    assert res["id"] in " ".join(neo.processes()), "the gang's pods are alive"

    released = neo.run("release", res["id"], "--json")
    assert released.returncode == 0 and "Traceback" not in released.stderr, released.stderr
    assert_released_and_clean(neo, free=32)


def test_a_row_with_a_broken_pod_handle_is_quarantined(neo: Neo) -> None:
    """A handle that does not validate (its directory missing) quarantines the row like any other
    unreadable one: a one-line warning, a degraded stand-in, and ``release --all`` still works."""
    bad: Any = neo.json("reserve", "--gpus", "8", "--name", "bad")
    rewrite_handles(neo, bad["id"], lambda h: {"node": h["node"]})

    status = neo.run("status", "--json")
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    warnings = [ln for ln in status.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and bad["id"] in warnings[0] and "quarantined" in warnings[0], status.stderr
    assert "dir" in warnings[0], "the warning names what is wrong with the row"
    [shown] = json.loads(status.stdout)
    assert shown["state"] == "degraded" and "quarantined" in shown["reason"]

    released = neo.run("release", "--all", "--json")
    assert released.returncode == 0 and "Traceback" not in released.stderr, released.stderr
    assert_released_and_clean(neo, free=32)
