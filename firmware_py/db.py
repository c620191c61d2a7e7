"""Opening the controller's SQLite database: durable settings and the schema.

One file holds the event log, the MQTT outbox and the roster. It is always
opened in WAL mode with ``synchronous=FULL`` so that an event the controller
has acted on survives a power cut. Writers use :func:`transaction`, which
takes the write lock up front (``BEGIN IMMEDIATE``), so the service and a
technician's ``accessctl roster add`` never interleave inside an append.

Inside :func:`transaction` use ``db.execute`` only: sqlite-utils' table
helpers commit on their own and would end the transaction early.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlite_utils

from .errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY,
    ts         TEXT NOT NULL,
    category   TEXT NOT NULL,
    type       TEXT NOT NULL,
    body       TEXT NOT NULL,      -- the canonical JSON of the event without its hash
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY REFERENCES events (seq)
);
CREATE TABLE IF NOT EXISTS persons (
    person_id       TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,
    organisation    TEXT NOT NULL DEFAULT '',
    employer_type   TEXT NOT NULL,
    id_hash         TEXT UNIQUE,
    id_masked       TEXT,
    review_date     TEXT,
    training_hours  REAL NOT NULL DEFAULT 0,
    commitment_date TEXT,
    valid_from      TEXT NOT NULL,
    valid_until     TEXT NOT NULL,
    schedule_group  TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'active',
    revoked_at      TEXT,
    revoked_reason  TEXT
);
CREATE TABLE IF NOT EXISTS badges (
    uid        TEXT PRIMARY KEY,
    person_id  TEXT NOT NULL REFERENCES persons (person_id)
);
CREATE INDEX IF NOT EXISTS badges_person ON badges (person_id);
CREATE TABLE IF NOT EXISTS local_commands (  -- commands from `accessctl lockdown` etc. for the running service
    id       INTEGER PRIMARY KEY,
    payload  TEXT NOT NULL,
    client   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
"""


def open_db(path: str | Path) -> sqlite_utils.Database:
    """Open (creating if needed) the database at ``path`` with durable settings and the schema."""
    path = Path(path)
    if str(path) == ":memory:":
        raise StoreError("the event store must be a file on disk, not :memory:")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{path}: cannot open the database: {exc}") from None
    return sqlite_utils.Database(conn)


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """All-or-nothing writes: ``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception."""
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def get_meta(db: sqlite_utils.Database, key: str, default=None):
    """A small piece of controller state kept beside the log (occupancy, lockdown, head seq)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else default


def set_meta(db: sqlite_utils.Database, key: str, value) -> None:
    """Set it; inside :func:`transaction` when it must change together with an event."""
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))


def open_read_only(path: str | Path) -> sqlite_utils.Database:
    """Open an existing database for reading only: no file is created or changed, so a technician
    or an auditor without write access can read it (``accessctl log verify``).

    While the service runs (a ``-wal`` file exists) SQLite reads through the service's shared
    memory (``mode=ro``); with no ``-wal`` nothing is writing, and the file is read as it is
    (``immutable=1``: no lock and no ``-shm``, which a read-only user could not create).
    :class:`StoreError` when there is no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no such database")
    uri = path.resolve().as_uri() + "?mode=ro"
    if not Path(f"{path}-wal").exists():
        uri += "&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the database for reading: {exc}") from None
    return sqlite_utils.Database(conn)
