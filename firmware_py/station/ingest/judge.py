"""Every message from the broker judged once, where it enters the station (DESIGN.md "The supervision station").

One pure function, :func:`judge`, decides for both archives whether a message is what a door of
this version publishes; it knows neither SQL nor paho. The answer is either an :class:`Accepted`
message (the topic's parts and the parsed, checked value) or a :class:`Rejected` one with a reason
a technician can act on (``seq 9223372036854775808 is outside 1..2^53``). The ingest stores a
rejected message in ``ingest_rejects`` and acknowledges it: a data error is never an outage.

What is checked:

- the topic: ``{prefix}/{site}/{door}/events/{category}/{type}``, ``…/status``, ``…/occupancy`` or
  ``…/cmd/result``; site and door printable (no control, format or separator character but the space);
- the payload: at most :data:`MAX_PAYLOAD` bytes, UTF-8, strict JSON (no NaN or Infinity, no
  number too large for a float, no key twice in one object, no lone surrogate);
- an event: never retained; an object with exactly the fields of DESIGN.md "Events", of their
  types; ``seq`` an int in 1..2^53; ``ts`` ISO 8601 with its offset, between :data:`EARLIEST` and
  :data:`LATEST` (what both archives can store and a door's clock can show, its fallback to 1970
  included); category, type and denial reason in the vocabulary, the type of its category;
  identifiers (site, door, category, type, person id and role, credential kind and masked form)
  printable; ``hash`` and ``prev_hash`` 64 lowercase hex digits; nothing shaped like a full
  resident ID number (the door's own guard, :data:`~firmware_py.core.idnumber.FULL_ID_NUMBER`);
  the topic's site, door, category and type those of the body. A hash that is not the event's
  SHA-256 is *not* a reason to refuse: that is evidence, for the chain check to report;
- a status: an object whose known fields have their types (``online`` a bool, ``door`` open or
  closed, ``lock`` locked or released, ``faults`` a list of names …). A status with a field of the
  wrong type is refused as a whole, not cut down to the valid fields: the page keeps the door's
  previous status and the reject says what was wrong (a door of this version never sends one);
- an occupancy: ``{"count": int, "inside": [{"person_id", "name", "role", "since"}, …]}``;
- a command result: ``{"id": str, "ok": bool, "error": str?}``.

An empty status or occupancy is the door's retained message being cleared: accepted, value None.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from firmware_py.core.event_line import printable
from firmware_py.core.events import DIRECTIONS, REASONS, TYPES, canonical, redact_id_numbers
from firmware_py.core.idnumber import FULL_ID_NUMBER

MAX_PAYLOAD = 64 * 1024  # an event is a few hundred bytes
MAX_SEQ = 2 ** 53  # what every JSON reader holds exactly
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # a door's clock before it was set
LATEST = datetime(2200, 1, 1, tzinfo=UTC)  # exclusive
MAX_IDENTIFIER = 200
KEPT_PAYLOAD = MAX_PAYLOAD + 1024  # a refused payload is kept up to this many bytes

# DESIGN.md's vocabulary: what a door of this version stores (core.events), and the names DESIGN.md
# gives the two features not built yet (docs/contracts.md), which a newer door may publish.
EVENT_TYPES: dict[str, frozenset[str]] = {
    "access": frozenset(TYPES["access"]),
    "alarm": frozenset((*TYPES["alarm"], "duress")),
    "system": frozenset((*TYPES["system"], "roster_applied", "roster_rejected")),
}
DENIAL_REASONS = frozenset((*REASONS, "pin_incorrect", "pin_timeout", "door_busy"))
EVENT_FIELDS = frozenset(("seq", "ts", "site", "door", "category", "type", "direction", "person", "credential",
                          "reason", "detail", "prev_hash", "hash"))
REQUIRED_FIELDS = ("seq", "ts", "site", "door", "category", "type", "prev_hash", "hash")
HEX64 = re.compile(r"[0-9a-f]{64}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


@dataclass(frozen=True)
class Topic:
    """A topic under the prefix: ``kind`` is ``event``, ``status``, ``occupancy``, ``result`` or ``""``
    (not one the station reads); the parts the topic names, ``""`` where it names none."""

    kind: str
    site: str = ""
    door: str = ""
    category: str = ""
    type: str = ""


@dataclass(frozen=True)
class Accepted:
    """A message that passed: ``value`` is the parsed event, status, occupancy or result (None: a
    retained status or occupancy being cleared)."""

    kind: str
    site: str
    door: str
    topic: str
    value: Any


@dataclass(frozen=True)
class Rejected:
    """A message refused, with why; ``site``/``door`` from the topic (``""`` when it names none), and
    like the topic with any control character escaped (``\\x00``), so that every archive stores them."""

    site: str
    door: str
    topic: str
    reason: str


class _Refusal(ValueError):
    pass


def parse_topic(prefix: str, topic: str) -> Topic:
    """The kind and parts of ``topic`` (no check of the names beyond the layout)."""
    if not topic.startswith(prefix + "/"):
        return Topic("")
    parts = topic[len(prefix) + 1:].split("/")
    if len(parts) < 3:
        return Topic("")
    site, door, rest = parts[0], parts[1], parts[2:]
    if rest[0] == "events":
        return Topic("event", site, door, *rest[1:3]) if len(rest) == 3 else Topic("", site, door)
    if rest in (["status"], ["occupancy"]):
        return Topic(rest[0], site, door)
    if rest == ["cmd", "result"]:
        return Topic("result", site, door)
    return Topic("", site, door)


def judge(prefix: str, topic: str, payload: bytes, *, retained: bool = False) -> Accepted | Rejected:
    """Judge one message from the broker (see the module docstring)."""
    where = parse_topic(prefix, topic)
    try:
        if not where.kind:
            raise _Refusal(f"topic {_quote(topic)} is not a door's events, status, occupancy or command result")
        _identifier("the topic's site", where.site)
        _identifier("the topic's door", where.door)
        if where.kind == "event" and retained:
            raise _Refusal("an event arrived retained: doors never retain events (a stale or forged copy kept "
                           "by the broker)")
        if len(payload) > MAX_PAYLOAD:
            raise _Refusal(f"{len(payload)} bytes, over the {MAX_PAYLOAD}-byte limit of a message")
        if not payload and where.kind in ("status", "occupancy"):
            return Accepted(where.kind, where.site, where.door, topic, None)
        value = parse_strict(payload)
        if where.kind == "event":
            check_event(value, where)
        elif where.kind == "status":
            check_status(value)
        elif where.kind == "occupancy":
            check_occupancy(value)
        else:
            check_result(value)
    except _Refusal as refusal:  # the topic's names as text any archive stores (no NUL, no control character)
        return Rejected(printable(where.site), printable(where.door), printable(topic), str(refusal))
    return Accepted(where.kind, where.site, where.door, topic, value)


# ---------------------------------------------------------------------- strict JSON

def parse_strict(payload: bytes) -> Any:
    """The JSON document in ``payload``, or :class:`ValueError` naming what is not strict JSON."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refusal(f"not UTF-8 (byte {exc.start}: {payload[exc.start:exc.start + 1]!r})") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant,
                           parse_float=_finite_float)
    except _Refusal:
        raise
    except RecursionError:
        raise _Refusal("not JSON an archive can read: nested too deeply") from None
    except ValueError as exc:
        raise _Refusal(f"not JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(text):  # only an escape can make one: most payloads need no walk
        _utf8_strings(value)
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _Refusal(f"key {_quote(key)} appears twice in one object")
        out[key] = value
    return out


def _no_constant(name: str) -> float:
    raise _Refusal(f"{name} is not a number strict JSON allows")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Refusal(f"the number {_quote(text)} is too large for a float")
    return number


def _utf8_strings(value: Any) -> None:
    """Refuse a lone surrogate (JSON's ``"\\ud800"``), which UTF-8 cannot encode, in any string or key."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _Refusal(f"the text {_quote(item)} holds a lone surrogate (not UTF-8)") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


# ---------------------------------------------------------------------- events

def check_event(event: Any, where: Topic) -> None:
    """Refuse (:class:`ValueError`) an event that is not DESIGN.md's, or names another door than its topic."""
    if not isinstance(event, dict):
        raise _Refusal(f"an event is a JSON object, not {_kind(event)}")
    missing = [f for f in REQUIRED_FIELDS if f not in event]
    if missing:
        raise _Refusal(f"the event has no {', '.join(missing)}")
    unknown = sorted(set(event) - EVENT_FIELDS)
    if unknown:
        raise _Refusal(f"field {_quote(unknown[0])} is not in the event vocabulary")
    seq = event["seq"]
    if not _is_int(seq):
        raise _Refusal(f"seq {_quote(seq)} is not an integer")
    if not 1 <= seq <= MAX_SEQ:
        raise _Refusal(f"seq {seq} is outside 1..2^53")
    check_ts(event["ts"])
    for name in ("site", "door", "category", "type"):
        _identifier(name, event[name])
    category, type_ = event["category"], event["type"]
    if category not in EVENT_TYPES:
        raise _Refusal(f"category {_quote(category)} is not access, alarm or system")
    if type_ not in EVENT_TYPES[category]:
        known = next((c for c, types in EVENT_TYPES.items() if type_ in types), None)
        raise _Refusal(f"type {_quote(type_)} belongs to category {known}, not {category}" if known
                       else f"type {_quote(type_)} is not in the event vocabulary")
    for name in ("hash", "prev_hash"):
        if not isinstance(event[name], str) or not HEX64.fullmatch(event[name]):
            raise _Refusal(f"{name} {_quote(event[name])} is not 64 lowercase hex digits")
    direction = event.get("direction")
    if direction is not None and not _one_of(direction, DIRECTIONS):
        raise _Refusal(f"direction {_quote(direction)} is not in or out")
    reason = event.get("reason")
    if reason is not None and not _one_of(reason, DENIAL_REASONS):
        raise _Refusal(f"reason {_quote(reason)} is not a denial reason of the vocabulary")
    _person(event.get("person"))
    _credential(event.get("credential"))
    detail = event.get("detail", {})
    if not isinstance(detail, dict):
        raise _Refusal(f"detail is {_kind(detail)}, not a JSON object")
    wrong = [f"{name} {_quote(event[name])}" for name, mine in (("site", where.site), ("door", where.door),
                                                                 ("category", where.category), ("type", where.type))
             if event[name] != mine]
    if wrong:
        raise _Refusal(f"the event on {where.site}/{where.door}'s topic names {', '.join(wrong)}")
    if FULL_ID_NUMBER.search(canonical(event)):
        raise _Refusal("the event carries what looks like a full resident ID number (doors publish masked "
                       "numbers only)")


def check_ts(ts: Any) -> datetime:
    """``ts`` as an aware datetime, or :class:`ValueError`: ISO 8601 with offset, within the archives' years."""
    if not isinstance(ts, str):
        raise _Refusal(f"ts {_quote(ts)} is not an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(ts)
    except ValueError:
        raise _Refusal(f"ts {_quote(ts)} is not an ISO 8601 time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _Refusal(f"ts {_quote(ts)} has no UTC offset")
    try:
        inside = EARLIEST <= parsed < LATEST
    except OverflowError:
        inside = False
    if not inside:
        raise _Refusal(f"ts {_quote(ts)} is outside the years {EARLIEST.year}..{LATEST.year - 1} the archives keep")
    return parsed


def _person(person: Any) -> None:
    if person is None:
        return
    if not isinstance(person, dict):
        raise _Refusal(f"person is {_kind(person)}, not a JSON object")
    _identifier("person_id", person.get("person_id"))
    if "role" in person:
        _identifier("the person's role", person["role"])
    if not isinstance(person.get("name", ""), str):
        raise _Refusal(f"the person's name {_quote(person['name'])} is not text")


def _credential(credential: Any) -> None:
    if credential is None:
        return
    if not isinstance(credential, dict):
        raise _Refusal(f"credential is {_kind(credential)}, not a JSON object")
    _identifier("the credential's kind", credential.get("kind"))
    if "masked" in credential:
        _identifier("the credential's masked form", credential["masked"])


# ---------------------------------------------------------------------- status, occupancy, results

_STATUS_CHOICES = {"door": ("open", "closed"), "lock": ("locked", "released")}
_STATUS_BOOLS = ("online", "lockdown")
_STATUS_COUNTS = ("occupancy", "queued")


def check_status(status: Any) -> None:
    """Refuse a status that is not an object or has a known field of the wrong type (other fields are kept)."""
    if not isinstance(status, dict):
        raise _Refusal(f"a status is a JSON object, not {_kind(status)}")
    for name in _STATUS_BOOLS:
        if name in status and not isinstance(status[name], bool):
            raise _Refusal(f"status field {name}: {_quote(status[name])} is not true or false")
    for name, choices in _STATUS_CHOICES.items():
        if name in status and not _one_of(status[name], choices):
            raise _Refusal(f"status field {name}: {_quote(status[name])} is not {' or '.join(choices)}")
    for name in _STATUS_COUNTS:
        if name in status and not (_is_int(status[name]) and 0 <= status[name] <= MAX_SEQ):
            raise _Refusal(f"status field {name}: {_quote(status[name])} is not a count")
    if "last_seq" in status and not (_is_int(status["last_seq"]) and 0 <= status["last_seq"] <= MAX_SEQ):
        raise _Refusal(f"status field last_seq: {_quote(status['last_seq'])} is outside 0..2^53")
    if status.get("last_hash") is not None and not (isinstance(status["last_hash"], str)
                                                    and HEX64.fullmatch(status["last_hash"])):
        raise _Refusal(f"status field last_hash: {_quote(status['last_hash'])} is not 64 lowercase hex digits")
    for name in ("version", "state"):
        if name in status:
            _identifier(f"status field {name}", status[name])
    if "faults" in status:
        faults = status["faults"]
        if not isinstance(faults, list):
            raise _Refusal(f"status field faults: {_quote(faults)} is not a list of device names")
        for fault in faults:
            _identifier("status field faults", fault)


def check_occupancy(occupancy: Any) -> None:
    if not isinstance(occupancy, dict):
        raise _Refusal(f"an occupancy is a JSON object, not {_kind(occupancy)}")
    if "count" in occupancy and not (_is_int(occupancy["count"]) and occupancy["count"] >= 0):
        raise _Refusal(f"occupancy count {_quote(occupancy['count'])} is not a count")
    inside = occupancy.get("inside", [])
    if not isinstance(inside, list):
        raise _Refusal(f"occupancy inside: {_quote(inside)} is not a list of people")
    for person in inside:
        if not isinstance(person, dict):
            raise _Refusal(f"occupancy inside: {_quote(person)} is not a person")
        _person(person)
        if not isinstance(person.get("since", ""), str):
            raise _Refusal(f"occupancy since {_quote(person['since'])} is not a time")


def check_result(result: Any) -> None:
    if not isinstance(result, dict):
        raise _Refusal(f"a command result is a JSON object, not {_kind(result)}")
    if not isinstance(result.get("id"), str):
        raise _Refusal(f"command result id {_quote(result.get('id'))} is not text")
    if not isinstance(result.get("ok"), bool):
        raise _Refusal(f"command result ok {_quote(result.get('ok'))} is not true or false")
    if result.get("error") is not None and not isinstance(result["error"], str):
        raise _Refusal(f"command result error {_quote(result['error'])} is not text")


# ---------------------------------------------------------------------- helpers

def kept_payload(payload: bytes) -> bytes:
    """What ``ingest_rejects`` keeps of a refused payload: anything shaped like an ID number masked
    first (the roster's one mask), then cut to :data:`KEPT_PAYLOAD` bytes; otherwise the bytes as received."""
    text = payload.decode("utf-8", "surrogateescape")
    masked = redact_id_numbers(text)
    if masked != text:
        payload = masked.encode("utf-8", "surrogateescape")
    return payload[:KEPT_PAYLOAD]


def _identifier(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise _Refusal(f"{name} {_quote(value)} is not a name")
    if len(value) > MAX_IDENTIFIER:
        raise _Refusal(f"{name} {_quote(value)} is longer than {MAX_IDENTIFIER} characters")
    if value.isprintable():  # no control, format, surrogate, unassigned or separator character but the space
        return
    bad = next(ch for ch in value if not ch.isprintable())
    what = "a NUL" if bad == "\0" else f"the {_CATEGORY_NAMES.get(unicodedata.category(bad), 'unprintable')} " \
                                         f"character U+{ord(bad):04X}"
    raise _Refusal(f"{name} {_quote(value)} holds {what}")


def _one_of(value: Any, choices) -> bool:
    """``value`` is one of the names ``choices`` (any JSON value may be asked: a list is no name)."""
    return isinstance(value, str) and value in choices


_CATEGORY_NAMES = {"Cc": "control", "Cf": "format", "Cs": "surrogate", "Co": "private-use", "Cn": "unassigned",
                   "Zl": "line separator", "Zp": "paragraph separator", "Zs": "space"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true or false", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _quote(value: Any, limit: int = 60) -> str:
    """``value`` for a reason: repr (control characters escaped), ID numbers masked, cut to ``limit``."""
    text = redact_id_numbers(repr(value) if not _is_int(value) else str(value))
    return text if len(text) <= limit else text[:limit] + "…"
