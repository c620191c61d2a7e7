"""A roster CSV turned into a signed bundle for one site: checked as the door's import checks it.

:func:`read_roster` reads the file with the door's own checker
(:func:`~firmware_py.storage.roster_csv.check_csv`): all or nothing, every bad row named with its
line, duplicates inside the file too. ID numbers are hashed under the *site roster key* (the key
every door of the site matches ID cards with) and masked; the number itself goes no further.
:func:`make_bundle` signs the rows with the station's key (:mod:`firmware_py.link.roster_bundle`),
with the site's hours when the station's configuration has them (``[roster.calendar]``).

PINs travel as their slow salted hashes only. A CSV may add the columns ``pin_hash`` and
``duress_pin_hash`` (each a hash :func:`~firmware_py.core.pin.hash_pin` made, e.g. with
``accessctl station roster pin-hash``, or empty for none); the bundle then carries them and
replaces the PINs set at each door. A column meant for a PIN itself (``pin``, ``duress_pin``,
``pin_code`` …) or a cell holding anything but a hash refuses the whole file, naming the line,
and the message never repeats the cell.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from firmware_py.core.pin import PinError, check_pin_hash
from firmware_py.errors import RosterError
from firmware_py.link import roster_bundle, roster_keys
from firmware_py.storage.roster_csv import CheckedRow, Problem, RowKeys, _duplicates, check_csv, decode

MAX_LISTED = 1000  # problems listed in a refusal; the rest are counted
PIN_COLUMNS = roster_bundle.PIN_COLUMNS  # optional CSV columns: PIN hashes, never PINs
PLAIN_PIN_COLUMN = re.compile(r"(duress[ _-]?)?(pin|passcode|password)([ _-]?(code|number|no))?", re.IGNORECASE)


class CheckedRows(list):
    """The checked rows of a roster file, in order; ``pins`` maps each person id to their PIN hash and
    duress PIN hash (None for none) when the file has PIN hash columns, and is None when it has not
    (the doors then keep the PINs set at each door)."""

    pins: dict[str, tuple[str | None, str | None]] | None = None


@dataclass(frozen=True)
class SignedBundle:
    site: str
    version: int
    made_at: datetime
    valid_until: datetime
    count: int
    payload_bytes: int  # compressed
    manifest: bytes
    chunks: list[bytes]

    @property
    def wire_bytes(self) -> int:
        return len(self.manifest) + sum(len(c) for c in self.chunks)


def read_roster(path: str | Path, *, site_key: bytes, schedule_groups: Iterable[str],
                today: date) -> CheckedRows:
    """Every row of the CSV, checked; :class:`RosterError` listing every problem with its line otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RosterError(f"{path}: cannot read the roster file: {exc.strerror or exc}") from None
    return check_roster(data, str(path), site_key=site_key, schedule_groups=schedule_groups, today=today)


def check_roster(data: bytes, name: str, *, site_key: bytes, schedule_groups: Iterable[str],
                 today: date) -> CheckedRows:
    """Every row of the CSV ``data`` (a file called ``name``), checked as the door's import checks it,
    and its PIN hashes; :class:`RosterError` listing every problem with its line otherwise."""
    try:
        text = decode(data)
    except ValueError as exc:
        raise _refused(name, [Problem(0, "file", str(exc))]) from None
    header = _header(text)
    plain = [c for c in header if PLAIN_PIN_COLUMN.fullmatch(c)]
    if plain:
        raise _refused(name, [Problem(1, "header", f"column {c!r} would hold PINs: the station never takes a PIN. "
                                                   "Give PIN hashes in the columns pin_hash and duress_pin_hash "
                                                   "(`accessctl station roster pin-hash` makes one)") for c in plain])
    with_pins = [c for c in PIN_COLUMNS if c in header]
    cells = _pin_cells(text, with_pins) if with_pins else {}
    rows = CheckedRows()
    if with_pins:
        rows.pins = {}
    keys: list[RowKeys] = []
    problems: list[Problem] = []
    for line, row, key, row_problems in check_csv(io.StringIO(text, newline=""), secret=site_key,
                                                  schedule_groups=schedule_groups, today=today,
                                                  extra_columns=PIN_COLUMNS):
        problems += row_problems
        if row is not None:
            pins, pin_problems = _pins(line, cells.get(line, (None, None)))
            problems += pin_problems
            rows.append(row)
            if rows.pins is not None:
                rows.pins[row.person_id] = pins
        if key is not None:
            keys.append(key)
    problems += _duplicates(keys)
    if not rows and not problems:
        problems.append(Problem(2, "row", "the file has no persons; after the header, one line per person"))
    if problems:
        raise _refused(name, sorted(problems, key=lambda p: p.line))
    return rows


def _header(text: str) -> list[str]:
    try:
        return [h.strip() for h in next(csv.reader(io.StringIO(text, newline=""), strict=True), [])]
    except csv.Error:
        return []  # check_csv names it


def _pin_cells(text: str, columns: list[str]) -> dict[int, tuple[str | None, str | None]]:
    """The PIN hash cells of each data row, by the row's first line (counted as :func:`check_csv` counts)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    names = [h.strip() for h in next(reader)]
    at = {c: names.index(c) for c in columns}
    cells: dict[int, tuple[str | None, str | None]] = {}
    line = reader.line_num
    try:
        for record in reader:
            start, line = line + 1, reader.line_num
            if len(record) == len(names):
                cells[start] = tuple((record[at[c]].strip() or None) if c in at else None
                                     for c in PIN_COLUMNS)
    except csv.Error:
        pass  # check_csv names the line
    return cells


def _pins(line: int, cells: tuple[str | None, str | None]) -> tuple[tuple[str | None, str | None], list[Problem]]:
    problems = []
    for column, value in zip(PIN_COLUMNS, cells):
        if value is not None:
            try:
                check_pin_hash(value)
            except PinError as exc:  # the message never repeats the cell: it may be a PIN
                problems.append(Problem(line, column, str(exc)))
    if cells[0] is not None and cells[0] == cells[1]:
        problems.append(Problem(line, "duress_pin_hash", "is the same hash as pin_hash: a duress PIN is another PIN"))
    return cells, problems


def _refused(name: str, problems: list[Problem]) -> RosterError:
    lines = len({p.line for p in problems})
    shown, more = problems[:MAX_LISTED], len(problems) - MAX_LISTED
    tail = f"\n  … and {more} more not listed" if more > 0 else ""
    return RosterError(f"{name}: publish refused, nothing was published ({len(problems)} problem"
                       f"{'s' if len(problems) != 1 else ''} on {lines} line{'s' if lines != 1 else ''}):\n"
                       + "\n".join(f"  {p}" for p in shown) + tail)


def next_version(previous: int, made_at: datetime) -> int:
    """Newer than ``previous`` (the version at the broker) and than any earlier publish: the publish
    time in Unix seconds, or one more than ``previous`` if that is higher."""
    return max(previous + 1, int(made_at.timestamp()))


def make_bundle(rows: list[CheckedRow], *, site: str, version: int, made_at: datetime, valid_for: timedelta,
                signing_key, site_key: bytes, schedules: dict | None = None, calendar: dict | None = None,
                chunk_bytes: int = roster_bundle.DEFAULT_CHUNK_BYTES) -> SignedBundle:
    """Sign ``rows`` as version ``version`` of ``site``'s roster, valid for ``valid_for`` from ``made_at``.

    With ``calendar`` (holidays, working_days, adjusted_day_schedule) the bundle sets the doors'
    hours: ``schedules`` and the calendar. Rows read with PIN hash columns (:class:`CheckedRows`)
    carry their hashes."""
    valid_until = made_at + valid_for
    header = {"site": site, "version": version, "made_at": made_at.isoformat(timespec="seconds"),
              "valid_until": valid_until.isoformat(timespec="seconds"), "key_id": roster_keys.key_id(site_key),
              "schedules": schedules or {}}
    if calendar is not None:
        header["calendar"] = calendar
        roster_bundle.bundle_calendar(header["schedules"], calendar)  # what a door would refuse is never signed
    pins = rows.pins if isinstance(rows, CheckedRows) else None
    bundle_rows = (roster_bundle.bundle_row(r, pins[r.person_id] if pins is not None else None) for r in rows)
    payload = roster_bundle.build_payload(header, bundle_rows, pins=pins is not None)
    manifest, chunks = roster_bundle.sign_bundle(signing_key, {**header, "count": len(rows)}, payload,
                                                 chunk_bytes=chunk_bytes)
    return SignedBundle(site, version, made_at, valid_until, len(rows), len(payload), manifest, chunks)
