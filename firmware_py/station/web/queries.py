"""The page's reads of the archive (events, doors), over either backend's :class:`.storage.StationStore`.

Events come back as the stored JSON with anything shaped like a full resident ID number masked
(the doors already mask them; this is the second fence). Each row's ``id`` is the order in which
the archive received the events (SQLite's rowid, PostgreSQL's ``received_id``): the live stream
resumes from it.

A door whose database was reset starts a new chain *epoch* at seq 1 (:mod:`firmware_py.station.archive.sqlite_schema`):
an event is named by (site, door, epoch, seq), never by seq alone. The register shows every epoch;
the door's last event and its chain are those of its current epoch (``doors.epoch``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from firmware_py.station.archive.sqlite import redact
from firmware_py.station.archive.store import StationStore


def prepare(store: StationStore) -> None:
    """What the reads need (indexes; on PostgreSQL the archive's tables), once the archive exists."""
    store.prepare_reads()


def parse_payload(payload: bytes) -> dict:
    """A stored payload as an event, anything shaped like a full resident ID number masked."""
    return json.loads(redact(bytes(payload).decode("utf-8", "replace")))


@dataclass(frozen=True)
class StreamRow:
    id: int  # the archive's received order (the live stream's cursor)
    site: str
    door: str
    event: dict
    epoch: int = 1


def last_id(store: StationStore) -> int:
    return store.last_id()


def events_after(store: StationStore, after: int, limit: int = 500) -> list[StreamRow]:
    return [StreamRow(i, s, d, parse_payload(p), ep) for i, s, d, p, ep in store.events_after(after, limit)]


def recent_events(store: StationStore, limit: int = 100) -> list[StreamRow]:
    return [StreamRow(i, s, d, parse_payload(p), ep) for i, s, d, p, ep in store.recent_events(limit)]


def events_between(store: StationStore, first: date, last: date, tz: ZoneInfo, *, site: str | None = None,
                   door: str | None = None, person: str | None = None) -> list[StreamRow]:
    """The stored events (of every epoch) whose ``ts`` falls from the start of ``first`` to the end of
    ``last`` in ``tz`` (inclusive), of one site/door/person if given, in time order."""
    start = datetime.combine(first, datetime.min.time(), tz)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tz)
    out = []
    for rowid, s, d, payload, epoch in store.events_between(start, end, site or None, door or None):
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
    return [DoorRow(s, d, _json(st), _json(oc), at, ep) for s, d, st, oc, at, ep in store.doors()]


def current_epoch(store: StationStore, site: str, door: str) -> int:
    """The door's current chain epoch (1 for a door the archive does not know)."""
    return store.current_epoch(site, door)


def last_event(store: StationStore, site: str, door: str) -> dict | None:
    """The highest seq of the door's current epoch."""
    payload = store.last_payload(site, door, current_epoch(store, site, door))
    return parse_payload(payload) if payload is not None else None


def _json(text: str | None):
    if not text:
        return None
    try:
        return json.loads(redact(text))
    except ValueError:
        return None
