"""The controller's state store: one sqlite file under ``$NEO_HOME``.

It caches what the backends hold (the backend stays the source of truth and is reconciled on
start) and serialises capacity decisions across processes: every allocation runs inside one
``BEGIN IMMEDIATE`` transaction, so two racing ``neo reserve`` calls cannot both take the last GPUs.

Tables: ``reservations`` (one JSON document per reservation, plus the columns queries need),
``local_slots`` (which virtual GPU of which local node a reservation holds), ``runs``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_neo.errors import NotFound, StateError
from jupyter_neo.model import Reservation, ReservationState, Run

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
"""


class Store:
    """Thread-safe access to the sqlite file (one connection per thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        for attempt in range(50):
            try:
                self._conn().executescript(SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise StateError(f"cannot open state store {path}: {exc}", "check NEO_HOME") from None
                time.sleep(0.05 + random.random() * 0.1)
            except sqlite3.Error as exc:
                raise StateError(f"cannot open state store {path}: {exc}", "check NEO_HOME") from None

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An exclusive write transaction across processes (``BEGIN IMMEDIATE``)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    # ----------------------------------------------------------------- reservations
    def save_reservation(self, res: Reservation, db: sqlite3.Connection | None = None, **owner: Any) -> None:
        doc = res.model_dump_json(exclude={"cost", "budget_used"}, context={"internal": True})
        data = json.loads(doc)
        data["secret"] = res.secret
        for pod, dumped in zip(res.pods, data["pods"], strict=True):
            dumped["handle"] = pod.handle
        conn = db or self._conn()
        conn.execute(
            """INSERT INTO reservations (id, cluster, state, controller_pid, controller_started, doc)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET state=excluded.state, doc=excluded.doc,
                 controller_pid=COALESCE(excluded.controller_pid, controller_pid),
                 controller_started=COALESCE(excluded.controller_started, controller_started),
                 updated=strftime('%s','now')""",
            (res.id, res.cluster, res.state.value, owner.get("pid"), owner.get("started"), json.dumps(data)),
        )
        conn.execute(
            """INSERT INTO ledger (reservation, owner, cluster, gpus, start, end, price_per_hour)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(reservation) DO UPDATE SET end=excluded.end, price_per_hour=excluded.price_per_hour""",
            (
                res.id,
                res.owner,
                res.cluster,
                res.gpus,
                res.created.timestamp(),
                res.released_at.timestamp() if res.released_at else None,
                res.price_per_hour,
            ),
        )

    def _load(self, row: sqlite3.Row) -> Reservation:
        return Reservation.model_validate(json.loads(row["doc"]))

    def reservation(self, rid: str) -> Reservation:
        row = (
            self._conn()
            .execute(
                "SELECT doc FROM reservations WHERE id = ? OR json_extract(doc, '$.name') = ?", (rid, rid)
            )
            .fetchone()
        )
        if row is None:
            raise NotFound(f"no reservation {rid!r}", "list them with: neo status")
        return self._load(row)

    def reservations(self, active_only: bool = False) -> list[Reservation]:
        sql = "SELECT doc FROM reservations"
        if active_only:
            sql += " WHERE state != 'released'"
        rows = self._conn().execute(sql + " ORDER BY json_extract(doc, '$.created')").fetchall()
        return [self._load(r) for r in rows]

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
    def save_run(self, run: Run) -> None:
        self._conn().execute(
            """INSERT INTO runs (id, reservation, state, doc) VALUES (?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET state=excluded.state, doc=excluded.doc, updated=strftime('%s','now')""",
            (run.id, run.reservation, run.state.value, run.model_dump_json(exclude={"duration"})),
        )

    def run(self, rid: str) -> Run:
        row = self._conn().execute("SELECT doc FROM runs WHERE id = ?", (rid,)).fetchone()
        if row is None:
            raise NotFound(f"no run {rid!r}", "list them with: neo runs")
        return Run.model_validate_json(row["doc"])

    def runs(self, limit: int = 50) -> list[Run]:
        rows = self._conn().execute("SELECT doc FROM runs ORDER BY rowid DESC LIMIT ?", (limit,)).fetchall()
        return [Run.model_validate_json(r["doc"]) for r in rows]

    def open_runs(self) -> list[Run]:
        """Runs whose record has no end yet (starting or running), oldest first."""
        rows = (
            self._conn()
            .execute("SELECT doc FROM runs WHERE state IN ('starting', 'running') ORDER BY rowid")
            .fetchall()
        )
        return [Run.model_validate_json(r["doc"]) for r in rows]

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
