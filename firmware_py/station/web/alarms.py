"""The alarm queue: archived alarm events and their acknowledgements.

An operator acknowledges an alarm with a comment; the acknowledgement is kept with who and when
and is never changed or deleted (each backend's triggers refuse it). An alarm is acknowledged at most once.

An alarm is named by (site, door, epoch, seq): a door whose database was reset numbers its events
from 1 again in a new chain epoch, so seq alone would mix the two chains' alarms (the PostgreSQL
archive has one epoch per door: 1).

The queue puts what needs a person first (:data:`PRIORITY`: duress and a forced door, then tamper,
then screening, then the rest), newest first within each; an alarm its door closed with a state
event (:mod:`.answers`) leaves the queue without an acknowledgement. The queue is searched with the
register's filters (:class:`.search.Filters`: dates, site, door, type, person) and read in pages
of :data:`PAGE` with a keyset cursor (``before``: the archive id of the last row shown; the next
page starts after it in the queue's order, its rank taken from its type, so a page never skips nor
repeats an alarm). Several alarms may be acknowledged at once with one comment (one transaction).

A full ID number typed into a comment is masked before the comment is kept; the alarm's event is
read as the page reads events (:mod:`.queries`, :mod:`.shown`), so a strange alarm of one door
shows as strange in its own row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar
from weakref import WeakKeyDictionary

from firmware_py.errors import AlarmError
from firmware_py.station.archive import masking
from firmware_py.station.archive.store import EventSearch, StationStore
from firmware_py.station.web import answers, queries, shown

T = TypeVar("T")
MAX_COMMENT = 500
MAX_BULK = 500  # alarms acknowledged by one request
PAGE = 100  # open alarms on one page of the queue

# What needs a person first: a lower rank first; a type not named ranks after all of these.
PRIORITY = {"duress": 0, "door_forced": 0, "tamper": 1, "screening_alarm": 2}
STANDARD_COMMENTS = (
    "已到现场核查，无异常 Checked on site: nothing wrong",
    "误报 False alarm",
    "已通知保卫处 Security notified",
    "设备已报修 Repair requested",
    "演练或测试 Drill or test",
    "人员已确认身份 Person identified",
)


@dataclass(frozen=True)
class Alarm:
    site: str
    door: str
    seq: int
    ts: str
    type: str
    event: dict  # as the page reads it (:func:`.shown.event`)
    epoch: int = 1
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    comment: str | None = None
    closed_by: int | None = None  # the seq of the state event with which the door closed it
    closed_at: str | None = None
    people: list[dict] = field(default_factory=list, compare=False)  # whom it names (an overstay's people)
    summary: str = ""  # what it says, readable
    id: int | None = None  # the archive's id of its event (the queue's ``before`` cursor)

    @property
    def key(self) -> str:
        """The alarm's name as one text (bulk acknowledgement, the page's rows)."""
        return json.dumps([self.site, self.door, self.epoch, self.seq], ensure_ascii=False)

    @property
    def rank(self) -> int:
        return PRIORITY.get(self.type, max(PRIORITY.values()) + 1)


def acknowledge(store: StationStore, site: str, door: str, epoch: int, seq: int, by: str, comment: str,
                at: datetime) -> None:
    comment = masking.mask_text(comment.strip())
    if not comment or len(comment) > MAX_COMMENT:
        raise AlarmError(f"a comment of 1 to {MAX_COMMENT} characters is required")
    name = f"{site}/{door} #{seq} of epoch {epoch}"
    outcome = store.acknowledge(site, door, epoch, seq, by, at, comment)
    if outcome == "not_an_alarm":
        raise AlarmError(f"{name} is not an archived alarm")
    if outcome == "already_acknowledged":
        raise AlarmError(f"{name} is already acknowledged")


def acknowledge_many(store: StationStore, keys: list[str], by: str, comment: str,
                     at: datetime) -> dict[str, list[str]]:
    """Acknowledge the alarms named by ``keys`` (:attr:`Alarm.key`) with one comment, in one
    transaction: {"ok": [names], "already_acknowledged": [...], "not_an_alarm": [...]}."""
    comment = masking.mask_text(comment.strip())
    if not comment or len(comment) > MAX_COMMENT:
        raise AlarmError(f"a comment of 1 to {MAX_COMMENT} characters is required")
    if not keys:
        raise AlarmError("choose at least one alarm")
    if len(keys) > MAX_BULK:
        raise AlarmError(f"at most {MAX_BULK} alarms at once")
    named = [parse_key(k) for k in keys]
    outcomes = store.acknowledge_many(named, by, at, comment)
    out: dict[str, list[str]] = {"ok": [], "already_acknowledged": [], "not_an_alarm": []}
    for (site, door, epoch, seq), outcome in zip(named, outcomes, strict=True):
        out[outcome].append(f"{site}/{door} #{seq}" + (f" (epoch {epoch})" if epoch != 1 else ""))
    return out


def parse_key(key: str) -> tuple[str, str, int, int]:
    """(site, door, epoch, seq) from :attr:`Alarm.key`; :class:`AlarmError` naming what is wrong."""
    try:
        value = json.loads(key)
    except (ValueError, RecursionError):
        value = None
    if not (isinstance(value, list) and len(value) == 4 and all(isinstance(v, str) and v for v in value[:2])
            and all(type(v) is int and 0 < v < 1 << 63 for v in value[2:])):
        raise AlarmError(f"{key[:80]!r} does not name an alarm as [site, door, epoch, seq]")
    return value[0], value[1], value[2], value[3]


def open_alarms(store: StationStore, now: datetime, search: EventSearch | None = None, before: int | None = None,
                limit: int = PAGE) -> list[Alarm]:
    """One page of the queue: alarms neither acknowledged nor closed by their door (the state events
    received so far are read first) matching ``search``, by :data:`PRIORITY`, newest first within
    each, after the cursor ``before``."""
    answers.close_answered(store, now)
    return _cached(store, ("queue", search, before, limit), lambda: [
        alarm_from_row(s, d, q, ts, t, p, ep, id=i)
        for i, s, d, q, ts, t, p, ep in store.open_alarms(limit, PRIORITY, search, before)])


@dataclass(frozen=True)
class QueuePage:
    rows: list[Alarm]  # in the queue's order
    before: int | None  # the cursor of the next page; None: this page ends the queue


def queue_page(store: StationStore, now: datetime, filters, tz) -> QueuePage:
    """The page of the queue that ``filters`` (:class:`.search.Filters`) asks for: its filters and cursor."""
    found = open_alarms(store, now, filters.search(tz), filters.before, PAGE + 1)
    return QueuePage(found[:PAGE], found[PAGE - 1].id if len(found) > PAGE else None)


def open_counts(store: StationStore, now: datetime) -> dict[tuple[str, str], dict[str, int]]:
    """{(site, door): {type: how many}} of the queue (the state events received so far read first)."""
    answers.close_answered(store, now)
    return _cached(store, ("counts",), store.open_alarm_counts)


# The open alarms as last read, per store and question, with the store's :meth:`alarm_version` they
# were read at: every page and stream asks every second, and the answer changes only with an
# alarm, an acknowledgement or a closure.
_reads: WeakKeyDictionary[StationStore, tuple[tuple, dict]] = WeakKeyDictionary()
MAX_CACHED = 64  # questions (filters) kept per store


def _cached(store: StationStore, question: tuple, read: Callable[[], T]) -> T:
    version = store.alarm_version()
    seen, answers_ = _reads.get(store, ((), {}))
    if seen != version:
        answers_ = {}
        _reads[store] = (version, answers_)
    if question not in answers_:
        if len(answers_) >= MAX_CACHED:
            answers_.clear()
        answers_[question] = read()
    return answers_[question]


def closed_by_doors(store: StationStore, limit: int = 200) -> list[Alarm]:
    """The alarms their door closed with a state event, and those state events, newest first."""
    return [alarm_from_row(s, d, q, ts, t, p, ep, closed_by=by, closed_at=at)
            for s, d, q, ts, t, p, ep, by, at in store.closed_alarms(limit)]


def alarm_from_row(site, door, seq, ts, type_, payload, epoch, **extra) -> Alarm:
    """An alarm from the store's row: its event as the page reads it, whom it names, what it says."""
    stored = queries.parse_payload(payload)
    return Alarm(site, door, seq, shown.text(ts) or "", shown.text(type_) or "", shown.event(stored), epoch,
                 people=named_people(stored), summary=describe(stored), **extra)


def named_people(stored: dict) -> list[dict]:
    """The people an alarm names (an overstay's ``detail.persons``, or its ``person``): person_id and
    name as text, whatever the door wrote."""
    detail = stored.get("detail") if isinstance(stored.get("detail"), dict) else {}
    people = detail.get("persons")
    if not isinstance(people, list):
        people = [stored["person"]] if isinstance(stored.get("person"), dict) else []
    out = []
    for p in people[:shown.MAX_PEOPLE]:
        if isinstance(p, dict):
            out.append({k: shown.text(p.get(k), 80) or "" for k in ("person_id", "name", "role")})
    return out


def describe(stored: dict) -> str:
    """What an alarm says, for a person: who, which device, its state, and the figures that matter
    (hashes and the like left out)."""
    if "unreadable" in stored:
        return f"? {shown.text(stored['unreadable'])}"
    detail = stored.get("detail") if isinstance(stored.get("detail"), dict) else {}
    type_ = stored.get("type")
    parts = []
    people = named_people(stored)
    if people:
        names = ", ".join(f'{p["person_id"]} {p["name"]}'.strip() or shown.UNKNOWN for p in people)
        parts.append(("滞留人员 Still inside: " if type_ == "overstay" else "") + names)
    device = detail.get("device")
    if type_ == "hardware_fault":
        state = {"fault": "故障 fault", "recovered": "已恢复 recovered"}.get(detail.get("state"), shown.UNKNOWN)
        fault = detail.get("fault") or detail.get("while")
        parts.append(f"{_word(device)}: {state}" + (f" ({_word(fault)})" if fault else ""))
    elif type_ == "tamper":
        state = {True: "被打开 opened", False: "已复位 closed again"}.get(detail.get("active"), shown.UNKNOWN)
        parts.append(f"{_word(device)}: {state}")
        if device == "event_log":
            parts.append(f'日志应到 expected #{_word(detail.get("expected_seq"))}, '
                         f'实到 found #{_word(detail.get("found_seq"))}')
    elif type_ == "door_held_open":
        if detail.get("closed") is True:
            parts.append(f'已关门 closed after {_word(detail.get("open_s"))} s')
        elif "limit_s" in detail:
            parts.append(f'超过 over {_word(detail.get("limit_s"))} s')
    elif type_ == "link_down":
        parts.append(f'自 since {_word(detail.get("down_since"))}')
    elif type_ == "link_up":
        parts.append(f'中断 down {_word(detail.get("outage_s"))} s')
    elif type_ == "clock_drift":
        parts.append(f'偏差 offset {_word(detail.get("offset_s"))} s')
    else:
        parts.extend(f"{_word(k)}={_word(v)}" for k, v in list(detail.items())[:shown.MAX_FIELD_KEYS]
                     if k not in ("persons", "count") and not str(k).endswith("hash")
                     and isinstance(v, (str, int, float, bool)))
    return "; ".join(p for p in parts if p)


def _word(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return shown.UNKNOWN if value is None else str(value).lower()
    if isinstance(value, (int, float)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return shown.text(value, 80) if isinstance(value, str) else shown.UNKNOWN


def alarms(store: StationStore, *, acknowledged: bool, limit: int = 500) -> list[Alarm]:
    """Open alarms (oldest first) or acknowledged ones (newest acknowledgement first)."""
    rows = store.alarms(acknowledged, limit)
    return [Alarm(s, d, q, shown.text(ts) or "", shown.text(t) or "", shown.event(queries.parse_payload(p)), ep,
                  by, at, masking.mask_text(c) if isinstance(c, str) else c)
            for s, d, q, ts, t, p, ep, by, at, c in rows]
