"""Opening the controller's SQLite database: durable settings and the schema.

One file holds the event log, the MQTT outbox and the roster. It is always
opened in WAL mode with ``synchronous=FULL`` so that an event the controller
has acted on survives a power cut. Writers use :func:`transaction`, which
takes the write lock up front (``BEGIN IMMEDIATE``), so the service and a
technician's ``accessctl roster add`` never interleave inside an append.

Inside :func:`transaction` use ``db.execute`` only: sqlite-utils' table
helpers commit on their own and would end the transaction early.

The service opens its connection with a short busy timeout (a write that
cannot have the lock at once fails quickly instead of holding the door's loop)
and holds :func:`hold_database`, so that two services never share one file.
Storage failures reach callers as :class:`StoreError` with a message that says
what is wrong (locked, disk full, read-only) instead of SQLite's own words.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from firmware_py.core.events import URGENT_TYPES
from firmware_py.errors import StoreError
from firmware_py.storage.roster_pin import add_pin_columns

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
CREATE INDEX IF NOT EXISTS events_urgent ON events (seq) WHERE {urgent};  -- the outbox's urgent lane
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
    revoked_reason  TEXT,
    pin_hash        TEXT,          -- scrypt hashes of the PINs (storage/roster_pin.py), never a PIN
    duress_pin_hash TEXT
);
CREATE TABLE IF NOT EXISTS badges (
    uid        TEXT PRIMARY KEY,
    person_id  TEXT NOT NULL REFERENCES persons (person_id)
);
CREATE TABLE IF NOT EXISTS local_commands (  -- commands from `accessctl lockdown` etc. for the running service
    id       INTEGER PRIMARY KEY,
    payload  TEXT NOT NULL,
    client   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS executed_commands (  -- keyed hashes of the command ids run, oldest first
    n    INTEGER PRIMARY KEY,
    key  TEXT NOT NULL UNIQUE
);
"""
# The events published ahead of the outbox's backlog (storage/eventstore.py ``urgent_rows``); the
# partial index keeps finding them cheap whatever the backlog, and the query must say the same words.
URGENT_EVENTS = "type IN ({})".format(", ".join(f"'{t}'" for t in URGENT_TYPES))
SCHEMA = SCHEMA.replace("{urgent}", URGENT_EVENTS)


def open_db(path: str | Path, *, busy_timeout_s: float = 10.0) -> sqlite_utils.Database:
    """Open (creating if needed) the database at ``path`` with durable settings and the schema.

    ``busy_timeout_s`` is how long a write waits for another connection's write lock
    before it fails with :class:`StoreError`.
    """
    path = Path(path)
    if str(path) == ":memory:":
        raise StoreError("the event store must be a file on disk, not :memory:")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_s, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
        _index_badges_by_person(conn)
        add_pin_columns(conn)  # a database made before PINs existed
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{path}: cannot open the database: {explain(exc)}") from None
    return sqlite_utils.Database(conn)


def _index_badges_by_person(conn: sqlite3.Connection) -> None:
    """``badges (person_id)`` indexed once: a roster import builds its own (named per import) and swaps it in."""
    for _, name, *_ in conn.execute("PRAGMA index_list(badges)").fetchall():
        columns = [r[2] for r in conn.execute(f'PRAGMA index_info("{name}")')]
        if columns[:1] == ["person_id"]:
            return
    conn.execute("CREATE INDEX IF NOT EXISTS badges_person ON badges (person_id)")


def explain(exc: BaseException) -> str:
    """What a storage error means for the person at the door's console, in plain words."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return ("the database is locked by another process (an `accessctl roster import` still running, "
                "or a `sqlite3` shell with an open transaction?)")
    if "full" in text or getattr(exc, "errno", None) == 28:
        return "the disk is full; free space on the filesystem that holds the database"
    if "readonly" in text or "read-only" in text or getattr(exc, "errno", None) == 30:
        return ("the database is read-only (file or directory owner and mode, or a read-only filesystem); "
                "the service user must be able to write the file and its directory")
    if "I/O" in text:
        return "disk I/O error: the storage may be failing (check `dmesg`)"
    return f"cannot write the database: {text}"


def database_file(db: sqlite_utils.Database) -> str:
    """The file behind ``db`` (for messages); empty when SQLite cannot say."""
    try:
        return next((r[2] for r in db.conn.execute("PRAGMA database_list") if r[1] == "main"), "")
    except sqlite3.Error:
        return ""


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """All-or-nothing writes: ``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception.

    A lock that cannot be had within the busy timeout, a full disk or a read-only
    file raise :class:`StoreError` saying so; nothing was written.
    """
    conn = db.conn
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise StoreError(f"{database_file(db) or 'the database'}: {explain(exc)}") from None


def hold_database(path: str | Path) -> Callable[[], None]:
    """One service per database: an exclusive lock on ``DATABASE.lock``; returns the release.

    The lock file sits beside the database file itself, its path resolved (symbolic links
    followed, ``realpath``), so a second service reaching the same file through a link or
    another relative path meets the same lock. The lock is the kernel's (``flock``): it ends
    with the process however that ends, so a crashed service never blocks the next start.
    A second ``accessctl run`` on the same database is refused with :class:`StoreError`.
    """
    resolved = Path(os.path.realpath(path))
    lock_path = resolved.with_name(resolved.name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(f"{lock_path}: cannot create the service lock file: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        through = f" (the file {resolved})" if str(resolved) != str(path) else ""
        raise StoreError(f"{path}: another door service is already running on this database{through}"
                         f"{f' (process {holder})' if holder else ''}; two services would fight over the lock "
                         "and the lockdown state. Stop the other one first (`systemctl status accessctl`)") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)

    held = [fd]

    def release() -> None:
        while held:  # a second call does nothing (the number may belong to another file by then)
            os.close(held.pop())  # closing the only descriptor drops the lock

    return release


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
