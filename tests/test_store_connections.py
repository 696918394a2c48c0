"""A long-lived process's store connections survive other processes' checkpoints.

The resident controller keeps one sqlite connection per worker thread. Any process may run a WAL
checkpoint, which rewrites the main state file; the store must tell that apart from the file being
replaced or truncated (which does close every connection, see tests/faults/test_state_corruption.py).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from jupyter_neo.store import Store


def test_a_checkpoint_elsewhere_does_not_close_a_connection_in_use(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite")
    mine = store._conn()  # this thread's connection, as a worker thread of the controller holds it
    with store.transaction() as conn:
        conn.execute("CREATE TABLE filler (x BLOB)")
        conn.executemany("INSERT INTO filler VALUES (?)", [(b"x" * 4096,) for _ in range(64)])
    size_before = (tmp_path / "state.sqlite").stat().st_size

    other = sqlite3.connect(tmp_path / "state.sqlite")  # another neo process
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    other.close()
    assert (tmp_path / "state.sqlite").stat().st_size > size_before, "the checkpoint wrote the file"

    seen: list[object] = []
    worker = threading.Thread(target=lambda: seen.append(store.reservations()))
    worker.start()
    worker.join()
    assert seen == [[]]
    # The first thread's connection is still open and is the one it gets again.
    assert mine.execute("SELECT count(*) FROM filler").fetchone()[0] == 64
    assert store._conn() is mine
