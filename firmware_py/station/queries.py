"""Read-only SQL over the monitor's archive tables (``events``, ``doors``), for the web app.

Events come back as the stored JSON with anything shaped like a full resident ID number masked
(the doors already mask them; this is the second fence). ``rowid`` is the order in which the
archive received the events: the live stream resumes from it.

A door whose database was reset starts a new chain *epoch* at seq 1 (:mod:`firmware_py.station.archive_schema`):
an event is named by (site, door, epoch, seq), never by seq alone. The register shows every epoch;
the door's last event and its chain are those of its current epoch (``doors.epoch``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from firmware_py.station.archive import redact
from firmware_py.station.storage import StationStore

# Indexes the station's queries need on the archive's table (created once the archive exists):
# the register of one door and one day reads (site, door, local_date) without scanning the door's other days.
INDEXES = """
CREATE INDEX IF NOT EXISTS station_events_category ON events (category);
CREATE INDEX IF NOT EXISTS station_events_door_date ON events (site, door, local_date);
"""


def prepare(store: StationStore) -> None:
    store.script(INDEXES)


def parse_payload(payload: bytes) -> dict:
    """A stored payload as an event, anything shaped like a full resident ID number masked."""
    return json.loads(redact(bytes(payload).decode("utf-8", "replace")))


@dataclass(frozen=True)
class StreamRow:
    id: int  # the archive's rowid: received order
    site: str
    door: str
    event: dict
    epoch: int = 1


def last_id(store: StationStore) -> int:
    row = store.one("SELECT coalesce(max(rowid), 0) FROM events")
    return row[0] if row else 0


def events_after(store: StationStore, after: int, limit: int = 500) -> list[StreamRow]:
    rows = store.query("SELECT rowid, site, door, payload, epoch FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?",
                       (after, limit))
    return [StreamRow(i, s, d, parse_payload(p), ep) for i, s, d, p, ep in rows]


def recent_events(store: StationStore, limit: int = 100) -> list[StreamRow]:
    rows = store.query("SELECT rowid, site, door, payload, epoch FROM events ORDER BY rowid DESC LIMIT ?", (limit,))
    return [StreamRow(i, s, d, parse_payload(p), ep) for i, s, d, p, ep in reversed(rows)]


def events_between(store: StationStore, first: date, last: date, tz: ZoneInfo, *, site: str | None = None,
                   door: str | None = None, person: str | None = None) -> list[StreamRow]:
    """The stored events (of every epoch) whose ``ts`` falls from the start of ``first`` to the end of
    ``last`` in ``tz`` (inclusive), of one site/door/person if given, in time order."""
    start = datetime.combine(first, datetime.min.time(), tz)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tz)
    # local_date is the date at the door's own offset: a day either side covers any offset
    sql = "SELECT rowid, site, door, payload, epoch, ts FROM events WHERE local_date BETWEEN ? AND ?"
    params: list = [(first - timedelta(days=1)).isoformat(), (last + timedelta(days=1)).isoformat()]
    if site:
        sql += " AND site=?"
        params.append(site)
    if door:
        sql += " AND door=?"
        params.append(door)
    out = []
    for rowid, s, d, payload, epoch, ts in store.query(sql, params):
        if not start <= datetime.fromisoformat(ts) < end:  # the ts column is the event's own ts
            continue
        event = parse_payload(payload)
        if person and (event.get("person") or {}).get("person_id") != person:
            continue
        out.append(StreamRow(rowid, s, d, event, epoch))
    out.sort(key=lambda r: (datetime.fromisoformat(r.event["ts"]), r.site, r.door, r.epoch, r.event["seq"]))
    return out


@dataclass(frozen=True)
class DoorRow:
    site: str
    door: str
    status: dict | None
    occupancy: object | None
    status_at: str | None
    epoch: int = 1  # the door's current chain epoch


def doors(store: StationStore) -> list[DoorRow]:
    rows = store.query("SELECT site, door, status, occupancy, status_at, epoch FROM doors ORDER BY site, door")
    return [DoorRow(s, d, _json(st), _json(oc), at, ep) for s, d, st, oc, at, ep in rows]


def current_epoch(store: StationStore, site: str, door: str) -> int:
    """The door's current chain epoch (1 for a door the archive does not know)."""
    row = store.one("SELECT epoch FROM doors WHERE site=? AND door=?", (site, door))
    return row[0] if row else 1


def last_event(store: StationStore, site: str, door: str) -> dict | None:
    """The highest seq of the door's current epoch."""
    row = store.one("SELECT payload FROM events WHERE site=? AND door=? AND epoch=? ORDER BY seq DESC LIMIT 1",
                    (site, door, current_epoch(store, site, door)))
    return parse_payload(row[0]) if row else None


def chain_rows(store: StationStore, site: str, door: str, epoch: int, after_seq: int,
               limit: int = 5000) -> list[tuple[int, bytes]]:
    """(seq, payload) of one door's epoch from ``after_seq`` on, in seq order (for the chain check)."""
    return [(s, bytes(p)) for s, p in store.query(
        "SELECT seq, payload FROM events WHERE site=? AND door=? AND epoch=? AND seq > ? ORDER BY seq LIMIT ?",
        (site, door, epoch, after_seq, limit))]


def _json(text: str | None):
    if not text:
        return None
    try:
        return json.loads(redact(text))
    except ValueError:
        return None
