"""What the doctor and the command line read from the door's database beside (or without) the service.

The door's SQL stays in ``storage/``: ``accessctl doctor`` and ``accessctl log verify``/``export``
ask these functions instead of writing statements of their own. None of them stores anything:
:func:`try_write` makes a real write and rolls it back.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import sqlite_utils


class LinkEvent(NamedTuple):
    seq: int
    ts: str
    type: str  # link_up or link_down


def open_for_writing(path: str | Path, *, timeout_s: float = 5.0) -> sqlite_utils.Database:
    """An existing database opened for reading and writing, created never (``mode=rw``);
    raises :class:`sqlite3.Error` when it does not open so."""
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, isolation_level=None, timeout=timeout_s)
    return sqlite_utils.Database(conn)


def try_write(db: sqlite_utils.Database) -> None:
    """Take the write lock and make a real write, then roll it back (DDL is transactional in SQLite):
    nothing is left behind. Raises :class:`sqlite3.Error` when the database cannot be written."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        db.conn.execute("CREATE TABLE doctor_write_probe (x)")
    finally:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")


def has_event_log(db: sqlite_utils.Database) -> bool:
    """Whether the database holds an event log (an ``events`` table); :class:`sqlite3.DatabaseError`
    when the file is not a database or is damaged."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone() is not None


def last_link_event(db: sqlite_utils.Database) -> LinkEvent | None:
    """The door's latest ``link_up`` or ``link_down`` event, or None when it has recorded neither."""
    row = db.execute("SELECT seq, ts, type FROM events WHERE type IN ('link_up', 'link_down') "
                     "ORDER BY seq DESC LIMIT 1").fetchone()
    return LinkEvent(*row) if row else None


class RosterEvent(NamedTuple):
    seq: int
    ts: str
    type: str  # roster_applied or roster_rejected
    detail: dict


def last_roster_event(db: sqlite_utils.Database) -> RosterEvent | None:
    """The door's latest ``roster_applied`` or ``roster_rejected`` event, or None when it has recorded neither."""
    row = db.execute("SELECT seq, ts, type, body FROM events WHERE type IN ('roster_applied', 'roster_rejected') "
                     "ORDER BY seq DESC LIMIT 1").fetchone()
    if row is None:
        return None
    detail = json.loads(row[3]).get("detail") or {}
    return RosterEvent(row[0], row[1], row[2], detail if isinstance(detail, dict) else {})


def outbox_size(db: sqlite_utils.Database) -> int:
    """How many stored events wait in the outbox for the broker."""
    return db.execute("SELECT count(*) FROM outbox").fetchone()[0]


def set_busy_timeout(db: sqlite_utils.Database, seconds: float) -> None:
    """How long this connection's next writes wait for another connection's write lock."""
    db.conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
