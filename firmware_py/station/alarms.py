"""The alarm queue: archived alarm events and their acknowledgements.

An operator acknowledges an alarm with a comment; the acknowledgement is kept with who and when
and is never changed or deleted (triggers refuse it). An alarm is acknowledged at most once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from ..errors import AccessCtlError
from ..monitor_archive import redact
from .storage import StationStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS acknowledgements (
    site     TEXT NOT NULL,
    door     TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    by       TEXT NOT NULL,
    at       TEXT NOT NULL,
    comment  TEXT NOT NULL,
    PRIMARY KEY (site, door, seq)
);
CREATE TRIGGER IF NOT EXISTS acknowledgements_no_update BEFORE UPDATE ON acknowledgements
    BEGIN SELECT RAISE(ABORT, 'an acknowledgement is never changed'); END;
CREATE TRIGGER IF NOT EXISTS acknowledgements_no_delete BEFORE DELETE ON acknowledgements
    BEGIN SELECT RAISE(ABORT, 'an acknowledgement is never deleted'); END;
"""

MAX_COMMENT = 500


class AlarmError(AccessCtlError):
    """An alarm cannot be acknowledged as asked (no such alarm, already acknowledged)."""


@dataclass(frozen=True)
class Alarm:
    site: str
    door: str
    seq: int
    ts: str
    type: str
    event: dict
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    comment: str | None = None


def acknowledge(store: StationStore, site: str, door: str, seq: int, by: str, comment: str, at: datetime) -> None:
    comment = comment.strip()
    if not comment or len(comment) > MAX_COMMENT:
        raise AlarmError(f"a comment of 1 to {MAX_COMMENT} characters is required")
    with store.transaction() as conn:
        row = conn.execute("SELECT category FROM events WHERE site=? AND door=? AND seq=?", (site, door, seq)).fetchone()
        if row is None or row[0] != "alarm":
            raise AlarmError(f"{site}/{door} #{seq} is not an archived alarm")
        if conn.execute("SELECT 1 FROM acknowledgements WHERE site=? AND door=? AND seq=?",
                        (site, door, seq)).fetchone():
            raise AlarmError(f"{site}/{door} #{seq} is already acknowledged")
        conn.execute("INSERT INTO acknowledgements (site, door, seq, by, at, comment) VALUES (?, ?, ?, ?, ?, ?)",
                     (site, door, seq, by, at.isoformat(timespec="seconds"), comment))


def alarms(store: StationStore, *, acknowledged: bool, limit: int = 500) -> list[Alarm]:
    """Open alarms (oldest first) or acknowledged ones (newest acknowledgement first)."""
    if acknowledged:
        sql = ("SELECT e.site, e.door, e.seq, e.ts, e.type, e.payload, a.by, a.at, a.comment FROM acknowledgements a"
               " JOIN events e ON e.site=a.site AND e.door=a.door AND e.seq=a.seq ORDER BY a.at DESC, a.rowid DESC LIMIT ?")
    else:
        sql = ("SELECT e.site, e.door, e.seq, e.ts, e.type, e.payload, NULL, NULL, NULL FROM events e"
               " LEFT JOIN acknowledgements a ON e.site=a.site AND e.door=a.door AND e.seq=a.seq"
               " WHERE e.category='alarm' AND a.seq IS NULL ORDER BY e.rowid LIMIT ?")
    rows = store.query(sql, (limit,))
    return [Alarm(s, d, q, ts, t, json.loads(redact(bytes(p).decode("utf-8", "replace"))), by, at, c)
            for s, d, q, ts, t, p, by, at, c in rows]
