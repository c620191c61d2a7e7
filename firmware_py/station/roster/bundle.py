"""A roster CSV turned into a signed bundle for one site: checked as the door's import checks it.

:func:`read_roster` reads the file with the door's own checker
(:func:`~firmware_py.storage.roster_csv.check_csv`): all or nothing, every bad row named with its
line, duplicates inside the file too. ID numbers are hashed under the *site roster key* (the key
every door of the site matches ID cards with) and masked; the number itself goes no further.
:func:`make_bundle` signs the rows with the station's key (:mod:`firmware_py.link.roster_bundle`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from firmware_py.errors import RosterError
from firmware_py.link import roster_bundle, roster_keys
from firmware_py.storage.roster_csv import CheckedRow, Problem, RowKeys, _duplicates, check_csv, decode

MAX_LISTED = 1000  # problems listed in a refusal; the rest are counted


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
                today: date) -> list[CheckedRow]:
    """Every row of the CSV, checked; :class:`RosterError` listing every problem with its line otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RosterError(f"{path}: cannot read the roster file: {exc.strerror or exc}") from None
    return check_roster(data, str(path), site_key=site_key, schedule_groups=schedule_groups, today=today)


def check_roster(data: bytes, name: str, *, site_key: bytes, schedule_groups: Iterable[str],
                 today: date) -> list[CheckedRow]:
    """Every row of the CSV ``data`` (a file called ``name``), checked as the door's import checks it;
    :class:`RosterError` listing every problem with its line otherwise."""
    try:
        text = decode(data)
    except ValueError as exc:
        raise _refused(name, [Problem(0, "file", str(exc))]) from None
    rows: list[CheckedRow] = []
    keys: list[RowKeys] = []
    problems: list[Problem] = []
    for _line, row, key, row_problems in check_csv(io.StringIO(text, newline=""), secret=site_key,
                                                   schedule_groups=schedule_groups, today=today):
        problems += row_problems
        if row is not None:
            rows.append(row)
        if key is not None:
            keys.append(key)
    problems += _duplicates(keys)
    if not rows and not problems:
        problems.append(Problem(2, "row", "the file has no persons; after the header, one line per person"))
    if problems:
        raise _refused(name, sorted(problems, key=lambda p: p.line))
    return rows


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
                signing_key, site_key: bytes, schedules: dict | None = None,
                chunk_bytes: int = roster_bundle.DEFAULT_CHUNK_BYTES) -> SignedBundle:
    """Sign ``rows`` as version ``version`` of ``site``'s roster, valid for ``valid_for`` from ``made_at``."""
    valid_until = made_at + valid_for
    header = {"site": site, "version": version, "made_at": made_at.isoformat(timespec="seconds"),
              "valid_until": valid_until.isoformat(timespec="seconds"), "key_id": roster_keys.key_id(site_key),
              "schedules": schedules or {}}
    payload = roster_bundle.build_payload(header, (roster_bundle.bundle_row(r) for r in rows))
    manifest, chunks = roster_bundle.sign_bundle(signing_key, {**header, "count": len(rows)}, payload,
                                                 chunk_bytes=chunk_bytes)
    return SignedBundle(site, version, made_at, valid_until, len(rows), len(payload), manifest, chunks)
