"""Typed pod handles (jupyter_neo/backends/handles.py): every backend's handle survives the state
store as its own model, rows from before handles were typed load as typed ones, and a backend
handed a pod that is not its own says so in one line instead of a ``KeyError``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from jupyter_neo.backends.handles import KubernetesHandle, LocalHandle, SlurmHandle, SshHandle, handle_of
from jupyter_neo.errors import BackendError
from jupyter_neo.model import Pod, Reservation
from jupyter_neo.store import Store

# What each backend wrote into a pod's handle before handles were typed (the same keys its
# ``allocate`` has always written), and the model that row must load as.
LEGACY: list[tuple[str, dict[str, Any], Any]] = [
    ("local", {"node": 3, "dir": "/h/local/r/node3"}, LocalHandle(node=3, dir="/h/local/r/node3")),
    ("kubernetes", {"namespace": "ml", "gang": "kueue"}, KubernetesHandle(namespace="ml", gang="kueue")),
    (
        "kubernetes",
        {"namespace": "ml", "gang": "none", "node": "kind-worker"},
        KubernetesHandle(namespace="ml", gang="none", node="kind-worker"),
    ),
    (
        "slurm",
        {"job": 41, "node": "c1", "dir": "/tmp/n/r/c1"},
        SlurmHandle(job=41, node="c1", dir="/tmp/n/r/c1"),
    ),
    (
        "ssh",
        {"host": "gpu-a", "dir": "/tmp/n/r/gpu-a", "total": 4},
        SshHandle(host="gpu-a", dir="/tmp/n/r/gpu-a", total=4),
    ),
]


def reservation(backend: str, handle: Any) -> Reservation:
    return Reservation(
        id="r-abcdef-0001",
        cluster="c",
        backend=backend,  # type: ignore[arg-type]
        nodes=1,
        gpus_per_node=1,
        gpu_type="T4",
        price_per_hour=1.0,
        pods=[Pod(name="r-abcdef-0001-0", rank=0, address="127.0.0.1", handle=handle)],
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.sqlite")


def stored_doc(store: Store, rid: str) -> dict[str, Any]:
    db = sqlite3.connect(store.path)
    doc = json.loads(db.execute("SELECT doc FROM reservations WHERE id = ?", (rid,)).fetchone()[0])
    db.close()
    return doc  # type: ignore[no-any-return]


def put_doc(store: Store, rid: str, doc: dict[str, Any]) -> None:
    db = sqlite3.connect(store.path)
    db.execute("UPDATE reservations SET doc = ? WHERE id = ?", (json.dumps(doc), rid))
    db.commit()
    db.close()


@pytest.mark.parametrize(
    ("backend", "legacy", "typed"), LEGACY, ids=[f"{b}-{i}" for i, (b, _, _) in enumerate(LEGACY)]
)
def test_a_handle_round_trips_and_an_untyped_row_loads_typed(
    store: Store, backend: str, legacy: dict[str, Any], typed: Any
) -> None:
    res = reservation(backend, typed)
    store.save_reservation(res)
    doc = stored_doc(store, res.id)
    assert doc["pods"][0]["handle"] == {"kind": backend, **legacy} | typed.model_dump(mode="json")
    assert store.reservation(res.id).pods[0].handle == typed

    doc["pods"][0]["handle"] = legacy  # as a version before typed handles wrote it
    put_doc(store, res.id, doc)
    loaded = store.reservation(res.id)
    assert loaded.pods[0].handle == typed and loaded.state == res.state, "no quarantine for an old row"
    assert "handle" not in json.dumps(loaded.public()), "a handle is the backend's, never shown"


def test_a_pod_never_allocated_has_no_handle(store: Store) -> None:
    res = reservation("local", None)
    store.save_reservation(res)
    doc = stored_doc(store, res.id)
    doc["pods"][0]["handle"] = {}  # what an untyped pod without a handle was stored as
    put_doc(store, res.id, doc)
    assert store.reservation(res.id).pods[0].handle is None


@pytest.mark.parametrize(
    "bad",
    [{"node": 3}, {"node": "three", "dir": "/x"}, {"node": 3, "dir": "/x", "pid": 7}, ["node", 3]],
    ids=["missing-dir", "wrong-type", "unknown-key", "not-a-dict"],
)
def test_a_handle_that_does_not_validate_quarantines_its_row(store: Store, bad: Any) -> None:
    res = reservation("local", LocalHandle(node=3, dir="/x"))
    store.save_reservation(res)
    doc = stored_doc(store, res.id)
    doc["pods"][0]["handle"] = bad
    put_doc(store, res.id, doc)
    warnings: list[str] = []
    store.warn = lambda kind, message: warnings.append(message)  # type: ignore[method-assign]

    loaded = store.reservation(res.id)
    assert loaded.state == "degraded" and (loaded.reason or "").startswith("quarantined"), loaded
    assert len(warnings) == 1 and "pods.0.handle" in warnings[0], warnings
    db = sqlite3.connect(store.path)
    assert db.execute("SELECT doc FROM quarantine WHERE id = ?", (res.id,)).fetchone() == (json.dumps(doc),)
    db.close()


def test_a_backend_refuses_another_backends_pod_in_one_line() -> None:
    pod = Pod(name="p-0", rank=0, address="a", handle=SlurmHandle(job=1, node="c1", dir="/d"))
    assert handle_of(pod, SlurmHandle).node == "c1"
    with pytest.raises(BackendError) as err:
        handle_of(pod, LocalHandle)
    assert "pod p-0 has a handle of the slurm backend; the local backend cannot reach it" in str(err.value), (
        err.value
    )
    with pytest.raises(BackendError, match="pod q-1 has no handle yet; the ssh backend cannot reach it"):
        handle_of(Pod(name="q-1", rank=1, address="a"), SshHandle)
