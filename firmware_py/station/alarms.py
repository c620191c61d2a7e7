"""The alarm queue: archived alarm events and their acknowledgements.

An operator acknowledges an alarm with a comment; the acknowledgement is kept with who and when
and is never changed or deleted (triggers refuse it). An alarm is acknowledged at most once.

An alarm is named by (site, door, epoch, seq): a door whose database was reset numbers its events
from 1 again in a new chain epoch, so seq alone would mix the two chains' alarms. Acknowledgements
kept before epochs existed are moved into epoch 1 (:func:`prepare`).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime

from firmware_py.errors import AlarmError
from firmware_py.station.archive import redact
from firmware_py.station.storage import StationStore

_TABLE = """
CREATE TABLE IF NOT EXISTS acknowledgements (
    site     TEXT NOT NULL,
    door     TEXT NOT NULL,
    epoch    INTEGER NOT NULL,  -- the door's chain epoch (monitor_schema)
    seq      INTEGER NOT NULL,
    by       TEXT NOT NULL,
    at       TEXT NOT NULL,
    comment  TEXT NOT NULL,
    PRIMARY KEY (site, door, epoch, seq)
)"""
SCHEMA = _TABLE + """;
CREATE TRIGGER IF NOT EXISTS acknowledgements_no_update BEFORE UPDATE ON acknowledgements
    BEGIN SELECT RAISE(ABORT, 'an acknowledgement is never changed'); END;
CREATE TRIGGER IF NOT EXISTS acknowledgements_no_delete BEFORE DELETE ON acknowledgements
    BEGIN SELECT RAISE(ABORT, 'an acknowledgement is never deleted'); END;
"""

MAX_COMMENT = 500


def prepare(conn: sqlite3.Connection) -> None:
    """Create the table, or move acknowledgements keyed by (site, door, seq) into epoch 1 (all or nothing).

    The old table is renamed and dropped (a DROP fires no delete trigger); its triggers go with it and
    are created again on the new table."""
    columns = [r[1] for r in conn.execute("PRAGMA table_info(acknowledgements)")]
    if columns and "epoch" not in columns:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("ALTER TABLE acknowledgements RENAME TO acknowledgements_v1")
            conn.execute(_TABLE)
            conn.execute("INSERT INTO acknowledgements (site, door, epoch, seq, by, at, comment)"
                         " SELECT site, door, 1, seq, by, at, comment FROM acknowledgements_v1 ORDER BY rowid")
            conn.execute("DROP TABLE acknowledgements_v1")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    conn.executescript(SCHEMA)


@dataclass(frozen=True)
class Alarm:
    site: str
    door: str
    seq: int
    ts: str
    type: str
    event: dict
    epoch: int = 1
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    comment: str | None = None


def acknowledge(store: StationStore, site: str, door: str, epoch: int, seq: int, by: str, comment: str,
                at: datetime) -> None:
    comment = comment.strip()
    if not comment or len(comment) > MAX_COMMENT:
        raise AlarmError(f"a comment of 1 to {MAX_COMMENT} characters is required")
    name = f"{site}/{door} #{seq} of epoch {epoch}"
    with store.transaction() as conn:
        row = conn.execute("SELECT category FROM events WHERE site=? AND door=? AND epoch=? AND seq=?",
                           (site, door, epoch, seq)).fetchone()
        if row is None or row[0] != "alarm":
            raise AlarmError(f"{name} is not an archived alarm")
        if conn.execute("SELECT 1 FROM acknowledgements WHERE site=? AND door=? AND epoch=? AND seq=?",
                        (site, door, epoch, seq)).fetchone():
            raise AlarmError(f"{name} is already acknowledged")
        conn.execute("INSERT INTO acknowledgements (site, door, epoch, seq, by, at, comment)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)", (site, door, epoch, seq, by, at.isoformat(timespec="seconds"),
                                                       comment))


def alarms(store: StationStore, *, acknowledged: bool, limit: int = 500) -> list[Alarm]:
    """Open alarms (oldest first) or acknowledged ones (newest acknowledgement first)."""
    if acknowledged:
        sql = ("SELECT e.site, e.door, e.seq, e.ts, e.type, e.payload, e.epoch, a.by, a.at, a.comment"
               " FROM acknowledgements a JOIN events e ON e.site=a.site AND e.door=a.door AND e.epoch=a.epoch"
               " AND e.seq=a.seq ORDER BY a.at DESC, a.rowid DESC LIMIT ?")
    else:
        sql = ("SELECT e.site, e.door, e.seq, e.ts, e.type, e.payload, e.epoch, NULL, NULL, NULL FROM events e"
               " LEFT JOIN acknowledgements a ON e.site=a.site AND e.door=a.door AND e.epoch=a.epoch AND e.seq=a.seq"
               " WHERE e.category='alarm' AND a.seq IS NULL ORDER BY e.rowid LIMIT ?")
    rows = store.query(sql, (limit,))
    return [Alarm(s, d, q, ts, t, json.loads(redact(bytes(p).decode("utf-8", "replace"))), ep, by, at, c)
            for s, d, q, ts, t, p, ep, by, at, c in rows]
