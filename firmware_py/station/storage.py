"""The station's connection to the archive file, for its own tables and its read-only queries.

The monitor's :class:`~firmware_py.station.archive.Archive` writes events on its own connection;
this second connection (WAL: readers never block the writer) serves the web app. Each table's SQL
lives in the module of its job (:mod:`.accounts`, :mod:`.audit`, :mod:`.alarms`, :mod:`.queries`),
as plain functions over a :class:`StationStore`, so a PostgreSQL store can stand in later.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from firmware_py.errors import StoreError


class StationStore:
    """One SQLite connection shared by the web app's threads; a lock serialises its use."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=10, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA busy_timeout=10000")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the station archive: {exc}") from None
        self.lock = threading.RLock()

    def query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple | list = ()) -> tuple | None:
        with self.lock:
            return self.conn.execute(sql, params).fetchone()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on an exception) under the lock."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def script(self, sql: str) -> None:
        with self.lock:
            self.conn.executescript(sql)

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def open_station_store(path: str | Path) -> StationStore:
    """The store with the station's tables created (accounts, sessions, audit, acknowledgements)."""
    from firmware_py.station import accounts, alarms, audit

    store = StationStore(path)
    for module in (accounts, audit):
        store.script(module.SCHEMA)
    with store.lock:
        alarms.prepare(store.conn)
    return store
