"""The signed roster bundle (DESIGN.md "Roster bundles"): its format, signing and checking, for both sides.

The station makes a bundle from a checked roster CSV (:func:`build_payload`, :func:`sign_bundle`);
a door checks every message it gets (:func:`read_message`), the manifest against itself
(:func:`check_manifest`), puts the chunks together (:class:`Assembler`) and reads the rows
(:func:`read_payload`, :func:`check_row`). Every refusal is a :class:`BundleError` with one word
of reason for the ``roster_rejected`` event and a message that says what exactly is wrong.

The payload (what is signed, chunk by chunk) is zlib-compressed UTF-8 JSON lines: a header line
``{"format", "site", "version", "made_at", "valid_until", "key_id", "columns", "count",
"schedules", "calendar"}`` and one JSON array per person in the header's ``columns`` order:
:data:`COLUMNS`, or :data:`COLUMNS` and :data:`PIN_COLUMNS` when the station carries PINs (their
slow salted hashes, :func:`~firmware_py.core.pin.hash_pin`, or null; never a PIN). Rows carry the
masked ID number and its keyed hash under the site roster key
(:func:`~firmware_py.core.idnumber.id_hash`), never the number.

Hours from the centre: ``schedules`` maps each schedule group to its weekly windows and
``calendar`` holds ``holidays``, ``working_days`` (adjusted working days) and
``adjusted_day_schedule``, as a door's ``[calendar]`` does. A bundle with ``calendar`` sets the
door's hours (:func:`bundle_calendar`); one without it (an older station, or one that leaves the
hours to each door) leaves the door's configured hours in force, its ``schedules`` only naming
the groups rows may use. It travels as one or more chunks of at most ``chunk_bytes`` under one manifest::

    {prefix}/{site}/roster           MAGIC "M" signature manifest-json
    {prefix}/{site}/roster/chunks/N  MAGIC "C" signature chunk-header-json "\\n" payload bytes

The Ed25519 signature (64 bytes; keys in :mod:`.roster_keys`) covers ``MAGIC + kind + body``; the
manifest also lists each chunk's SHA-256 and the whole payload's, so a chunk of another bundle
cannot be slipped in.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time

from firmware_py.config.schema import WEEKDAYS, CalendarConfig, TimeWindow
from firmware_py.core.people import EMPLOYER_TYPES, ROLES
from firmware_py.core.pin import PinError, check_pin_hash
from firmware_py.errors import BundleError
from firmware_py.storage.roster_csv import (
    ID_NUMBER_IN_TEXT,
    MAX_NAME,
    MAX_ORGANISATION,
    MAX_TRAINING_HOURS,
    PERSON_ID,
    control_character,
    normalise_uid,
)

MAGIC = b"ACRB1"
MANIFEST, CHUNK = b"M", b"C"
SIGNATURE_SIZE = 64
FORMAT = 1
COLUMNS = ("person_id", "name", "id_masked", "id_hash", "badge_uids", "role", "organisation", "employer_type",
           "review_date", "training_hours", "commitment_date", "valid_from", "valid_until", "schedule_group")
PIN_COLUMNS = ("pin_hash", "duress_pin_hash")  # after COLUMNS when the bundle carries PINs (hashes only)
REASONS = ("bad_signature", "old_version", "other_site", "other_key", "expired", "malformed", "too_large")
# The venue broker takes packets up to 4 MiB + 64 KiB (deploy/mosquitto/mosquitto.conf max_packet_size).
MAX_MESSAGE = 4 * 1024 * 1024
DEFAULT_CHUNK_BYTES = 1024 * 1024
MAX_BUNDLE_BYTES = 256 * 1024 * 1024  # compressed, all chunks together: what a door holds while assembling
MAX_CHUNKS = 4096
MAX_ROWS = 5_000_000
MAX_LINE = 64 * 1024  # one decompressed row
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MASKED = re.compile(r"\d{6}\*{8}\d{3}[\dX]")
_WINDOW = re.compile(r"\d{2}:\d{2}-\d{2}:\d{2}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SITE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_GROUP = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_GROUPS = 256
MAX_CALENDAR_DATES = 4096  # holidays and adjusted working days together (ten years is under 400)


# --------------------------------------------------------------------------- making (the station)


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def build_payload(header: dict, rows: Iterable[list], *, pins: bool = False) -> bytes:
    """The compressed JSON lines: ``header`` (``count`` is set here) and one array per row
    (with :data:`PIN_COLUMNS` after :data:`COLUMNS` when ``pins``)."""
    rows = list(rows)
    columns = [*COLUMNS, *PIN_COLUMNS] if pins else list(COLUMNS)
    comp = zlib.compressobj(9)
    parts = [comp.compress(canonical({**header, "format": FORMAT, "columns": columns, "count": len(rows)}))]
    for row in rows:
        parts.append(comp.compress(b"\n" + canonical(row)))
    parts.append(comp.flush())
    return b"".join(parts)


def _signed(private_key, kind: bytes, body: bytes) -> bytes:
    return MAGIC + kind + private_key.sign(MAGIC + kind + body) + body


def sign_bundle(private_key, header: dict, payload: bytes, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                ) -> tuple[bytes, list[bytes]]:
    """The signed manifest and chunks of ``payload`` (``header`` gives site, version, times, key id, count)."""
    if not 1024 <= chunk_bytes <= MAX_MESSAGE - 4096:
        raise ValueError(f"chunk_bytes {chunk_bytes} is not from 1024 to {MAX_MESSAGE - 4096}")
    if len(payload) > MAX_BUNDLE_BYTES:
        raise BundleError("too_large", f"the bundle is {len(payload)} bytes compressed; a door takes at most "
                                       f"{MAX_BUNDLE_BYTES}")
    pieces = [payload[i:i + chunk_bytes] for i in range(0, len(payload), chunk_bytes)] or [b""]
    common = {"site": header["site"], "version": header["version"]}
    chunks = [_signed(private_key, CHUNK, canonical({**common, "index": i, "count": len(pieces)}) + b"\n" + piece)
              for i, piece in enumerate(pieces)]
    manifest = {**common, "format": FORMAT, "made_at": header["made_at"], "valid_until": header["valid_until"],
                "key_id": header["key_id"], "rows": header["count"], "size": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
                "chunks": [hashlib.sha256(p).hexdigest() for p in pieces]}
    return _signed(private_key, MANIFEST, canonical(manifest)), chunks


# --------------------------------------------------------------------------- checking (the door)


@dataclass(frozen=True)
class Manifest:
    site: str
    version: int
    made_at: datetime
    valid_until: datetime
    key_id: str
    rows: int
    size: int
    sha256: str
    chunks: tuple[str, ...]


@dataclass(frozen=True)
class Chunk:
    site: str
    version: int
    index: int
    count: int
    data: bytes


def _malformed(message: str) -> BundleError:
    return BundleError("malformed", message)


def read_message(data: bytes, public_key) -> Manifest | Chunk:
    """One message from a roster topic, its signature checked; :class:`BundleError` otherwise."""
    from cryptography.exceptions import InvalidSignature

    if len(data) > MAX_MESSAGE + 4096:
        raise BundleError("too_large", f"a roster message of {len(data)} bytes; at most {MAX_MESSAGE}")
    head = len(MAGIC) + 1 + SIGNATURE_SIZE
    if len(data) < head or not data.startswith(MAGIC) or data[len(MAGIC):len(MAGIC) + 1] not in (MANIFEST, CHUNK):
        raise _malformed(f"not a roster bundle message ({len(data)} bytes, does not start with {MAGIC.decode()})")
    kind, signature, body = data[len(MAGIC):len(MAGIC) + 1], data[len(MAGIC) + 1:head], data[head:]
    try:
        public_key.verify(signature, MAGIC + kind + body)
    except InvalidSignature:
        raise BundleError("bad_signature", f"the {'manifest' if kind == MANIFEST else 'chunk'}'s signature does not "
                                           "verify with the station's public key (tampered, or signed by another "
                                           "key)") from None
    if kind == MANIFEST:
        return _manifest(_json(body, "manifest"))
    header, sep, piece = body.partition(b"\n")
    if not sep:
        raise _malformed("a chunk without its header line")
    h = _json(header, "chunk header")
    site, version, index, count = (h.get(k) for k in ("site", "version", "index", "count"))
    if not (isinstance(site, str) and _int(version) and _int(index) and _int(count) and 0 <= index < count):
        raise _malformed("a chunk header needs site, version, index and count (index below count)")
    return Chunk(site, version, index, count, piece)


def _int(value, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value < 2 ** 53


def _json(body: bytes, what: str) -> dict:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _malformed(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise _malformed(f"the {what} is not a JSON object")
    return value


def _time(value, field: str) -> datetime:
    try:
        t = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise _malformed(f"manifest {field} {str(value)[:40]!r} is not an ISO 8601 time") from None
    if t.tzinfo is None:
        raise _malformed(f"manifest {field} has no UTC offset")
    return t


def _manifest(m: dict) -> Manifest:
    if m.get("format") != FORMAT:
        raise _malformed(f"manifest format {str(m.get('format'))[:20]!r}; this door reads format {FORMAT}")
    chunks = m.get("chunks")
    if not (isinstance(m.get("site"), str) and _int(m.get("version"), 1) and _int(m.get("rows"))
            and _int(m.get("size")) and isinstance(m.get("key_id"), str) and isinstance(m.get("sha256"), str)
            and isinstance(chunks, list) and all(isinstance(c, str) and _HEX64.fullmatch(c) for c in chunks)):
        raise _malformed("the manifest needs site, version (from 1), rows, size, key_id, sha256 and chunks")
    if m["size"] > MAX_BUNDLE_BYTES or len(chunks) > MAX_CHUNKS or m["rows"] > MAX_ROWS:
        raise BundleError("too_large", f"the bundle is {m['size']} bytes in {len(chunks)} chunks with {m['rows']} "
                                       f"rows; a door takes at most {MAX_BUNDLE_BYTES} bytes, {MAX_CHUNKS} chunks, "
                                       f"{MAX_ROWS} rows")
    if not chunks:
        raise _malformed("the manifest lists no chunks")
    return Manifest(m["site"], m["version"], _time(m.get("made_at"), "made_at"),
                    _time(m.get("valid_until"), "valid_until"), m["key_id"], m["rows"], m["size"], m["sha256"],
                    tuple(chunks))


def check_manifest(m: Manifest, *, site: str, key: str, applied_version: int, now: datetime) -> None:
    """Is this bundle for this door, newer than what it has, still valid? :class:`BundleError` if not."""
    if m.site != site:
        raise BundleError("other_site", f"the bundle is for site {m.site[:64]!r}; this door is on site {site!r}")
    if m.key_id != key:
        raise BundleError("other_key", f"the rows are hashed under site roster key {m.key_id[:16]!r}; this door "
                                       f"has key {key!r}: provision the site's key (docs/commissioning.md)")
    if m.version <= applied_version:
        raise BundleError("old_version", f"version {m.version} is not newer than the applied version "
                                         f"{applied_version}")
    if m.valid_until <= now:
        raise BundleError("expired", f"version {m.version} was valid until {m.valid_until.isoformat()}; it is "
                                     f"{now.isoformat(timespec='seconds')}")


# A payload whole, or as the chunks it came in: never joined, so a 2,000,000-person bundle (over 100 MB)
# is held once at the door, not twice.
Payload = bytes | tuple[bytes, ...]


class Assembler:
    """Chunks and manifests of one site, kept until a manifest has all its chunks (the newest wins).

    Holds chunks of one version at a time and at most the manifest's size; chunks of an
    older version than the manifest waiting are dropped.
    """

    def __init__(self):
        self.manifest: Manifest | None = None
        self.chunks: dict[int, bytes] = {}
        self.version = 0  # the version whose chunks are kept

    def add(self, item: Manifest | Chunk) -> tuple[Manifest, Payload] | None:
        """Take a checked message; the manifest and its payload once they are complete."""
        if isinstance(item, Manifest):
            if item.version != self.version:
                self.chunks = {}
            self.manifest, self.version = item, item.version
            self.chunks = {i: c for i, c in self.chunks.items() if i < len(item.chunks)}
        else:
            if item.version < self.version:
                return None
            if item.version > self.version:
                if self.manifest is not None and self.manifest.version < item.version:
                    self.manifest = None  # a newer bundle is arriving: the older one can wait no longer
                self.version, self.chunks = item.version, {}
            if sum(len(c) for c in self.chunks.values()) + len(item.data) > MAX_BUNDLE_BYTES:
                raise BundleError("too_large", f"chunks of version {item.version} add up to more than "
                                               f"{MAX_BUNDLE_BYTES} bytes")
            self.chunks[item.index] = item.data
        return self._complete()

    def _complete(self) -> tuple[Manifest, Payload] | None:
        m = self.manifest
        if m is None or m.version != self.version or len(self.chunks) < len(m.chunks):
            return None
        pieces = [self.chunks.get(i) for i in range(len(m.chunks))]
        if any(p is None for p in pieces):
            return None
        wrong = [i for i, (p, h) in enumerate(zip(pieces, m.chunks)) if hashlib.sha256(p).hexdigest() != h]
        if wrong:  # signed by the station, but not this bundle's: stale copies still retained; wait for the right ones
            for i in wrong:
                del self.chunks[i]
            return None
        self.manifest, self.chunks, self.version = None, {}, m.version
        digest = hashlib.sha256()
        for p in pieces:
            digest.update(p)
        if sum(len(p) for p in pieces) != m.size or digest.hexdigest() != m.sha256:
            raise _malformed(f"version {m.version}: the chunks do not add up to the payload the manifest names")
        return m, tuple(pieces)


@dataclass(frozen=True)
class Header:
    version: int
    made_at: str
    valid_until: str
    count: int
    schedules: dict
    calendar: dict | None = None  # holidays, working_days, adjusted_day_schedule: the bundle sets the hours
    pins: bool = False  # the rows end with PIN_COLUMNS: the bundle sets the PINs

    @property
    def schedule_groups(self) -> tuple[str, ...] | None:
        """The groups rows may name when the bundle sets the hours (None: the door's configured groups)."""
        return tuple(self.schedules) if self.calendar is not None else None


def read_payload(manifest: Manifest, payload: Payload) -> tuple[Header, Iterator[list]]:
    """The payload's header (checked against the manifest) and an iterator over its rows.

    Decompressed as it is read, a line at a time: never the whole roster in memory.
    The iterator raises :class:`BundleError` for a row that is not a JSON array, a line too
    long, or a count that differs from the header's.
    """
    lines = _lines(payload)
    try:
        first = next(lines)
    except StopIteration:
        raise _malformed("the payload is empty") from None
    h = _json(first, "payload header")
    for key in ("site", "version", "key_id"):
        if h.get(key) != getattr(manifest, key):
            raise _malformed(f"the payload's {key} differs from the manifest's")
    pins = h.get("columns") == [*COLUMNS, *PIN_COLUMNS]
    if h.get("format") != FORMAT or not (pins or h.get("columns") == list(COLUMNS)) or h.get("count") != manifest.rows:
        raise _malformed(f"the payload header needs format {FORMAT}, the columns {', '.join(COLUMNS)} (then "
                         f"{', '.join(PIN_COLUMNS)} or nothing) and the manifest's row count")
    schedules = h.get("schedules") or {}
    _check_schedules(schedules)
    calendar = h.get("calendar")
    if calendar is not None:
        bundle_calendar(schedules, calendar)  # every window and date checked before a row is applied
    header = Header(manifest.version, manifest.made_at.isoformat(), manifest.valid_until.isoformat(),
                    manifest.rows, schedules, calendar, pins)
    width = len(COLUMNS) + (len(PIN_COLUMNS) if pins else 0)

    def rows() -> Iterator[list]:
        n = 0
        for line in lines:
            n += 1
            if n > manifest.rows:
                raise _malformed(f"the payload has more rows than the {manifest.rows} its header says")
            try:
                row = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                raise _malformed(f"row {n} is not JSON") from None
            if not isinstance(row, list) or len(row) != width:
                raise _malformed(f"row {n} is not an array of the {width} columns")
            yield row
        if n != manifest.rows:
            raise _malformed(f"the payload has {n} rows; its header says {manifest.rows}")

    return header, rows()


def _lines(payload: Payload) -> Iterator[bytes]:
    d = zlib.decompressobj()
    step = 1 << 16
    slices = (piece[pos:pos + step] for piece in ((payload,) if isinstance(payload, bytes | bytearray) else payload)
              for pos in range(0, len(piece), step))
    pending, data = b"", b""
    while not d.eof:
        if not data:
            data = next(slices, None)
            if data is None:
                raise _malformed("the payload is cut short (the compressed stream does not end)")
        try:
            pending += d.decompress(data, 4 * step)
        except zlib.error as exc:
            raise _malformed(f"the payload does not decompress: {exc}") from None
        data = d.unconsumed_tail
        *done, pending = pending.split(b"\n")
        yield from done
        if len(pending) > MAX_LINE:
            raise BundleError("too_large", f"a line of the payload is longer than {MAX_LINE} bytes")
    if d.unused_data or data or next(slices, None) is not None:
        raise _malformed("the payload has bytes after its compressed stream")
    if pending:
        yield pending


def _check_schedules(schedules) -> None:
    ok = isinstance(schedules, dict) and len(schedules) <= MAX_GROUPS and all(
        isinstance(group, str) and isinstance(week, dict) and set(week) <= set(WEEKDAYS)
        and all(isinstance(ws, list) and len(ws) <= 24 and all(isinstance(w, str) and _WINDOW.fullmatch(w)
                                                                 for w in ws)
                for ws in week.values())
        for group, week in schedules.items())
    if not ok:
        raise _malformed('schedules must map each group to weekdays and windows like {"mon": ["08:30-12:00"]}')


def _window(text: str, where: str) -> TimeWindow:
    h1, m1, h2, m2 = int(text[0:2]), int(text[3:5]), int(text[6:8]), int(text[9:11])
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise _malformed(f"schedules {where}: {text!r} has an impossible time")
    start, end = time(h1, m1), (time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2))
    if end <= start:
        raise _malformed(f"schedules {where}: {text!r} ends before it starts (windows cannot cross midnight)")
    return TimeWindow(start, end)


def _dates(values, field: str) -> frozenset[date]:
    if not isinstance(values, list) or len(values) > MAX_CALENDAR_DATES:
        raise _malformed(f"calendar {field} must be a list of at most {MAX_CALENDAR_DATES} dates like 2026-10-01")
    out = set()
    for value in values:
        if not isinstance(value, str) or not _DATE.fullmatch(value):
            raise _malformed(f"calendar {field}: {str(value)[:20]!r} is not a date like 2026-10-01")
        try:
            out.add(date.fromisoformat(value))
        except ValueError:
            raise _malformed(f"calendar {field}: {value} is not a real date") from None
    return frozenset(out)


def bundle_calendar(schedules: dict, calendar) -> CalendarConfig:
    """The hours a bundle sets (checked ``schedules`` and its ``calendar``), as a door's ``[calendar]``.

    :class:`BundleError` (``malformed``) naming the group, day, window or date otherwise.
    """
    _check_schedules(schedules)
    if not isinstance(calendar, dict) or not set(calendar) <= {"holidays", "working_days", "adjusted_day_schedule"}:
        raise _malformed("calendar must be an object of holidays, working_days and adjusted_day_schedule")
    if not schedules:
        raise _malformed("a bundle that sets the hours (calendar) needs at least one schedule group")
    weeks: dict[str, dict[str, tuple[TimeWindow, ...]]] = {}
    for group, week in schedules.items():
        if not _GROUP.fullmatch(group):
            raise _malformed(f"schedules: group {group[:32]!r} is not lower-case letters, digits, '-' or '_'")
        days = {}
        for day in WEEKDAYS:
            windows = sorted((_window(w, f"{group}.{day}") for w in week.get(day, [])), key=lambda w: w.start)
            for a, b in zip(windows, windows[1:]):
                if b.start < a.end:
                    raise _malformed(f"schedules {group}.{day}: windows {a} and {b} overlap")
            days[day] = tuple(windows)
        weeks[group] = days
    holidays = _dates(calendar.get("holidays", []), "holidays")
    working = _dates(calendar.get("working_days", []), "working_days")
    if holidays & working:
        raise _malformed(f"calendar: {min(holidays & working)} is both a holiday and a working day")
    adjusted = calendar.get("adjusted_day_schedule", "mon")
    if adjusted not in WEEKDAYS:
        raise _malformed(f"calendar adjusted_day_schedule: {str(adjusted)[:10]!r} is not one of "
                         f"{', '.join(WEEKDAYS)}")
    return CalendarConfig(weeks, holidays, working, adjusted)


def calendar_header(calendar: CalendarConfig) -> tuple[dict, dict]:
    """A :class:`~firmware_py.config.schema.CalendarConfig` as a bundle header's ``schedules`` and ``calendar``."""
    schedules = {group: {day: [str(w) if w.end.second == 0 else f"{w.start:%H:%M}-24:00" for w in windows]
                         for day, windows in week.items() if windows}
                 for group, week in calendar.schedules.items()}
    return schedules, {"holidays": sorted(d.isoformat() for d in calendar.holidays),
                       "working_days": sorted(d.isoformat() for d in calendar.working_days),
                       "adjusted_day_schedule": calendar.adjusted_day_schedule}


def check_row(row: list, n: int, *, schedule_groups: Iterable[str], pins: bool = False,
              ) -> tuple[tuple, tuple[str, ...]]:
    """One row of a signed bundle, checked as hostile input: the ``persons`` columns and the badge UIDs.

    :class:`BundleError` (``malformed``) naming the row and field otherwise. ``schedule_groups``
    are the ones rows may name (the bundle's own when it sets the hours, else the door's
    configuration's). With ``pins`` the row ends with :data:`PIN_COLUMNS`, each a PIN hash or
    null, and the stored tuple ends with them too.
    """
    v = dict(zip((*COLUMNS, *PIN_COLUMNS) if pins else COLUMNS, row))

    def bad(field: str, why: str) -> BundleError:
        return _malformed(f"row {n} ({str(v.get('person_id'))[:16]!r}), {field}: {why}")

    for field in ("person_id", "name", "id_masked", "id_hash", "role", "organisation", "employer_type",
                  "valid_from", "valid_until", "schedule_group"):
        if not isinstance(v[field], str):
            raise bad(field, "must be text")
    if not PERSON_ID.fullmatch(v["person_id"]):
        raise bad("person_id", "letters, digits, '.', '_' or '-', at most 16")
    for field, limit in (("name", MAX_NAME), ("organisation", MAX_ORGANISATION)):
        text = v[field]
        if not text.strip() and field == "name" or len(text) > limit:
            raise bad(field, f"empty or longer than {limit}")
        if control_character(text) or ID_NUMBER_IN_TEXT.search(text):
            raise bad(field, "holds a control character or what looks like an ID number")
    if not _MASKED.fullmatch(v["id_masked"]) or not _HEX64.fullmatch(v["id_hash"]):
        raise bad("id_masked/id_hash", "a masked number like 430102********123X and a 64-digit hex hash")
    if v["role"] not in ROLES or v["employer_type"] not in EMPLOYER_TYPES:
        raise bad("role/employer_type", f"one of {', '.join(ROLES)} / {', '.join(EMPLOYER_TYPES)}")
    groups = set(schedule_groups)
    if v["schedule_group"] not in groups:
        listed = ", ".join(sorted(groups))[:200]
        raise bad("schedule_group", f"{v['schedule_group'][:32]!r} is not a group of this door's "
                                    f"configuration, nor of the bundle's hours when it sets them ({listed})")
    hours = v["training_hours"]
    if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not 0 <= hours <= MAX_TRAINING_HOURS:
        raise bad("training_hours", f"a number from 0 to {MAX_TRAINING_HOURS}")
    dates = [_day(v[f], f, bad, required=f.startswith("valid")) for f in
             ("review_date", "commitment_date", "valid_from", "valid_until")]
    if dates[3] < dates[2]:
        raise bad("valid_until", "before valid_from")
    uids = v["badge_uids"]
    if not isinstance(uids, list) or not all(isinstance(u, str) for u in uids) or len(uids) > 16:
        raise bad("badge_uids", "a list of at most 16 UIDs")
    try:
        badges = tuple(dict.fromkeys(normalise_uid(u) for u in uids))
    except ValueError as exc:
        raise bad("badge_uids", str(exc)[:80]) from None
    stored = (v["person_id"], v["name"], v["role"], v["organisation"], v["employer_type"], v["id_hash"],
              v["id_masked"], v["review_date"], float(hours), v["commitment_date"], v["valid_from"],
              v["valid_until"], v["schedule_group"])
    if pins:
        for field in PIN_COLUMNS:
            if v[field] is not None:
                try:
                    check_pin_hash(v[field])
                except PinError as exc:
                    raise bad(field, str(exc)) from None
        if v["duress_pin_hash"] is not None and v["duress_pin_hash"] == v["pin_hash"]:
            raise bad("duress_pin_hash", "is the same hash as pin_hash")
        stored += (v["pin_hash"], v["duress_pin_hash"])
    return stored, badges


def _day(value, field: str, bad, *, required: bool) -> date | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise bad(field, "a date like 2026-01-31" + ("" if required else " or null"))
    try:
        return _parse_day(value)
    except ValueError:
        raise bad(field, f"{value} is not a real date") from None


@functools.lru_cache(maxsize=4096)
def _parse_day(text: str) -> date:
    """A roster's dates repeat (a vetting day, the year's end): parsed once each."""
    return date.fromisoformat(text)


def bundle_row(checked, pins: tuple[str | None, str | None] | None = None) -> list:
    """A checked CSV row (:class:`~firmware_py.storage.roster_csv.CheckedRow`) as a bundle row; with ``pins``
    (its PIN hash and duress PIN hash, each None when unset) the :data:`PIN_COLUMNS` follow."""
    review, commitment, valid_from, valid_until = checked.dates_text
    row = [checked.person_id, checked.name, checked.id_masked, checked.id_hash, list(checked.badge_uids),
           checked.role, checked.organisation, checked.employer_type, review, checked.training_hours, commitment,
           valid_from, valid_until, checked.schedule_group]
    return row + list(pins) if pins is not None else row
