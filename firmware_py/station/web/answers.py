"""State events close the alarm they answer: the door said it is over, nobody need acknowledge it.

A door reports a state, then its end: ``hardware_fault`` with ``detail.state`` ``fault`` then
``recovered`` (same ``detail.device``), ``tamper`` with ``active`` true then false (same device),
``door_held_open`` then ``door_held_open`` with ``closed`` (the door was shut), ``link_down`` then
``link_up``. The end closes every earlier open alarm of the same door, chain epoch and key, and is
itself closed on arrival (a state event, not an alarm to act on). Closures are kept in the archive
(:meth:`~firmware_py.station.archive.store.StationStore.close_alarms`): "closed by the door", never
by a person, never changed.

The events are read in the order the archive received them, from where the last reading stopped
(``answer_position``): an end that arrives before its start (a replayed gap) is found from the start.
Whatever a door stored is read as hostile: a payload that is not an object, or a device that is
not text, answers nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from weakref import WeakKeyDictionary

from firmware_py.station.archive.store import StationStore
from firmware_py.station.web import queries

Role = tuple[Literal["start", "end"], tuple[str, ...]]

# (the start's type, the end's type) of each key
PAIRS = {"hardware_fault": ("hardware_fault", "hardware_fault"), "tamper": ("tamper", "tamper"),
         "door_held_open": ("door_held_open", "door_held_open"), "link": ("link_down", "link_up")}
TYPES = ("hardware_fault", "tamper", "door_held_open", "link_down", "link_up")
BATCH = 500  # events read at once
# How far each store's events were read when they closed nothing: kept in memory only (the archive's
# position moves with the closures), so that reading the queue writes nothing while nothing closes.
_passed: WeakKeyDictionary[StationStore, int] = WeakKeyDictionary()


def role(type_: object, detail: object) -> Role | None:
    """Whether an event starts or ends a state, and the state's key; None for any other event."""
    detail = detail if isinstance(detail, dict) else {}
    device = detail.get("device")
    if type_ in ("hardware_fault", "tamper"):
        if not isinstance(device, str):
            return None
        key = (type_, device)
        if type_ == "hardware_fault":
            state = detail.get("state")
            return ("end", key) if state == "recovered" else ("start", key) if state == "fault" else None
        active = detail.get("active")
        return ("end", key) if active is False else ("start", key) if active is True else None
    if type_ == "door_held_open":
        return ("end", ("door_held_open",)) if detail.get("closed") is True else ("start", ("door_held_open",))
    if type_ == "link_down":
        return ("start", ("link",))
    if type_ == "link_up":
        return ("end", ("link",))
    return None


def is_end(event: dict) -> bool:
    """Whether an event is the end of a state (it closes an alarm, it is not one to act on)."""
    found = role(event.get("type"), event.get("detail"))
    return found is not None and found[0] == "end"


def _role_of(type_: str, payload: bytes) -> Role | None:
    event = queries.parse_payload(payload)
    return role(type_, event.get("detail")) if "unreadable" not in event else None


def close_answered(store: StationStore, now: datetime) -> int:
    """Close the alarms answered by the state events received since the last call; how many
    closures were kept (the ends themselves included)."""
    kept = 0
    newest = store.last_id()  # read up to here: the events in between that answer nothing are passed over once
    while True:
        after = max(store.answer_position(), _passed.get(store, 0))
        if after >= newest:
            return kept
        rows = [r for r in store.answer_candidates(after, TYPES, BATCH) if r[0] <= newest]
        closures: list[tuple[str, str, int, int, int]] = []
        for _, site, door, epoch, seq, type_, payload in rows:
            found = _role_of(type_, payload)
            if found is None:
                continue
            kind, key = found
            start_type, end_type = PAIRS[key[0]]
            if kind == "end":
                if end_type != "link_up":  # an alarm-category end (link_up is a system event): closed on arrival
                    closures.append((site, door, epoch, seq, seq))
                for earlier, p in store.door_events_of(site, door, epoch, start_type, before_seq=seq, open_only=True):
                    if _role_of(start_type, p) == ("start", key):
                        closures.append((site, door, epoch, earlier, seq))
            else:  # a start that arrived after its end (a replayed gap)
                for later, p in store.door_events_of(site, door, epoch, end_type, after_seq=seq, limit=20):
                    if _role_of(end_type, p) == ("end", key):
                        closures.append((site, door, epoch, seq, later))
                        break
        position = rows[-1][0] if len(rows) == BATCH else newest
        if closures:
            store.close_alarms(closures, now, position)
            kept += len(closures)
        _passed[store] = max(position, _passed.get(store, 0))
