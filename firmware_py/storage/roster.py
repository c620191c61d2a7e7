"""The roster of authorised personnel: plain functions over the controller's database.

Reading (:func:`get`, :func:`get_by_id_hash`, :func:`get_by_badge`,
:func:`list_persons`) returns :class:`~firmware_py.core.people.Person` rows.
Every change (:func:`add`, :func:`revoke`, :func:`reinstate`,
:func:`import_csv`) is one transaction that also appends its
``roster_changed`` event, so the log and the roster never disagree. The
events carry person ids, masked ID numbers and counts, never a full number.

What an import does (the file format is in :mod:`firmware_py.storage.roster_csv`):

- It is all-or-nothing. Every row is checked first; any bad row, a person id,
  ID number or badge that appears twice in the file, or an ID number or badge
  that belongs to a person *not in the file* rejects the whole file, and the
  :class:`RosterError` lists every problem with its line number and field.
- Persons in the file are added or updated; their badges become exactly the
  file's. Persons not in the file are left as they are: an import never
  removes anyone (revoke them).
- A revoked person stays revoked when the file lists them: their facts are
  updated, their status is not. Revocation is lifted only on purpose, by
  :func:`reinstate` (``accessctl roster reinstate``), so an old spreadsheet
  re-imported cannot readmit someone. Their ID number and badges stay theirs,
  so nobody else can be given them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from pathlib import Path

import sqlite_utils

from firmware_py.config.schema import CalendarConfig
from firmware_py.core.people import Person
from firmware_py.core.pin import check_new_pin, hash_pin, verify_pin
from firmware_py.errors import RosterError
from firmware_py.storage.db import transaction
from firmware_py.storage.eventstore import EventStore
from firmware_py.storage.roster_bundle import AppliedCalendar
from firmware_py.storage.roster_csv import (
    COLUMNS,
    ID_NUMBER_IN_TEXT,
    Problem,
    RosterRow,
    RowKeys,
    check_row,
    normalise_uid,
    split_uids,
)
from firmware_py.storage.roster_import import IMPORT_ATTEMPTS, _Facts, _RosterMoved, _staging

log = logging.getLogger(__name__)

MAX_REASON = 200


@dataclass(frozen=True)
class ImportResult:
    """What an import changed; ``seq`` is its ``roster_changed`` event."""

    count: int
    added: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: tuple[str, ...]
    still_revoked: tuple[str, ...]
    warnings: tuple[str, ...]
    seq: int

    def __str__(self) -> str:
        text = (f"imported {self.count} persons: {len(self.added)} added, {len(self.updated)} updated, "
                f"{len(self.unchanged)} unchanged")
        if self.still_revoked:
            text += f"; still revoked: {', '.join(self.still_revoked)}"
        return text


# --------------------------------------------------------------------------- reading

_PERSON_COLUMNS = ("person_id", "name", "role", "organisation", "employer_type", "id_hash", "id_masked",
                   "review_date", "training_hours", "commitment_date", "valid_from", "valid_until",
                   "schedule_group", "status", "revoked_at", "revoked_reason", "pin_hash", "duress_pin_hash")
_SELECT = f"SELECT {', '.join(_PERSON_COLUMNS)} FROM persons"


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _person(row: dict, badges: Iterable[str]) -> Person:
    return Person(
        person_id=row["person_id"], name=row["name"], role=row["role"], organisation=row["organisation"],
        employer_type=row["employer_type"], id_hash=row["id_hash"], id_masked=row["id_masked"],
        badge_uids=tuple(sorted(badges)), review_date=_day(row["review_date"]),
        training_hours=float(row["training_hours"]), commitment_date=_day(row["commitment_date"]),
        valid_from=date.fromisoformat(row["valid_from"]), valid_until=date.fromisoformat(row["valid_until"]),
        schedule_group=row["schedule_group"], status=row["status"],
        revoked_at=datetime.fromisoformat(row["revoked_at"]) if row["revoked_at"] else None,
        revoked_reason=row["revoked_reason"], pin_hash=row["pin_hash"], duress_pin_hash=row["duress_pin_hash"],
    )


def _one(db: sqlite_utils.Database, where: str, params: tuple) -> Person | None:
    rows = list(db.query(f"{_SELECT} WHERE {where}", params))
    if not rows:
        return None
    badges = [r["uid"] for r in db.query("SELECT uid FROM badges WHERE person_id = ?", (rows[0]["person_id"],))]
    return _person(rows[0], badges)


def get(db: sqlite_utils.Database, person_id: str) -> Person | None:
    return _one(db, "person_id = ?", (person_id,))


def get_by_id_hash(db: sqlite_utils.Database, h: str) -> Person | None:
    """The person whose ID number has this :func:`~firmware_py.core.idnumber.id_hash`, revoked or not."""
    return _one(db, "id_hash = ?", (h,))


def get_by_badge(db: sqlite_utils.Database, uid: str) -> Person | None:
    """The person holding this badge (any case, ':'/'-' separators allowed), revoked or not."""
    try:
        uid = normalise_uid(uid)
    except ValueError:
        return None
    return _one(db, "person_id = (SELECT person_id FROM badges WHERE uid = ?)", (uid,))


def id_hash_count(db: sqlite_utils.Database) -> int:
    """How many persons have an ID hash: the device secret is then irreplaceable."""
    return db.execute("SELECT count(*) FROM persons WHERE id_hash IS NOT NULL").fetchone()[0]


def list_persons(db: sqlite_utils.Database) -> list[Person]:
    badges: dict[str, list[str]] = {}
    for r in db.query("SELECT uid, person_id FROM badges"):
        badges.setdefault(r["person_id"], []).append(r["uid"])
    return [_person(r, badges.get(r["person_id"], ())) for r in db.query(f"{_SELECT} ORDER BY person_id")]


# --------------------------------------------------------------------------- writing


@contextmanager
def _writing(db: sqlite_utils.Database) -> Iterator[None]:
    """Join the caller's transaction, or run in one of our own."""
    if db.conn.in_transaction:
        yield
    else:
        with transaction(db):
            yield


def _conflicts(db: sqlite_utils.Database, row: RosterRow | RowKeys, line: int, replaced: set[str]) -> list[Problem]:
    """The row's ID number or badges already held by someone whose row is not being replaced."""
    problems = []
    owner = db.execute("SELECT person_id, status FROM persons WHERE id_hash = ?", (row.id_hash,)).fetchone()
    if row.id_hash and owner and owner[0] != row.person_id and owner[0] not in replaced:
        problems.append(Problem(line, "id_number", f"{row.id_masked} is already in the roster as {owner[0]}"
                                                   + (" (revoked)" if owner[1] == "revoked" else "")))
    for uid in row.badge_uids:
        owner = db.execute("SELECT person_id FROM badges WHERE uid = ?", (uid,)).fetchone()
        if owner and owner[0] != row.person_id and owner[0] not in replaced:
            problems.append(Problem(line, "badge_uids", f"{uid} already belongs to {owner[0]}"))
    return problems


def _insert(db: sqlite_utils.Database, row: RosterRow) -> None:
    cols = row.columns()
    db.execute(f"INSERT INTO persons ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", tuple(cols.values()))


def _update(db: sqlite_utils.Database, row: RosterRow) -> None:
    cols = row.columns()
    pid = cols.pop("person_id")
    db.execute(f"UPDATE persons SET {', '.join(f'{c} = ?' for c in cols)} WHERE person_id = ?",
               (*cols.values(), pid))


def _set_badges(db: sqlite_utils.Database, row: RosterRow) -> None:
    for uid in row.badge_uids:
        db.execute("INSERT INTO badges (uid, person_id) VALUES (?, ?)", (uid, row.person_id))


def add(db: sqlite_utils.Database, store: EventStore, *, person_id: str, name: str, id_number: str, role: str,
        employer_type: str, valid_from: date | str, valid_until: date | str, schedule_group: str,
        secret: bytes, schedule_groups: Iterable[str], organisation: str = "",
        badge_uids: str | Iterable[str] = (), review_date: date | str | None = None,
        training_hours: float | str = 0, commitment_date: date | str | None = None) -> Person:
    """Add one new person (checked like an import row); raise :class:`RosterError` listing every problem."""
    raw = {
        "person_id": person_id, "name": name, "id_number": id_number, "role": role, "organisation": organisation,
        "employer_type": employer_type, "badge_uids": " ".join(split_uids(badge_uids)),
        "review_date": review_date, "training_hours": training_hours, "commitment_date": commitment_date,
        "valid_from": valid_from, "valid_until": valid_until, "schedule_group": schedule_group,
    }
    raw = {k: "" if v is None else (v.isoformat() if isinstance(v, date) else str(v)) for k, v in raw.items()}
    row, problems = check_row(raw, secret=secret, schedule_groups=schedule_groups, today=_today(store))
    label = raw["person_id"] or "a person"
    if row is None:
        raise RosterError(f"cannot add {label}:\n" + "\n".join(f"  {p}" for p in problems))
    with _writing(db):
        if db.execute("SELECT 1 FROM persons WHERE person_id = ?", (row.person_id,)).fetchone():
            raise RosterError(f"cannot add {row.person_id}: already in the roster; change it with "
                              "`accessctl roster import` or revoke it")
        problems = _conflicts(db, row, 0, set())
        if problems:
            raise RosterError(f"cannot add {row.person_id}:\n" + "\n".join(f"  {p}" for p in problems))
        _insert(db, row)
        _set_badges(db, row)
        store.append("system", "roster_changed", person=_public(row),
                     detail={"action": "add", "person_id": row.person_id, "id_masked": row.id_masked,
                             "badges": len(row.badge_uids), "count": 1})
    log.info("roster: added %s (%s)", row.person_id, row.role)
    return get(db, row.person_id)


def _public(row: RosterRow | Person) -> dict:
    return {"person_id": row.person_id, "name": row.name, "role": row.role}


def _today(store: EventStore, tz: tzinfo | None = None) -> date:
    now = store.clock.now()
    return (now.astimezone(tz) if tz else now).date()


def _check_reason(reason: str, action: str, person_id: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise RosterError(f"cannot {action} {person_id}: give a reason (--reason)")
    if len(reason) > MAX_REASON:
        raise RosterError(f"cannot {action} {person_id}: the reason is {len(reason)} characters; at most {MAX_REASON}")
    if ID_NUMBER_IN_TEXT.search(reason):
        raise RosterError(f"cannot {action} {person_id}: the reason must not contain an ID number")
    return reason


def revoke(db: sqlite_utils.Database, store: EventStore, person_id: str, reason: str, at: datetime) -> Person:
    """Revoke a person's access from ``at`` (timezone-aware); their row, ID hash and badges are kept."""
    if at.tzinfo is None:
        raise ValueError("the revocation time must be timezone-aware")
    reason = _check_reason(reason, "revoke", person_id)
    with _writing(db):
        person = get(db, person_id)
        if person is None:
            raise RosterError(f"cannot revoke {person_id}: no such person in the roster")
        if person.status == "revoked":
            raise RosterError(f"cannot revoke {person_id}: already revoked since "
                              f"{person.revoked_at:%Y-%m-%d %H:%M} ({person.revoked_reason})")
        db.execute("UPDATE persons SET status = 'revoked', revoked_at = ?, revoked_reason = ? WHERE person_id = ?",
                   (at.isoformat(timespec="seconds"), reason, person_id))
        store.append("system", "roster_changed", person=person.public(),
                     detail={"action": "revoke", "person_id": person_id, "reason": reason,
                             "revoked_at": at.isoformat(timespec="seconds"), "count": 1})
    log.info("roster: revoked %s (%s)", person_id, reason)
    return get(db, person_id)


def reinstate(db: sqlite_utils.Database, store: EventStore, person_id: str, reason: str) -> Person:
    """Lift a revocation on purpose (an import never does)."""
    reason = _check_reason(reason, "reinstate", person_id)
    with _writing(db):
        person = get(db, person_id)
        if person is None:
            raise RosterError(f"cannot reinstate {person_id}: no such person in the roster")
        if person.status != "revoked":
            raise RosterError(f"cannot reinstate {person_id}: not revoked")
        db.execute("UPDATE persons SET status = 'active', revoked_at = NULL, revoked_reason = NULL "
                   "WHERE person_id = ?", (person_id,))
        store.append("system", "roster_changed", person=person.public(),
                     detail={"action": "reinstate", "person_id": person_id, "reason": reason,
                             "was_revoked_at": person.revoked_at.isoformat(), "count": 1})
    log.info("roster: reinstated %s (%s)", person_id, reason)
    return get(db, person_id)


def set_pin(db: sqlite_utils.Database, store: EventStore, person_id: str, pin: str, *, duress: bool = False) -> None:
    """Store the hash of ``person_id``'s PIN (``duress``: of their duress PIN); :class:`RosterError` when refused.

    The PIN and the duress PIN must differ, or the duress PIN could never be told from the PIN.
    The hash is made before the transaction, so the door's writes never wait on it. The
    ``roster_changed`` event says whose PIN was set and which one, never the PIN or its hash.
    """
    which, other = ("duress_pin_hash", "pin_hash") if duress else ("pin_hash", "duress_pin_hash")
    name = "duress PIN" if duress else "PIN"
    try:
        check_new_pin(pin)
    except ValueError as exc:
        raise RosterError(f"cannot set the {name} of {person_id}: {exc}") from None
    stored = hash_pin(pin)
    row = db.execute(f"SELECT name, role, {other} FROM persons WHERE person_id = ?", (person_id,)).fetchone()
    if row is None:
        raise RosterError(f"cannot set the {name} of {person_id}: no such person in the roster")
    if verify_pin(pin, row[2]):
        raise RosterError(f"cannot set the {name} of {person_id}: it is the same as their "
                          f"{'PIN' if duress else 'duress PIN'}; the two must differ")
    with _writing(db):
        db.execute(f"UPDATE persons SET {which} = ? WHERE person_id = ?", (stored, person_id))
        store.append("system", "roster_changed", person={"person_id": person_id, "name": row[0], "role": row[1]},
                     detail={"action": "duress_pin_set" if duress else "pin_set", "person_id": person_id,
                             "count": 1})
    log.info("roster: %s of %s set", name, person_id)


# --------------------------------------------------------------------------- import


def _refused(path: Path, problems: list[Problem], more: int = 0) -> RosterError:
    lines = sorted({p.line for p in problems})
    rows = f"{len(lines)} line" + ("s" if len(lines) != 1 else "")
    tail = f"\n  … and {more} more problem{'s' if more != 1 else ''} not listed" if more else ""
    count = len(problems) + more
    return RosterError(f"{path}: import refused, nothing was written ({count} problem"
                       f"{'s' if count != 1 else ''} on {'at least ' if more else ''}{rows}):\n"
                       + "\n".join(f"  {p}" for p in problems) + tail)


def import_csv(db: sqlite_utils.Database, store: EventStore, path: str | Path, *, secret: bytes,
               schedule_groups: Iterable[str], tz: tzinfo) -> ImportResult:
    """Import a roster CSV all-or-nothing (see the module docstring); ``tz`` is the site's zone.

    The file is read as a stream and never held whole: each row is checked and
    kept in a private temporary database attached to the connection (writing
    it takes no lock on the door's database). The new roster is then built
    beside the old one in short transactions and swapped in by one transaction
    of a few renames, so the door's own writes never wait long. A roster change
    by anyone else meanwhile is noticed at the swap, and the build is done again.
    """
    path = Path(path)
    if db.conn.in_transaction:
        raise RuntimeError("import_csv runs its own short transactions; call it outside a transaction")
    today = _today(store, tz)
    with _staging(db) as stage:
        start_seq = store.last_seq()
        digest = stage.load(path, secret=secret, schedule_groups=schedule_groups, today=today)  # builds as it reads
        for attempt in range(1, IMPORT_ATTEMPTS + 1):
            problems = stage.problems + stage.duplicates() + stage.conflicts()
            if not stage.count and not problems:
                problems.append(Problem(2, "row", f"the file has no persons; after the header, one line per person "
                                                  f"with {len(COLUMNS)} fields"))
            if problems:
                raise _refused(path, sorted(problems, key=lambda p: p.line), stage.more_problems)
            outcome = stage.compare()
            if attempt > 1 or stage.broken:
                stage.build_next()
            try:
                detail = {"action": "import", "file": path.name, "sha256": digest, "count": stage.count,
                          "added": outcome.added, "updated": outcome.updated, "unchanged": len(outcome.unchanged),
                          "still_revoked": outcome.still_revoked}
                event = stage.swap(start_seq, lambda detail=detail: store.append("system", "roster_changed",
                                                                                  detail=detail))
            except _RosterMoved:
                log.info("roster import: the roster changed while %s was being imported; again (%d)", path, attempt)
                start_seq = store.last_seq()
                continue
            break
        else:
            raise RosterError(f"{path}: import refused, nothing was written: the roster kept changing while the "
                              "file was imported; try again when nobody else changes it")
        warnings = tuple(_warnings(stage.facts(), outcome.still_revoked, today))
    for w in warnings:
        log.info("roster import: %s", w)
    result = ImportResult(stage.count, tuple(outcome.added), tuple(outcome.updated), tuple(outcome.unchanged),
                          tuple(outcome.still_revoked), warnings, event["seq"])
    log.info("roster: %s from %s", result, path)
    return result


def _facts(p: Person) -> dict:
    return {
        "person_id": p.person_id, "name": p.name, "role": p.role, "organisation": p.organisation,
        "employer_type": p.employer_type, "id_hash": p.id_hash, "id_masked": p.id_masked,
        "review_date": p.review_date.isoformat() if p.review_date else None, "training_hours": p.training_hours,
        "commitment_date": p.commitment_date.isoformat() if p.commitment_date else None,
        "valid_from": p.valid_from.isoformat(), "valid_until": p.valid_until.isoformat(),
        "schedule_group": p.schedule_group,
    }


def _warnings(rows: Iterable[RosterRow | _Facts], still_revoked: list[str], today: date) -> Iterator[str]:
    """Facts the policy will deny on: worth telling the person who imports, not errors."""
    for row in rows:
        if row.valid_until < today:
            yield f"{row.person_id}: the permit ended on {row.valid_until} (denied as expired)"
        if row.review_date is None:
            yield f"{row.person_id}: no review date (denied as review_missing)"
        if row.commitment_date is None:
            yield f"{row.person_id}: no signed commitment (denied as commitment_missing)"
    for pid in still_revoked:
        yield f"{pid}: stays revoked; lift it with `accessctl roster reinstate {pid} --reason ...`"


# --------------------------------------------------------------------------- the door's port


class SqliteRoster:
    """The :class:`~firmware_py.core.ports.Roster` the door reads, over its database."""

    def __init__(self, db: sqlite_utils.Database, store: EventStore):
        self.db = db
        self.store = store
        self._calendar = AppliedCalendar(db)

    def get(self, person_id: str) -> Person | None:
        return get(self.db, person_id)

    def by_id_hash(self, id_hash: str) -> Person | None:
        return get_by_id_hash(self.db, id_hash)

    def by_badge(self, uid: str) -> Person | None:
        return get_by_badge(self.db, uid)

    def revoke(self, person_id: str, reason: str, at: datetime) -> Person:
        return revoke(self.db, self.store, person_id, reason, at)

    def calendar(self) -> CalendarConfig | None:
        return self._calendar.get()
