"""A long-lived process's writes stay visible to other processes after it opened more connections.

Closing *any* descriptor of a file drops every POSIX lock the process holds on it. sqlite's
shared lock on the state file is how another process knows this one still uses the WAL; once it
was dropped, the next process to close its last connection checkpointed and deleted the WAL and
the shared-memory index under the resident controller, which went on writing into the deleted
files: what it wrote was invisible to the CLI's in-process clients, the Jupyter server and
scripts, and lost when it exited (since the store also watches the WAL's inode it reconnects at
its next call, but a transaction in flight still lands in the deleted file). The store's own
checks (the lost-state header read, the owner-only chmod) opened and closed the file whenever a
new thread got its first connection.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from jupyter_neo.store import Store

READ = """
import sys
from pathlib import Path
from jupyter_neo.store import Store
store = Store(Path(sys.argv[1]))
row = store._conn().execute("SELECT value FROM meta WHERE key = ?", (sys.argv[2],)).fetchone()
print(row["value"] if row else "")
"""


def read_elsewhere(path: Path, key: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", READ, str(path), key], capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.strip()


def write(store: Store, key: str) -> None:
    store._conn().execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, key + "-value"))


def test_writes_after_a_new_threads_connection_reach_other_processes(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = Store(path)
    write(store, "first")
    store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the main file settles
    store._conn()  # (it changed: this process reconnects)
    # A worker thread's first connection (the controller's asyncio.to_thread) reads something.
    reader = threading.Thread(target=lambda: store._conn().execute("SELECT 1").fetchall())
    reader.start()
    reader.join()
    wal = Path(f"{path}-wal")
    before = wal.stat().st_ino
    assert read_elsewhere(path, "first") == "first-value"  # another process opens and closes
    assert wal.exists() and wal.stat().st_ino == before, "the WAL was deleted under this process"
    write(store, "second")
    assert read_elsewhere(path, "second") == "second-value", "this process wrote into a deleted WAL"
