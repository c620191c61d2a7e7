"""Checking roster rows: the fields of one person, and a roster CSV file, before anything is stored.

A pure layer under :mod:`firmware_py.storage.roster`: text in, :class:`RosterRow`
and a list of :class:`Problem` out. Nothing here touches the database, so
every problem of a file is found in one pass and reported together.

The roster CSV (UTF-8, with or without a byte-order mark; comma-separated; a
header line naming these columns in any order)::

    person_id        P001 … letters, digits, '.', '_' or '-', at most 16
    name             as on the ID card; no control characters (line breaks, tabs,
                     escape sequences, C1 codes, DEL) or bidi direction marks
    id_number        the 18-character resident ID number (x or X last); stored
                     only as a keyed hash and a masked form
    badge_uids       none, one or several badge UIDs separated by ';' or spaces;
                     hex, 4, 7 or 10 bytes (8, 14 or 20 digits), ':' or '-' allowed
                     inside a UID; stored upper-case without separators
    role             staff | supervisor | visitor | inspector
    organisation     employer or agency; required for employer_type agency; no control
                     characters, as for name
    employer_type    own (own unit) | agency (outsourcing agency)
    review_date      YYYY-MM-DD of the background review; empty = none yet
    training_hours   security training hours (number); empty = 0
    commitment_date  YYYY-MM-DD the confidentiality commitment was signed; empty = none
    valid_from       YYYY-MM-DD, first day of the permit
    valid_until      YYYY-MM-DD, last day of the permit (inclusive)
    schedule_group   a [calendar.schedule.*] group of the configuration

Empty review or commitment dates and low training hours are accepted: the
roster records facts, the policy judges them at the door.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

from firmware_py.core import idnumber
from firmware_py.core.people import EMPLOYER_TYPES, ROLES
from firmware_py.errors import IdNumberError

COLUMNS = (
    "person_id", "name", "id_number", "badge_uids", "role", "organisation", "employer_type", "review_date",
    "training_hours", "commitment_date", "valid_from", "valid_until", "schedule_group",
)
REQUIRED = ("person_id", "name", "id_number", "role", "employer_type", "valid_from", "valid_until", "schedule_group")

PERSON_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_UID_SEPARATORS = re.compile(r"[:\-]")
_LIST_SEPARATORS = re.compile(r"[;\s]+")
_HEX = re.compile(r"[0-9A-F]+")
UID_BYTES = (4, 7, 10)
MAX_NAME = 64
MAX_ORGANISATION = 100
MAX_TRAINING_HOURS = 10000
# Seventeen digits and a check character anywhere in free text, in any digit set: a leaked ID number.
ID_NUMBER_IN_TEXT = idnumber.ID_NUMBER_IN_TEXT
# Characters a free-text field must not hold: C0 controls (also tab, CR and LF), DEL, C1 controls,
# and the bidirectional embeddings, overrides, isolates and marks that make text read out of order.
# A name travels into every event, the console, the monitor and the register.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
TEXT_FIELDS = ("name", "organisation")
# The file's columns as the ``persons`` table stores them (the ID number hashed and masked; badges apart).
STORED_COLUMNS = ("person_id", "name", "role", "organisation", "employer_type", "id_hash", "id_masked", "review_date",
                  "training_hours", "commitment_date", "valid_from", "valid_until", "schedule_group")


@dataclass(frozen=True)
class RosterRow:
    """One person's checked fields, ready to store. The ID number is already hashed and masked."""

    person_id: str
    name: str
    id_hash: str
    id_masked: str
    badge_uids: tuple[str, ...]
    role: str
    organisation: str
    employer_type: str
    review_date: date | None
    training_hours: float
    commitment_date: date | None
    valid_from: date
    valid_until: date
    schedule_group: str

    def columns(self) -> dict:
        """The ``persons`` table's columns for this row (status is not the file's business)."""
        return {
            "person_id": self.person_id, "name": self.name, "role": self.role, "organisation": self.organisation,
            "employer_type": self.employer_type, "id_hash": self.id_hash, "id_masked": self.id_masked,
            "review_date": _iso(self.review_date), "training_hours": self.training_hours,
            "commitment_date": _iso(self.commitment_date), "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat(), "schedule_group": self.schedule_group,
        }


@dataclass(frozen=True)
class Problem:
    """What is wrong with one field of one row (``line`` 0 when there is no file)."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}, " if self.line else ""
        return f"{where}{self.field}: {self.message}"


class RowKeys(NamedTuple):
    """What must be unique across the roster, taken from a row even when other fields are bad."""

    line: int
    person_id: str
    id_hash: str | None
    id_masked: str | None
    badge_uids: tuple[str, ...]


@dataclass(frozen=True)
class ParsedFile:
    rows: tuple[tuple[int, RosterRow], ...]  # (line number, row) of the good rows
    keys: tuple[RowKeys, ...]  # of every row with the right number of fields
    problems: tuple[Problem, ...]


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


# --------------------------------------------------------------------------- single fields


def normalise_uid(text: str) -> str:
    """A badge UID as stored: upper-case hex without separators; ValueError with the reason otherwise."""
    uid = _UID_SEPARATORS.sub("", text.strip()).upper()
    if not uid or not _HEX.fullmatch(uid):
        raise ValueError(f"{text!r} is not hexadecimal")
    if len(uid) % 2 or len(uid) // 2 not in UID_BYTES:
        raise ValueError(f"{text!r} has {len(uid)} hex digits; a badge UID has 8, 14 or 20 (4, 7 or 10 bytes)")
    return uid


def split_uids(value: str | Iterable[str]) -> list[str]:
    if isinstance(value, str):
        value = [value]
    return [part for item in value for part in _LIST_SEPARATORS.split(item.strip()) if part]


def control_character(text: str) -> str | None:
    """A description of the first control or bidi character in ``text`` (``U+001B at position 3``),
    or None; the character itself is never echoed, so an error message cannot carry it to a terminal."""
    m = CONTROL_CHARACTERS.search(text)
    return f"U+{ord(m.group()):04X} at position {m.start() + 1}" if m else None


def _date(value: str, field: str, problems: list[Problem], *, required: bool) -> date | None:
    if not value:
        if required:
            problems.append(Problem(0, field, "is empty; give a date like 2026-01-31"))
        return None
    if not _DATE.fullmatch(value):
        problems.append(Problem(0, field, f"{value!r} is not a date like 2026-01-31 (YYYY-MM-DD)"))
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        problems.append(Problem(0, field, f"{value} is not a real date"))
        return None


class CheckedRow(NamedTuple):
    """A good row's fields as :class:`_RowChecker` found them; dates also as the ISO text that is stored."""

    person_id: str
    name: str
    id_hash: str
    id_masked: str
    badge_uids: tuple[str, ...]
    role: str
    organisation: str
    employer_type: str
    review_date: date | None
    training_hours: float
    commitment_date: date | None
    valid_from: date
    valid_until: date
    schedule_group: str
    dates_text: tuple[str | None, str | None, str, str]  # review, commitment, valid_from, valid_until

    def row(self) -> RosterRow:
        return RosterRow(*self[:14])

    def stored(self) -> tuple:
        """The ``persons`` columns in :data:`STORED_COLUMNS` order."""
        review, commitment, valid_from, valid_until = self.dates_text
        return (self.person_id, self.name, self.role, self.organisation, self.employer_type, self.id_hash,
                self.id_masked, review, self.training_hours, commitment, valid_from, valid_until, self.schedule_group)


class _RowChecker:
    """:func:`check_row` with what does not change from row to row worked out once (a file has many rows).

    Checked in the same order and with the same messages as ever; a row that is
    fine runs through the cheapest tests only.
    """

    def __init__(self, *, secret: bytes, schedule_groups: Iterable[str], today: date | None):
        self.secret, self.today = secret, today
        self.groups = frozenset(schedule_groups)
        listed = ", ".join(sorted(self.groups))
        self.hints = {"role": f"; use one of {', '.join(ROLES)}",
                      "employer_type": f"; use one of {', '.join(EMPLOYER_TYPES)}",
                      "schedule_group": f"; use one of {listed}"}
        self.listed_groups = listed

    def __call__(self, raw: Mapping[str, str]) -> tuple[CheckedRow | None, list[Problem]]:
        get = raw.get
        raw_name, raw_org = get("name") or "", get("organisation") or ""
        pid, name, org = (get("person_id") or "").strip(), raw_name.strip(), raw_org.strip()
        number, badges = (get("id_number") or "").strip(), (get("badge_uids") or "").strip()
        role, employer = (get("role") or "").strip(), (get("employer_type") or "").strip()
        review_text, hours_text = (get("review_date") or "").strip(), (get("training_hours") or "").strip()
        commitment_text = (get("commitment_date") or "").strip()
        from_text, until_text = (get("valid_from") or "").strip(), (get("valid_until") or "").strip()
        group = (get("schedule_group") or "").strip()
        problems: list[Problem] = []

        def bad(field: str, message: str) -> None:
            problems.append(Problem(0, field, message))

        if not (pid and name and number and role and employer and group):
            for field, value in (("person_id", pid), ("name", name), ("id_number", number), ("role", role),
                                 ("employer_type", employer), ("schedule_group", group)):
                if not value:
                    bad(field, "is empty" + self.hints.get(field, ""))
        if pid and not PERSON_ID.fullmatch(pid):
            bad("person_id", f"{pid!r} is not allowed; use letters, digits, '.', '_' or '-', at most 16")
        for field, text in (("name", raw_name), ("organisation", raw_org)):
            found = control_character(text)  # before stripping: a trailing CR is refused too
            if found:
                bad(field, f"contains a control character ({found}); type the text without line breaks, tabs, "
                           "escape sequences or direction marks")
        if len(name) > MAX_NAME:
            bad("name", f"is {len(name)} characters long; at most {MAX_NAME}")
        for field, text in (("name", name), ("organisation", org)):
            if ID_NUMBER_IN_TEXT.search(text):
                bad(field, "contains what looks like an ID number; it belongs in id_number only")
        if len(org) > MAX_ORGANISATION:
            bad("organisation", f"is {len(org)} characters long; at most {MAX_ORGANISATION}")
        id_hash = id_masked = None
        if number:
            try:
                number = idnumber.validate(number, today=self.today)
            except IdNumberError as exc:
                bad("id_number", str(exc))
            else:
                id_hash, id_masked = idnumber.id_hash(self.secret, number), idnumber.mask(number)
        uids: list[str] = []
        if badges:
            for token in split_uids(badges):
                try:
                    uid = normalise_uid(token)
                except ValueError as exc:
                    bad("badge_uids", str(exc))
                    continue
                if uid not in uids:
                    uids.append(uid)
        if role and role not in ROLES:
            bad("role", f"{role!r} is not allowed; use one of {', '.join(ROLES)}")
        if employer and employer not in EMPLOYER_TYPES:
            bad("employer_type", f"{employer!r} is not allowed; use one of {', '.join(EMPLOYER_TYPES)} "
                                 "(own unit or outsourcing agency)")
        elif employer == "agency" and not org:
            bad("organisation", "is empty; an agency worker's row names the agency")
        review = _date(review_text, "review_date", problems, required=False)
        commitment = _date(commitment_text, "commitment_date", problems, required=False)
        valid_from = _date(from_text, "valid_from", problems, required=True)
        valid_until = _date(until_text, "valid_until", problems, required=True)
        if valid_from and valid_until and valid_until < valid_from:
            bad("valid_until", f"{valid_until} is before valid_from {valid_from}")
        hours = 0.0
        if hours_text:
            try:
                hours = float(hours_text)
            except ValueError:
                hours = math.nan
            if not (0 <= hours <= MAX_TRAINING_HOURS):  # also catches nan and inf
                bad("training_hours", f"{hours_text!r} is not a number of hours from 0 to {MAX_TRAINING_HOURS}")
        if group and group not in self.groups:
            bad("schedule_group", f"{group!r} is not in the configuration; use one of {self.listed_groups}")
        if problems:
            return None, problems
        # A date that passed _DATE and fromisoformat is its own ISO text: stored as read.
        return CheckedRow(pid, name, id_hash, id_masked, tuple(uids), role, org, employer, review, hours, commitment,
                        valid_from, valid_until, group,
                        (review_text or None, commitment_text or None, from_text, until_text)), []


def check_row(raw: Mapping[str, str], *, secret: bytes, schedule_groups: Iterable[str],
              today: date | None = None) -> tuple[RosterRow | None, list[Problem]]:
    """Check one person's fields (strings, as in the CSV); return the row, or None and every problem."""
    checked, problems = _RowChecker(secret=secret, schedule_groups=schedule_groups, today=today)(raw)
    return (checked.row() if checked else None), problems


# --------------------------------------------------------------------------- a whole file


def decode(data: bytes) -> str:
    """The file's text; ValueError naming the line of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(f"line {line}: the file is not UTF-8 (saved as GBK? In Excel use "
                         "'Save as' > 'CSV UTF-8 (comma delimited)')") from None


def parse_csv(text: str, *, secret: bytes, schedule_groups: Iterable[str], today: date | None = None) -> ParsedFile:
    """Check every row of a roster CSV and the duplicates between rows."""
    rows: list[tuple[int, RosterRow]] = []
    keys: list[RowKeys] = []
    problems: list[Problem] = []
    for line, row, key, row_problems in check_csv(io.StringIO(text, newline=""), secret=secret,
                                                  schedule_groups=schedule_groups, today=today):
        problems += row_problems
        if row:
            rows.append((line, row.row()))
        if key:
            keys.append(key)
    if not keys and problems and problems[0].field == "header":
        return ParsedFile((), (), tuple(problems))
    problems += _duplicates(keys)
    problems.sort(key=lambda p: p.line)
    return ParsedFile(tuple(rows), tuple(keys), tuple(problems))


def check_csv(lines: Iterable[str], *, secret: bytes, schedule_groups: Iterable[str], today: date | None = None,
              extra_columns: Iterable[str] = (),
              ) -> Iterator[tuple[int, CheckedRow | None, RowKeys | None, list[Problem]]]:
    """Check a roster CSV one row at a time, reading ``lines`` as it goes (a file opened with ``newline=""``).

    Yields ``(line, row or None, keys or None, problems)`` per data row (``row.stored()``
    gives its ``persons`` columns, ``row.row()`` a :class:`RosterRow`); a header
    that is wrong yields its problems once (line 1) and nothing more. Duplicates
    between rows are the caller's to find (from the keys). ``extra_columns`` may be in the
    header too; their cells are the caller's to read and check (the station's PIN hashes).
    """
    check = _RowChecker(secret=secret, schedule_groups=schedule_groups, today=today)
    extra_columns = tuple(extra_columns)
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        yield 1, None, None, [Problem(1, "header", f"is not valid CSV: {exc}")]
        return
    if header is None or not any(h.strip() for h in header):
        yield 1, None, None, [Problem(1, "header",
                                      f"is missing; the first line names the columns: {','.join(COLUMNS)}")]
        return
    names = [h.strip() for h in header]
    header_problems = []
    missing = [c for c in COLUMNS if c not in names]
    unknown = [n for n in names if n not in COLUMNS and n not in extra_columns]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if missing:
        header_problems.append(Problem(1, "header", f"missing column(s) {', '.join(missing)}"))
    if unknown:
        header_problems.append(Problem(1, "header", f"unknown column(s) {', '.join(map(repr, unknown))}"))
    if doubled:
        header_problems.append(Problem(1, "header", f"column(s) named twice: {', '.join(doubled)}"))
    if header_problems:
        header_problems.append(Problem(1, "header", f"the columns are: {','.join(COLUMNS)}"))
        yield 1, None, None, header_problems
        return

    line = reader.line_num
    while True:
        start = line + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield start, None, None, [Problem(start, "row",
                                              f"is not valid CSV: {exc}; the rest of the file was not read")]
            break
        line = reader.line_num
        if not "".join(record).strip():  # a blank line (the same as no cell holding anything)
            continue
        if len(record) != len(names):
            yield start, None, None, [Problem(start, "row", f"has {len(record)} fields, the header has {len(names)}")]
            continue
        raw = dict(zip(names, record))
        row, row_problems = check(raw)
        problems = [Problem(start, p.field, p.message) for p in row_problems] if row_problems else row_problems
        if row:
            # a good row's keys are already checked and hashed: validating them again cost a quarter of an import
            yield start, row, RowKeys(start, row.person_id, row.id_hash, row.id_masked, row.badge_uids), problems
        else:
            yield start, None, row_keys(start, raw, secret, today), problems


def row_keys(line: int, raw: Mapping[str, str], secret: bytes, today: date | None = None) -> RowKeys:
    """The unique keys of a row, each only if it is well-formed itself (problems are check_row's job)."""
    number = (raw.get("id_number") or "").strip()
    valid = idnumber.is_valid(number, today=today)
    uids = []
    for token in split_uids(raw.get("badge_uids") or ""):
        try:
            uid = normalise_uid(token)
        except ValueError:
            continue
        if uid not in uids:
            uids.append(uid)
    return RowKeys(line, (raw.get("person_id") or "").strip(), idnumber.id_hash(secret, number) if valid else None,
                   idnumber.mask(number) if valid else None, tuple(uids))


def _duplicates(keys: list[RowKeys]) -> list[Problem]:
    problems = []
    first_id: dict[str, int] = {}
    first_hash: dict[str, tuple[int, str]] = {}
    first_uid: dict[str, tuple[int, str]] = {}
    for k in keys:
        if k.person_id in first_id:
            problems.append(Problem(k.line, "person_id", f"{k.person_id} is also on line {first_id[k.person_id]}"))
        elif k.person_id:
            first_id[k.person_id] = k.line
        if k.id_hash in first_hash:
            other_line, other = first_hash[k.id_hash]
            problems.append(Problem(k.line, "id_number", f"{k.id_masked} is also on line {other_line} ({other})"))
        elif k.id_hash:
            first_hash[k.id_hash] = (k.line, k.person_id)
        for uid in k.badge_uids:
            if uid in first_uid:
                other_line, other = first_uid[uid]
                problems.append(Problem(k.line, "badge_uids", f"{uid} is also on line {other_line} ({other})"))
            else:
                first_uid[uid] = (k.line, k.person_id)
    return problems
