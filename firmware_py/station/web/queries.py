"""The page's reads of the archive (events, doors), over either backend's :class:`.storage.StationStore`.

Events come back as the stored JSON with anything shaped like a full resident ID number masked on
the parsed values (:mod:`firmware_py.station.archive.masking`; the doors already mask them, this is
the second fence), and as the page reads them (:mod:`.shown`: each field of the type the page
expects, unknown as unknown). A stored payload that is not a JSON object is the event
``{"unreadable": what is wrong}``: its row shows that, and no other row changes. Each row's ``id``
is the order in which the archive received the events (SQLite's rowid, PostgreSQL's
``received_id``): the live stream resumes from it.

A door whose database was reset starts a new chain *epoch* at seq 1 (:mod:`firmware_py.station.archive.sqlite_schema`):
an event is named by (site, door, epoch, seq), never by seq alone. The register shows every epoch;
the door's last event and its chain are those of its current epoch (``doors.epoch``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from firmware_py.station.archive import masking
from firmware_py.station.archive.chain import ChainResult
from firmware_py.station.archive.store import ChainView, StationStore
from firmware_py.station.web import shown

JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true or false",
              type(None): "null"}


def prepare(store: StationStore) -> None:
    """What the reads need (indexes; on PostgreSQL the archive's tables), once the archive exists."""
    store.prepare_reads()


def parse_payload(payload: bytes) -> dict:
    """A stored payload as its event object, ID numbers masked; ``{"unreadable": why}`` when it is
    not a JSON object."""
    try:
        value = masking.parse(payload)
    except masking.Unreadable as exc:
        return {"unreadable": str(exc)[:200]}
    if not isinstance(value, dict):
        return {"unreadable": f"not a JSON object but {JSON_TYPES.get(type(value), 'another value')}"}
    return value


@dataclass(frozen=True)
class StreamRow:
    id: int  # the archive's received order (the live stream's cursor)
    site: str
    door: str
    event: dict  # as stored, masked (what /api/events gives)
    epoch: int = 1
    shown: dict = field(init=False, compare=False)  # as the page reads it (:func:`.shown.event`)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shown", shown.event(self.event))


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
        row = StreamRow(rowid, s, d, parse_payload(payload), epoch)
        if person and (row.shown["person"] or {}).get("person_id") != person:
            continue
        out.append(row)
    out.sort(key=lambda r: (_instant(r.shown["ts"], tz), r.site, r.door, r.epoch,
                            r.shown["seq"] if isinstance(r.shown["seq"], int) else -1))
    return out


def _instant(ts: str | None, tz: ZoneInfo) -> float:
    """When an event happened, for ordering (POSIX seconds): its ``ts``, a time without offset taken
    in the site's zone; an event without a readable time sorts first."""
    try:
        at = datetime.fromisoformat(ts) if ts else None
        return (at if at.tzinfo else at.replace(tzinfo=tz)).timestamp() if at else float("-inf")
    except (ValueError, OverflowError, OSError):
        return float("-inf")


@dataclass(frozen=True)
class DoorRow:
    site: str
    door: str
    status: dict | None
    occupancy: object | None
    status_at: str | None
    epoch: int = 1  # the door's current chain epoch


def doors(store: StationStore) -> list[DoorRow]:
    """Every door with its status and occupancy parsed and masked (an unreadable one is ``{}``: unknown)."""
    return [DoorRow(s, d, _json(st), _json(oc), at, ep) for s, d, st, oc, at, ep in store.doors()]


def current_epoch(store: StationStore, site: str, door: str) -> int:
    """The door's current chain epoch (1 for a door the archive does not know)."""
    return store.current_epoch(site, door)


def chain(chains: ChainView, site: str, door: str, epoch: int) -> ChainResult:
    """The door's chain as verified so far; an archived event nested too deeply for the check to read
    is a break of that door's chain, not a failure of the page."""
    try:
        return chains.check(site, door, epoch)
    except RecursionError:
        return ChainResult(False, None, 0, None, "an archived event is nested too deeply to be read", epoch)


def last_event(store: StationStore, site: str, door: str) -> dict | None:
    """The highest seq of the door's current epoch, as the page reads it (:func:`.shown.event`)."""
    payload = store.last_payload(site, door, current_epoch(store, site, door))
    return shown.event(parse_payload(payload)) if payload is not None else None


def _json(text: str | None):
    if not text:
        return None
    try:
        return masking.parse(text)
    except masking.Unreadable:
        return {}
