"""The controller's state store: one sqlite file under ``$NEO_HOME``.

It caches what the backends hold (the backend stays the source of truth and is reconciled on
start) and serialises capacity decisions across processes: every allocation runs inside one
``BEGIN IMMEDIATE`` transaction, so two racing ``neo reserve`` calls cannot both take the last GPUs.

Tables: ``reservations`` (one JSON document per reservation, plus the columns queries need),
``local_slots`` (which virtual GPU of which local node a reservation holds), ``runs``.

What the store guarantees beyond that (docs/reliability.md):

- **Owner-only.** The file, its WAL and SHM (sqlite gives them the main file's mode) are 0600
  whatever the umask: every reservation's HMAC secret is in here.
- **A live name is unique**, by a partial unique index on ``(name)`` over rows not released:
  the database refuses a second live ``exp`` in the very transaction that writes the record (for
  the local backend, the one that takes the GPUs). A name resolves to the live reservation.
- **The spend cap is admitted in the same transaction**: the first write of a reservation's
  record calls :func:`money.admit` with what the owner already spent or committed; a budget change
  goes through :meth:`Store.change_budget`. ``BEGIN IMMEDIATE`` serialises both across processes.
- **A damaged row is quarantined, not fatal**: a reservation whose document cannot be read is
  copied to ``quarantine``, warned about in one line and shown as a degraded stand-in built from
  its intact columns (id, cluster, ledger), which ``neo release`` can release.
- **Lost state is never "no reservations"**: a state file that is missing, empty or truncated
  while ``state.id`` says one existed is refused with one line, so no reconcile can mistake
  live pods for orphans and kill them.
"""

from __future__ import annotations

import functools
import json
import os
import random
import secrets
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from pydantic import ValidationError

from jupyter_neo import money
from jupyter_neo.errors import Conflict, InvalidRequest, NotFound, StateError
from jupyter_neo.model import Reservation, ReservationState, Run
from jupyter_neo.private import FILE_MODE, private_file

FileKey = tuple[int, int, int, tuple[int, int] | None]
"""A state file's identity: device, inode, mode, and the write-ahead log's (device, inode)."""

P = ParamSpec("P")
T = TypeVar("T")
SIDECAR = "state.id"

# path -> (dev, ino, descriptor): see _read_header
_HEADER_FDS: dict[str, tuple[int, int, int]] = {}
_HEADER_LOCK = threading.Lock()


def _read_header(path: Path) -> bytes:
    """The state file's first 100 bytes, through a descriptor this process keeps open.

    Closing *any* descriptor of a file drops every POSIX lock the process holds on it, including
    the shared lock by which sqlite tells other processes that this one still uses the WAL. A
    header read that opened and closed the file (once per new thread's connection) let the next
    process that closed its last connection delete the WAL under the resident controller, which
    then wrote into the deleted file: its changes invisible to everyone else and lost at exit
    (tests/test_store_locks.py). So the descriptor stays open while that file is in place.
    """
    key = str(path.absolute())
    with _HEADER_LOCK:
        st = os.stat(path)
        held = _HEADER_FDS.get(key)
        if held is None or held[:2] != (st.st_dev, st.st_ino):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            fst = os.fstat(fd)
            if held is not None:  # a replaced file: its old inode's connections are being closed
                os.close(held[2])
            held = (fst.st_dev, fst.st_ino, fd)
            _HEADER_FDS[key] = held
        return os.pread(held[2], 100, 0)


SCHEMA = """
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY,
    cluster TEXT NOT NULL,
    state TEXT NOT NULL,
    controller_pid INTEGER,
    controller_started REAL,
    doc TEXT NOT NULL,
    updated REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS reservations_state ON reservations(state);
CREATE TABLE IF NOT EXISTS local_slots (
    cluster TEXT NOT NULL,
    node INTEGER NOT NULL,
    gpu INTEGER NOT NULL,
    reservation TEXT NOT NULL,
    PRIMARY KEY (cluster, node, gpu)
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    reservation TEXT NOT NULL,
    state TEXT NOT NULL,
    doc TEXT NOT NULL,
    updated REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS checks (
    reservation TEXT NOT NULL,
    time REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    reservation TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    cluster TEXT NOT NULL,
    gpus INTEGER NOT NULL,
    start REAL NOT NULL,
    end REAL,
    price_per_hour REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    tbl TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT,
    error TEXT NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (tbl, id)
);
"""
# Columns added after the first release: (table, column, type). Added in place on open.
MIGRATIONS = (("reservations", "name", "TEXT"), ("ledger", "budget", "REAL"), ("ledger", "deadline", "REAL"))
LIVE_NAME_INDEX = """CREATE UNIQUE INDEX IF NOT EXISTS reservations_live_name ON reservations(name)
    WHERE name IS NOT NULL AND state != 'released'"""


def _damage_guard(fn: Callable[P, T]) -> Callable[P, T]:
    """A state file sqlite finds damaged mid-query becomes one line naming the file and the fix."""

    @functools.wraps(fn)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # a constraint, or a bug in the call (a wrong type bound): not a damaged file
        except sqlite3.DatabaseError as exc:
            store = args[0]
            assert isinstance(store, Store)
            raise store.damaged(str(exc)) from None

    return guarded


class Store:
    """Thread-safe access to the sqlite file (one connection per thread)."""

    def __init__(self, path: Path, *, user_cap: float | None = None) -> None:
        self.path = path
        self.user_cap = user_cap
        self._local = threading.local()
        self._conns_lock = threading.Lock()
        self._all_conns: list[sqlite3.Connection] = []
        self._generation = 0
        self._key: FileKey | None
        self._key, self._size = self._file_key()
        self._warned: set[tuple[str, str]] = set()
        self._check_not_lost()
        for attempt in range(50):
            try:
                self._open_schema()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise StateError(f"cannot open state store {path}: {exc}", "check NEO_HOME") from None
                time.sleep(0.05 + random.random() * 0.1)
            except sqlite3.DatabaseError as exc:
                raise self.damaged(str(exc)) from None
            except sqlite3.Error as exc:
                raise StateError(f"cannot open state store {path}: {exc}", "check NEO_HOME") from None
            except OSError as exc:
                raise StateError(
                    f"cannot open state store {path}: {exc.strerror or exc}", "check NEO_HOME"
                ) from None

    # ----------------------------------------------------------------- opening safely
    def damaged(self, detail: str) -> StateError:
        return StateError(
            f"the state store {self.path} is damaged ({detail}); refusing to guess which reservations exist",
            f"restore it from a backup; to start over instead, move {self.path.name}* and {SIDECAR} "
            "out of NEO_HOME (live pods then stop at their idle TTL)",
        )

    def _check_not_lost(self) -> None:
        """Refuse a state file that is missing, empty or truncated where one existed before.

        sqlite reads a zero-length file as a new, empty database, and a reconcile that trusted it
        would take every live pod for an orphan. ``state.id``, written beside the file once its
        schema exists, is the witness that there was state to lose.
        """
        sidecar = self.path.parent / SIDECAR
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = -1
        if size <= 0:
            if sidecar.exists():
                what = "missing" if size < 0 else "empty (0 bytes)"
                raise self.damaged(f"the file is {what} but {sidecar} shows it held state")
            return
        try:
            header = _read_header(self.path)
        except OSError as exc:
            raise StateError(
                f"cannot read state store {self.path}: {exc.strerror}", "check NEO_HOME"
            ) from None
        if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
            raise self.damaged("not an sqlite database, or its header is cut short")
        page_size = struct.unpack(">H", header[16:18])[0]
        page_size = 65536 if page_size == 1 else page_size
        (change,) = struct.unpack(">I", header[24:28])
        (pages,) = struct.unpack(">I", header[28:32])
        (valid_for,) = struct.unpack(">I", header[92:96])
        if pages and change == valid_for and size < pages * page_size:
            raise self.damaged(f"truncated: {size} bytes of {pages * page_size}")

    def _open_schema(self) -> None:
        existed = self.path.exists() and self.path.stat().st_size > 0
        self._tighten()
        conn = self._conn()
        conn.executescript(SCHEMA)
        self._migrate(conn)
        row = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
        store_id = row["value"] if row else secrets.token_hex(8)
        if row is None:
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?)", (store_id,))
        sidecar = self.path.parent / SIDECAR
        if not existed or not sidecar.exists() or sidecar.read_text().strip() != store_id:
            tmp = sidecar.with_name(f"{SIDECAR}.{os.getpid()}.tmp")
            private_file(tmp).write_text(store_id + "\n")
            os.replace(tmp, sidecar)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        for table, column, kind in MIGRATIONS:
            have = {r["name"] for r in conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                with suppress(sqlite3.OperationalError):  # a racing process added it first
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                if (table, column) == ("reservations", "name"):
                    conn.execute(
                        "UPDATE reservations SET name = json_extract(doc, '$.name') WHERE json_valid(doc)"
                    )
        try:
            conn.execute(LIVE_NAME_INDEX)
        except sqlite3.IntegrityError:
            # Two live reservations already share a name (written before this index existed);
            # lookups by that name then report the ambiguity instead of picking one.
            self.warn(
                "names",
                "two live reservations share a name; names are not enforced unique until one is released",
            )

    def warn(self, kind: str, message: str) -> None:
        """One line on stderr, once per process and subject (the CLI's and the server's log)."""
        key = (kind, message)
        if key not in self._warned:
            self._warned.add(key)
            print(f"warning: {message}", file=sys.stderr, flush=True)

    def _tighten(self) -> None:
        """Owner-only state (it holds every reservation's secret), whatever the umask or a chmod did.

        By path, never through a descriptor of an existing file: closing one would drop this
        process's sqlite locks on it (see :func:`_read_header`)."""
        try:
            os.chmod(self.path, FILE_MODE)
        except FileNotFoundError:
            private_file(self.path)  # before sqlite creates it: WAL and SHM then get the same 0600
        for suffix in ("-wal", "-shm"):
            with suppress(FileNotFoundError):
                os.chmod(f"{self.path}{suffix}", FILE_MODE)

    def _file_key(self) -> tuple[FileKey | None, int]:
        """Which files the path names now, and the main file's size (None: no file).

        The identity is the main file's inode and mode and the write-ahead log's inode: a state
        file replaced, deleted or restored over (a restore removes the WAL first) changes it. Its
        size and mtime are left out on purpose: a WAL checkpoint (run by any process after enough
        commits) writes the main file, and treating that as a change would close connections that
        other threads are using mid-transaction. A file that shrank (truncated in place) is a
        change too; sqlite never shrinks it by itself (no auto-vacuum here).
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None, 0
        try:
            wal = os.stat(f"{self.path}-wal")
            wal_id: tuple[int, int] | None = (wal.st_dev, wal.st_ino)
        except FileNotFoundError:
            wal_id = None
        return (st.st_dev, st.st_ino, st.st_mode, wal_id), st.st_size

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, re-checked whenever the file changed under this store.

        A long-lived process (the resident controller, a Jupyter server) keeps its connections
        open; if the state file was replaced, truncated or deleted meanwhile, an open connection
        would go on answering from what it had, and sqlite's per-inode locks (shared by every
        connection of a process) would mix the old file with the new. So a change of the main
        file seen by any thread (two ``stat`` calls per call, see :meth:`_file_key` for what counts
        as a change) closes every connection of this store and re-runs the lost-state check
        before a new one opens.
        """
        key, size = self._file_key()
        with self._conns_lock:
            shrank, self._size = size < self._size, size
            if key != self._key or shrank:
                # Checked before the old connections close: closing the last one checkpoints its
                # WAL into whatever file is there now, which would paper over a damaged one.
                self._check_not_lost()
                for old in self._all_conns:
                    with suppress(sqlite3.Error):
                        old.close()
                self._all_conns.clear()
                self._generation += 1
                self._key = key
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is not None and getattr(self._local, "generation", -1) == self._generation:
                return conn
        self._check_not_lost()
        self._tighten()
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.row_factory = sqlite3.Row
        with self._conns_lock:
            self._all_conns.append(conn)
            self._local.conn = conn
            self._local.generation = self._generation
            self._key, self._size = self._file_key()  # opening may have created files: not a change
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An exclusive write transaction across processes (``BEGIN IMMEDIATE``).

        Re-entrant: inside an open transaction of this thread it joins it (commit is the outer's).
        """
        conn = self._conn()
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    # ----------------------------------------------------------------- reservations
    @_damage_guard
    def save_reservation(self, res: Reservation, db: sqlite3.Connection | None = None, **owner: Any) -> None:
        """Write ``res`` and its ledger row in one transaction (``db``'s, else a new one).

        The first write of a live reservation is its admission: the spend cap cuts its budget to
        what the owner has left (:func:`money.admit`), and the live-name index refuses a second
        live reservation of the same name. Either refusal rolls back the whole transaction,
        including capacity the caller took in it.
        """
        with self.transaction() as conn:
            if db is not None and db is not conn:
                raise RuntimeError("save_reservation: db is not this thread's connection")
            new = conn.execute("SELECT 1 FROM reservations WHERE id = ?", (res.id,)).fetchone() is None
            if new and res.active:
                self._admit(conn, res)
            self._write(conn, res, owner)

    def _admit(self, conn: sqlite3.Connection, res: Reservation) -> None:
        committed = self._committed(conn, res.owner, exclude=res.id)
        res.budget = money.admit(res.budget, self.user_cap, committed, res.price_per_hour, res.idle_ttl)
        if res.budget is not None:
            res.deadline = money.deadline_for(res.created, res.budget, res.price_per_hour)

    def _write(self, conn: sqlite3.Connection, res: Reservation, owner: dict[str, Any]) -> None:
        doc = res.model_dump_json(exclude={"cost", "budget_used"}, context={"internal": True})
        data = json.loads(doc)
        data["secret"] = res.secret
        for pod, dumped in zip(res.pods, data["pods"], strict=True):
            dumped["handle"] = pod.handle.model_dump(mode="json") if pod.handle else None
        try:
            conn.execute(
                """INSERT INTO reservations (id, cluster, state, controller_pid, controller_started, doc, name)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(id) DO UPDATE SET state=excluded.state, doc=excluded.doc, name=excluded.name,
                     controller_pid=COALESCE(excluded.controller_pid, controller_pid),
                     controller_started=COALESCE(excluded.controller_started, controller_started),
                     updated=strftime('%s','now')""",
                (
                    res.id,
                    res.cluster,
                    res.state.value,
                    owner.get("pid"),
                    owner.get("started"),
                    json.dumps(data),
                    res.name,
                ),
            )
        except sqlite3.IntegrityError:
            holder = conn.execute(
                "SELECT id FROM reservations WHERE name = ? AND state != 'released' AND id != ?",
                (res.name, res.id),
            ).fetchone()
            raise Conflict(
                f"a reservation named {res.name!r} is already active"
                + (f" ({holder['id']})" if holder else ""),
                "pick another --name, or release that one first",
            ) from None
        end = res.released_at
        if end is not None and res.deadline is not None:
            end = min(end, res.deadline)  # the pods stopped themselves at the deadline
        conn.execute(
            """INSERT INTO ledger (reservation, owner, cluster, gpus, start, end, price_per_hour, budget, deadline)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(reservation) DO UPDATE SET end=excluded.end, budget=excluded.budget,
                 deadline=excluded.deadline,
                 price_per_hour=CASE WHEN excluded.price_per_hour > 0 THEN excluded.price_per_hour
                                     ELSE price_per_hour END""",
            (
                res.id,
                res.owner,
                res.cluster,
                res.gpus,
                res.created.timestamp(),
                end.timestamp() if end else None,
                res.price_per_hour,
                res.budget,
                res.deadline.timestamp() if res.deadline else None,
            ),
        )

    @_damage_guard
    def change_budget(self, rid: str, budget: float | None, *, check: bool = True) -> Reservation:
        """Set a live reservation's budget (and deadline), checked against the cap, in one transaction.

        ``check=False`` restores an earlier value after the pods refused the new one.
        """
        with self.transaction() as conn:
            res = self._reservation_in(conn, rid)
            if check:
                if budget is None and self.user_cap is not None:
                    raise InvalidRequest(
                        f"a spending cap of {money.money(self.user_cap)} per 30 days is configured; "
                        "every reservation keeps a budget",
                        "give a budget (neo extend ID --budget USD)",
                    )
                if budget is not None:
                    others = self._committed(conn, res.owner, exclude=res.id)
                    money.check_raise(budget, self.user_cap, others, res.cost)
            res.budget = budget
            res.deadline = money.deadline_for(res.created, budget, res.price_per_hour)
            res.budget_warned = False
            self._write(conn, res, {})
            return res

    def _committed(self, conn: sqlite3.Connection, owner: str, exclude: str) -> float:
        """What ``owner`` spent in the cap's window plus what their live reservations may still spend."""
        since = money.window_start()
        now = time.time()
        total = 0.0
        rows = conn.execute(
            """SELECT start, end, price_per_hour, budget, deadline FROM ledger
               WHERE owner = ? AND reservation != ? AND (end IS NULL OR end >= ?)""",
            (owner, exclude, since),
        )
        for row in rows:
            end = row["end"] if row["end"] is not None else now
            if row["deadline"] is not None:
                end = min(end, row["deadline"])
            rate = row["price_per_hour"] / 3600.0
            in_window = rate * max(0.0, end - max(row["start"], since))
            so_far = rate * max(0.0, end - row["start"])
            total += money.exposure(in_window, so_far, row["budget"], live=row["end"] is None)
        return total

    # ----------------------------------------------------------------- reading, with quarantine
    def _load(self, row: sqlite3.Row) -> Reservation:
        try:
            return Reservation.model_validate(json.loads(row["doc"]))
        except (ValueError, TypeError, ValidationError) as exc:  # JSONDecodeError is a ValueError
            return self._quarantined(row, exc)

    def _quarantined(self, row: sqlite3.Row, exc: Exception) -> Reservation:
        """A stand-in for an unreadable row, from its intact columns; the row is kept for forensics."""
        rid = row["id"]
        detail = unreadable_because(exc)
        conn = self._conn()
        with suppress(sqlite3.Error):
            conn.execute(
                "INSERT OR IGNORE INTO quarantine (tbl, id, doc, error, time) VALUES ('reservations', ?, ?, ?, ?)",
                (rid, row["doc"], detail, time.time()),
            )
        self.warn(
            "quarantine",
            f"reservation {rid}'s state row is unreadable ({detail}); quarantined, "
            f"shown as degraded; free what it held with: neo release {rid}",
        )
        ledger = conn.execute("SELECT * FROM ledger WHERE reservation = ?", (rid,)).fetchone()
        released = row["state"] == ReservationState.RELEASED.value
        stub = Reservation(
            id=rid,
            cluster=row["cluster"],
            backend="local",
            state=ReservationState.RELEASED if released else ReservationState.DEGRADED,
            nodes=1,
            gpus_per_node=int(ledger["gpus"]) if ledger else 0,
            gpu_type="?",
            price_per_hour=float(ledger["price_per_hour"]) if ledger else 0.0,
            owner=str(ledger["owner"]) if ledger else "",
            reason=f"quarantined: its state row is unreadable ({detail})",
            budget=ledger["budget"] if ledger else None,
        )
        if ledger:
            stub.created = datetime.fromtimestamp(ledger["start"], UTC)
            if ledger["deadline"] is not None:
                stub.deadline = datetime.fromtimestamp(ledger["deadline"], UTC)
            if ledger["end"] is not None:
                stub.released_at = datetime.fromtimestamp(ledger["end"], UTC)
        return stub

    def _reservation_in(self, conn: sqlite3.Connection, ref: str) -> Reservation:
        row = conn.execute("SELECT id, cluster, state, doc FROM reservations WHERE id = ?", (ref,)).fetchone()
        if row is None:
            rows = conn.execute(
                "SELECT id, cluster, state, doc FROM reservations WHERE name = ? ORDER BY rowid DESC", (ref,)
            ).fetchall()
            live = [r for r in rows if r["state"] != ReservationState.RELEASED.value]
            if len(live) > 1:
                raise Conflict(
                    f"{len(live)} live reservations are named {ref!r}: " + ", ".join(r["id"] for r in live),
                    "refer to one by its id",
                )
            row = live[0] if live else (rows[0] if rows else None)  # the live one, else the latest
        if row is None:
            raise NotFound(f"no reservation {ref!r}", "list them with: neo status")
        return self._load(row)

    @_damage_guard
    def reservation(self, ref: str) -> Reservation:
        """By id, or by name: the live reservation of that name, else the latest released one."""
        return self._reservation_in(self._conn(), ref)

    @_damage_guard
    def reservations(self, active_only: bool = False) -> list[Reservation]:
        sql = "SELECT id, cluster, state, doc FROM reservations"
        if active_only:
            sql += " WHERE state != 'released'"
        rows = self._conn().execute(sql + " ORDER BY rowid").fetchall()
        return sorted((self._load(r) for r in rows), key=lambda r: r.created)

    @_damage_guard
    def pending_owners(self) -> list[tuple[str, int | None, float | None]]:
        rows = (
            self._conn()
            .execute(
                "SELECT id, controller_pid, controller_started FROM reservations WHERE state = ?",
                (ReservationState.PENDING.value,),
            )
            .fetchall()
        )
        return [(r["id"], r["controller_pid"], r["controller_started"]) for r in rows]

    # ----------------------------------------------------------------- local capacity
    def local_used(self, db: sqlite3.Connection, cluster: str) -> dict[int, set[int]]:
        used: dict[int, set[int]] = {}
        for row in db.execute("SELECT node, gpu FROM local_slots WHERE cluster = ?", (cluster,)):
            used.setdefault(row["node"], set()).add(row["gpu"])
        return used

    def local_take(self, db: sqlite3.Connection, cluster: str, node: int, gpus: list[int], rid: str) -> None:
        db.executemany(
            "INSERT INTO local_slots (cluster, node, gpu, reservation) VALUES (?, ?, ?, ?)",
            [(cluster, node, g, rid) for g in gpus],
        )

    def local_free(self, rid: str) -> None:
        self._conn().execute("DELETE FROM local_slots WHERE reservation = ?", (rid,))

    def local_holders(self, cluster: str) -> set[str]:
        rows = self._conn().execute(
            "SELECT DISTINCT reservation FROM local_slots WHERE cluster = ?", (cluster,)
        )
        return {r["reservation"] for r in rows}

    # ----------------------------------------------------------------- runs
    @_damage_guard
    def save_run(self, run: Run) -> None:
        self._conn().execute(
            """INSERT INTO runs (id, reservation, state, doc) VALUES (?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET state=excluded.state, doc=excluded.doc, updated=strftime('%s','now')""",
            (run.id, run.reservation, run.state.value, run.model_dump_json(exclude={"duration"})),
        )

    def _load_run(self, row: sqlite3.Row) -> Run | None:
        try:
            return Run.model_validate_json(row["doc"])
        except (ValueError, TypeError, ValidationError) as exc:
            detail = str(exc).splitlines()[0][:160]
            with suppress(sqlite3.Error):
                self._conn().execute(
                    "INSERT OR IGNORE INTO quarantine (tbl, id, doc, error, time) VALUES ('runs', ?, ?, ?, ?)",
                    (row["id"], row["doc"], detail, time.time()),
                )
            self.warn(
                "quarantine", f"run {row['id']}'s record is unreadable ({detail}); quarantined, not listed"
            )
            return None

    @_damage_guard
    def run(self, rid: str) -> Run:
        row = self._conn().execute("SELECT id, doc FROM runs WHERE id = ?", (rid,)).fetchone()
        if row is None:
            raise NotFound(f"no run {rid!r}", "list them with: neo runs")
        run = self._load_run(row)
        if run is None:
            raise StateError(
                f"run {rid}'s record is unreadable (quarantined)", "list the others with: neo runs"
            )
        return run

    @_damage_guard
    def runs(self, limit: int = 50) -> list[Run]:
        rows = (
            self._conn().execute("SELECT id, doc FROM runs ORDER BY rowid DESC LIMIT ?", (limit,)).fetchall()
        )
        return [run for run in map(self._load_run, rows) if run is not None]

    @_damage_guard
    def open_runs(self) -> list[Run]:
        """Runs whose record has no end yet (starting or running), oldest first; unreadable ones
        are quarantined with a warning like everywhere else."""
        rows = (
            self._conn()
            .execute("SELECT id, doc FROM runs WHERE state IN ('starting', 'running') ORDER BY rowid")
            .fetchall()
        )
        return [run for run in map(self._load_run, rows) if run is not None]

    # ----------------------------------------------------------------- preflight results
    def save_check(self, reservation: str, report: dict[str, Any]) -> None:
        self._conn().execute(
            "INSERT INTO checks (reservation, time, doc) VALUES (?, ?, ?)",
            (reservation, time.time(), json.dumps(report)),
        )

    def checks(self, reservation: str) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT doc FROM checks WHERE reservation = ? ORDER BY time", (reservation,)
        )
        return [json.loads(r["doc"]) for r in rows]

    # ----------------------------------------------------------------- cost ledger
    @_damage_guard
    def ledger(self, since: float = 0.0, owner: str | None = None) -> list[LedgerEntry]:
        """Spend per reservation that was held at any time after ``since`` (epoch seconds)."""
        sql = "SELECT * FROM ledger WHERE (end IS NULL OR end >= ?)"
        args: list[Any] = [since]
        if owner is not None:
            sql += " AND owner = ?"
            args.append(owner)
        now = time.time()
        out = []
        for row in self._conn().execute(sql + " ORDER BY start", args):
            start = max(row["start"], since)
            end = row["end"] if row["end"] is not None else now
            if row["deadline"] is not None:
                end = min(end, row["deadline"])  # nothing is billed past the deadline the pods enforce
            out.append(
                LedgerEntry(
                    reservation=row["reservation"],
                    owner=row["owner"],
                    cluster=row["cluster"],
                    gpus=row["gpus"],
                    start=row["start"],
                    end=row["end"],
                    price_per_hour=row["price_per_hour"],
                    cost=row["price_per_hour"] * max(0.0, end - start) / 3600.0,
                )
            )
        return out


def unreadable_because(exc: Exception) -> str:
    """One line on why a stored document failed to load: for a validation error, the first field
    at fault and what is wrong with it (a pod handle missing its ``dir``), else the first line."""
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        return f"{where}: {first['msg']}"[:160]
    return str(exc).splitlines()[0][:160]


@dataclass(frozen=True)
class LedgerEntry:
    """What one reservation cost within a reporting window (``end`` None while it is held)."""

    reservation: str
    owner: str
    cluster: str
    gpus: int
    start: float
    end: float | None
    price_per_hour: float
    cost: float
