"""The search the register, the live list and ``/api/events`` share: their query parameters, and
pages of the archive read newest first with a keyset cursor.

Parameters (DESIGN.md "The control room"): ``from``/``to`` (dates in the site's zone, inclusive;
``date`` sets both, as the register's first contract had it; the alarm queue without them holds
every day), ``site``, ``door``, ``type`` (an
event type, or a category ``access``/``alarm``/``system`` for all of its types), ``q`` (any part
of the person's id, name or organisation, case-insensitive), ``person`` (exactly this person id)
and ``before`` (the id of the oldest row already shown: the next page holds the events just older
than it, by time and then by received order, so a page never skips nor repeats a row however many
events share one second).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from firmware_py.core.events import TYPES
from firmware_py.core.register import period
from firmware_py.station.archive import masking
from firmware_py.station.archive.store import EventSearch, StationStore
from firmware_py.station.web import shown, times
from firmware_py.station.web.guard import Refused, parse_date
from firmware_py.station.web.queries import StreamRow, parse_payload

MAX_DAYS = 366
MAX_TEXT = 64  # characters of site, door, q and person
MAX_EXPORT = 100_000  # rows of one CSV or printout
TYPE_NAME = re.compile(r"[a-z][a-z_]{0,39}")
FIELDS = ("from", "to", "site", "door", "type", "q", "person")


@dataclass(frozen=True)
class Filters:
    first: date
    last: date
    site: str = ""
    door: str = ""
    type: str = ""
    q: str = ""
    person: str = ""
    before: int | None = None
    dated: bool = True  # False: no dates were asked for and none narrow the search (the alarm queue)

    def params(self) -> dict[str, str]:
        """The filters as query parameters (without the cursor), empty ones left out."""
        values = {"from": self.first.isoformat() if self.dated else "", "to": self.last.isoformat() if self.dated
                  else "", "site": self.site, "door": self.door, "type": self.type, "q": self.q, "person": self.person}
        return {k: v for k, v in values.items() if v}

    @property
    def narrowed(self) -> bool:
        """Whether anything but the dates narrows the search (or a page other than the newest is asked)."""
        return bool(self.site or self.door or self.type or self.q or self.person or self.before)

    def search(self, tz: ZoneInfo, within: tuple[str, ...] = ()) -> EventSearch:
        """The archive's search of these filters; ``within``: only these types (the register's)."""
        start, end = period(self.first, self.last, tz) if self.dated else (None, None)
        types = TYPES.get(self.type, (self.type,) if self.type else ())
        if within:
            types = (tuple(t for t in types if t in within) or ("",)) if types else within  # "": no such type
        return EventSearch(start, end, self.site or None, self.door or None, tuple(types),
                           self.q.lower() or None, self.person or None)


def parse(query, today: date, *, first_default: date | None = None, dates_optional: bool = False) -> Filters:
    """The filters of a request's query parameters (``Refused(400)`` naming what is wrong);
    ``dates_optional``: without ``from``, ``to`` or ``date`` every day is searched (the alarm queue),
    otherwise today."""
    get = query.get
    dated = not dates_optional or any(get(k) for k in ("from", "to", "date"))
    if get("date") and not (get("from") or get("to")):
        first = last = parse_date(get("date"), today, "date")
    else:
        first = parse_date(get("from"), first_default or today, "from")
        last = parse_date(get("to"), first if get("from") else today, "to")
    if last < first:
        raise Refused(400, f"to={last} is before from={first}")
    if (last - first).days >= MAX_DAYS:
        raise Refused(400, f"ask for at most {MAX_DAYS} days at once")
    texts = {}
    for name in ("site", "door", "q", "person"):
        value = (get(name) or "").strip()
        if len(value) > MAX_TEXT:
            raise Refused(400, f"{name} is {len(value)} characters long; at most {MAX_TEXT}")
        if any(ord(c) < 32 or 0x7f <= ord(c) < 0xa0 for c in value):
            raise Refused(400, f"{name} holds a control character")
        texts[name] = value
    kind = (get("type") or "").strip()
    if kind and not TYPE_NAME.fullmatch(kind):
        raise Refused(400, f"type={kind[:40]!r} is not an event type (e.g. access_denied) or a category")
    return Filters(first, last, texts["site"], texts["door"], kind, texts["q"], texts["person"],
                   _cursor(get("before")), dated)


CHART_FIELDS = ("ts", "type", "direction", "reason")


def chart_events(store: StationStore, filters: Filters, tz: ZoneInfo, within: tuple[str, ...] = (),
                 cap: int = MAX_EXPORT) -> list[dict]:
    """The fields the chart of the day reads (``ts``, ``type``, ``direction``, ``reason``, as
    :mod:`.shown` gives them, masked) of every matching event: the rest of each payload is not
    read, so a busy day's chart costs a fraction of its rows."""
    out: list[dict] = []
    before = None
    search = filters.search(tz, within)
    while len(out) < cap:
        want = min(5000, cap - len(out))
        found = store.search_events(search, before, want)
        out += [_chart_fields(p) for _, _, _, p, _ in found]
        if len(found) < want:
            break
        before = found[-1][0]
    return out


def _chart_fields(payload: bytes) -> dict:
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return dict.fromkeys(CHART_FIELDS)
    if not isinstance(value, dict):
        return dict.fromkeys(CHART_FIELDS)
    return {k: shown.text(masking.mask_text(v)) if isinstance(v, str) else shown.text(v) for k, v in
            ((k, value.get(k)) for k in CHART_FIELDS)}


def matches(filters: Filters, site: str, door: str, event: dict, tz: ZoneInfo) -> bool:
    """Whether one event (as stored or as the page reads it) passes the filters but the cursor: for
    lists the page already holds in memory, such as the alarm queue, searched as the archive is."""
    search = filters.search(tz)
    at = times.parse(event.get("ts"), tz)
    if at is None or (search.start is not None and at < search.start) or (
            search.end is not None and at >= search.end):
        return False
    if (search.site and site != search.site) or (search.door and door != search.door):
        return False
    if search.types and event.get("type") not in search.types:
        return False
    person = event.get("person") if isinstance(event.get("person"), dict) else {}
    if search.person_id and person.get("person_id") != search.person_id:
        return False
    if search.text:
        fields = (person.get(k) for k in ("person_id", "name", "organisation"))
        return any(isinstance(v, str) and search.text in v.lower() for v in fields)
    return True


def _cursor(text: str | None) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 1 << 63):
        raise Refused(400, f"before={text[:30]!r} is not an event id (the data-id of a row)")
    return int(text)


@dataclass(frozen=True)
class Page:
    rows: list[StreamRow]  # newest first
    before: int | None  # the cursor of the next (older) page; None: this page reaches the first event


def page(store: StationStore, filters: Filters, tz: ZoneInfo, size: int, within: tuple[str, ...] = ()) -> Page:
    """One page of at most ``size`` matching events, newest first, older than ``filters.before``."""
    found = store.search_events(filters.search(tz, within), filters.before, size + 1)
    rows = [StreamRow(i, s, d, parse_payload(p), ep) for i, s, d, p, ep in found[:size]]
    return Page(rows, rows[-1].id if len(found) > size else None)


def every(store: StationStore, filters: Filters, tz: ZoneInfo, within: tuple[str, ...] = (),
          cap: int = MAX_EXPORT) -> list[StreamRow]:
    """Every matching event of the filters' days (at most ``cap``, the newest), oldest first; the
    cursor is not read (an export holds the whole period)."""
    out: list[StreamRow] = []
    before = None
    search = filters.search(tz, within)
    while len(out) < cap:
        want = min(5000, cap - len(out))
        found = store.search_events(search, before, want)
        out += [StreamRow(i, s, d, parse_payload(p), ep) for i, s, d, p, ep in found]
        if len(found) < want:
            break
        before = found[-1][0]
    out.reverse()
    return out
