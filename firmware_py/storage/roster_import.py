"""The machinery under :func:`firmware_py.storage.roster.import_csv`: stream, stage, build beside, swap.

A roster file can be large (tens of megabytes) while the door runs on the same
database, so an import never holds the file whole and never holds the write
lock for long:

1. *Stage.* The file is read as a stream; every row is checked
   (:func:`~firmware_py.storage.roster_csv.check_csv`) and kept in a private
   temporary database attached to the connection (``ATTACH ''``). Writing there
   takes no lock on the door's database. Duplicates inside the file and clashes
   with persons not in the file are found by queries over the stage.
2. *Build beside.* ``persons_next`` and ``badges_next`` (same schema) get the
   old persons not in the file, the old rows of persons in the file updated
   from it (status and revocation kept), and the new persons: in short
   transactions of a few hundred rows each.
3. *Swap.* One transaction renames the old tables aside and the new ones into
   place and appends ``roster_changed``: a few milliseconds, whatever the size.
   If anyone changed the roster since step 1 began (a ``roster_changed`` or
   ``roster_applied`` event after the head seen then), the swap is not made and
   the build is done again. The old tables are then emptied in short batches
   and dropped.

All-or-nothing holds: until the swap the door's roster is untouched, and a
failure (refusal, full disk, crash) leaves at most ``*_next``/``*_old`` tables
that the next import clears.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import NamedTuple

import sqlite_utils

from firmware_py.errors import RosterError
from firmware_py.storage.db import transaction
from firmware_py.storage.roster_csv import STORED_COLUMNS, Problem, check_csv

log = logging.getLogger(__name__)

IMPORT_ATTEMPTS = 3  # builds tried when others keep changing the roster meanwhile
MAX_PROBLEMS = 1000  # problems listed in a refusal; the rest are counted
TARGET_HOLD_S = 0.02  # a build step holds the door's write lock about this long ...
# ... and then leaves it free as long again: the door's writes poll for the lock (SQLite's busy handler
# retries after 1, 2, 5, 10, 15, 20 ms) and must find it free within their 50 ms.
FIRST_BATCH = 500  # rows in the first build step; later steps are sized from its time
MAX_BATCH = 8 * FIRST_BATCH
FILE_COLUMNS = STORED_COLUMNS
STAGE = "roster_stage"
NEXT = {"persons": "persons_next", "badges": "badges_next"}
OLD = {"persons": "roster_old_persons", "badges": "roster_old_badges"}
NOT_UTF8 = ("the file is not UTF-8 (saved as GBK? In Excel use 'Save as' > 'CSV UTF-8 (comma delimited)')")


class _RosterMoved(Exception):
    """Someone changed the roster during the build: build again."""


class _Facts(NamedTuple):
    """What the import's warnings look at, read back from the stage."""

    person_id: str
    valid_until: date
    review_date: date | None
    commitment_date: date | None


@dataclass
class Outcome:
    added: list[str]
    updated: list[str]
    unchanged: list[str]
    still_revoked: list[str]


class _HashingReader(io.RawIOBase):
    """A binary file that adds what is read to a SHA-256 (the event records the file's digest)."""

    def __init__(self, f, digest):
        self._f, self._digest = f, digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._f.readinto(buffer)
        if n:
            self._digest.update(memoryview(buffer)[:n])
        return n


def _not_utf8_line(path: Path) -> int:
    """The line of the first byte that is not UTF-8, found by reading the file again in chunks."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    line = 1
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return line + chunk[: max(0, exc.start)].count(b"\n")
            line += chunk.count(b"\n")
    return line


@contextmanager
def _staging(db: sqlite_utils.Database) -> Iterator[_Stage]:
    conn = db.conn
    foreign_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    conn.execute(f"ATTACH DATABASE '' AS {STAGE}")
    # badges_next refers to "persons", which is the old table until the swap: checked by construction instead.
    conn.execute("PRAGMA foreign_keys = OFF")
    stage = _Stage(db)
    try:
        yield stage
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if not stage.swapped:
            stage.discard()
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA legacy_alter_table = OFF")
        conn.execute(f"PRAGMA foreign_keys = {foreign_keys}")
        conn.execute(f"DETACH DATABASE {STAGE}")


class _Stage:
    def __init__(self, db: sqlite_utils.Database):
        self.db = db
        self.conn = db.conn
        self.problems: list[Problem] = []
        self.more_problems = 0
        self.count = 0
        self.longest_hold_s = 0.0  # the longest build or swap transaction (for the benchmark)
        self.broken = False  # the build as rows were staged hit a duplicate: build_next() again if it must
        self.first_roster = False  # the roster was empty when the build began
        self.swapped = False
        self.batch = FIRST_BATCH  # rows staged, then applied in one step; sized from the steps' times
        self.today = date.min  # the site's date, set by load()
        self.conn.executescript(f"""
            CREATE TABLE {STAGE}.keys (line INTEGER PRIMARY KEY, person_id TEXT, id_hash TEXT, id_masked TEXT);
            CREATE TABLE {STAGE}.uids (line INTEGER, pos INTEGER, person_id TEXT, uid TEXT);
            CREATE TABLE {STAGE}.rows (line INTEGER PRIMARY KEY, {', '.join(FILE_COLUMNS)});
            CREATE INDEX {STAGE}.uids_line ON uids (line);
        """)

    # ------------------------------------------------------------------ 1. stage

    def load(self, path: Path, *, secret: bytes, schedule_groups: Iterable[str], today: date) -> str:
        """Check the file row by row into the stage; return its SHA-256 (hex)."""
        self.today = today
        digest = hashlib.sha256()
        keys, uids, rows = [], [], []
        try:
            raw = open(path, "rb")
        except OSError as exc:
            raise RosterError(f"{path}: cannot read the roster file: {exc.strerror or exc}") from None
        self._begin_build()
        try:
            with raw, io.TextIOWrapper(io.BufferedReader(_HashingReader(raw, digest)), encoding="utf-8-sig",
                                       newline="") as text:
                for line, row, key, problems in check_csv(text, secret=secret, schedule_groups=schedule_groups,
                                                          today=today):
                    if problems:
                        self._note(problems)
                    if key is not None:
                        keys.append((line, key.person_id, key.id_hash, key.id_masked))
                        uids += [(line, pos, key.person_id, uid) for pos, uid in enumerate(key.badge_uids)]
                    if row is not None:
                        rows.append((line, *row.stored()))
                    if len(keys) >= self.batch:
                        self._stage(keys, uids, rows)
                self._stage(keys, uids, rows)
        except UnicodeDecodeError:
            line = _not_utf8_line(path)
            raise RosterError(f"{path}: import refused, nothing was written: line {line}: {NOT_UTF8}") from None
        except OSError as exc:
            raise RosterError(f"{path}: cannot read the roster file: {exc.strerror or exc}") from None
        self.conn.executescript(f"""
            CREATE INDEX {STAGE}.keys_person ON keys (person_id);
            CREATE INDEX {STAGE}.keys_hash ON keys (id_hash);
            CREATE INDEX {STAGE}.uids_uid ON uids (uid);
            CREATE INDEX {STAGE}.rows_person ON rows (person_id);
        """)
        self.count = self.conn.execute(f"SELECT count(*) FROM {STAGE}.rows").fetchone()[0]
        return digest.hexdigest()

    def _note(self, problems: list[Problem]) -> None:
        room = MAX_PROBLEMS - len(self.problems)
        self.problems += problems[:max(0, room)]
        self.more_problems += max(0, len(problems) - max(0, room))

    def _stage(self, keys: list, uids: list, rows: list) -> None:
        c = self.conn
        c.execute("BEGIN")  # the stage only: the door's database is not locked
        c.executemany(f"INSERT INTO {STAGE}.keys VALUES (?, ?, ?, ?)", keys)
        c.executemany(f"INSERT INTO {STAGE}.uids VALUES (?, ?, ?, ?)", uids)
        c.executemany(f"INSERT INTO {STAGE}.rows VALUES ({', '.join('?' * (len(FILE_COLUMNS) + 1))})", rows)
        c.execute("COMMIT")
        if rows and not self.broken:
            t0 = time.perf_counter()
            self._apply(rows[0][0], rows[-1][0])
            spent = time.perf_counter() - t0
            self.batch = max(50, min(MAX_BATCH, int(len(keys) * TARGET_HOLD_S / max(spent, 1e-4))))
        keys.clear(), uids.clear(), rows.clear()

    def _empty_next_tables(self) -> None:
        """persons_next and badges_next made empty, shaped as the live tables (the old copies dropped)."""
        self.conn.execute("PRAGMA synchronous = NORMAL")  # made durable by the swap's FULL commit
        for table in (*NEXT.values(), *OLD.values()):
            self._clear(table)
        with self._step():
            for name, next_name in NEXT.items():
                sql = self.conn.execute("SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?",
                                        (name,)).fetchone()[0]
                self.conn.execute(re.sub(r'^CREATE TABLE\s+("?)' + name + r'\1', f"CREATE TABLE main.{next_name}", sql))
            # Built as rows arrive (cheaper than at the end, and no long step); the name changes each import.
            self.conn.execute(f"CREATE INDEX main.badges_person_{secrets.token_hex(4)} ON badges_next (person_id)")

    def _begin_build(self) -> None:
        """persons_next and badges_next as the roster is now; the file's rows are applied as they are staged."""
        self._empty_next_tables()
        self._batched("main.persons", "INSERT INTO main.persons_next SELECT * FROM main.persons "
                                      "WHERE rowid >= ? AND rowid < ?")
        self._batched("main.badges", "INSERT INTO main.badges_next SELECT * FROM main.badges "
                                     "WHERE rowid >= ? AND rowid < ?")
        # Into an empty roster the file's rows are only inserted (duplicates among them stop the build).
        self.first_roster = self.conn.execute("SELECT count(*) FROM main.persons_next").fetchone()[0] == 0

    def _apply(self, first_line: int, last_line: int) -> None:
        """Apply the file's rows on these lines to persons_next and badges_next, in one short step.

        Whoever holds an ID hash or badge that these rows bring gives it up first: a person later
        in the file gets theirs when their row comes; anyone else is a conflict that refuses the file.
        Parsing the next rows is the pause that lets the door write in between.
        """
        batch = f"(SELECT * FROM {STAGE}.rows WHERE line BETWEEN {first_line} AND {last_line})"
        assignments = ", ".join(f"{c} = r.{c}" for c in FILE_COLUMNS if c != "person_id")
        try:
            with self._step(pause=False):
                q = self.conn.execute
                if not self.first_roster:
                    q(f"UPDATE main.persons_next SET id_hash = NULL WHERE id_hash IN (SELECT id_hash FROM {batch})")
                    q(f"UPDATE main.persons_next SET {assignments} FROM {batch} AS r "
                      "WHERE persons_next.person_id = r.person_id")
                q(f"INSERT INTO main.persons_next ({', '.join(FILE_COLUMNS)}) SELECT {', '.join(FILE_COLUMNS)} "
                  f"FROM {batch} AS r WHERE NOT EXISTS (SELECT 1 FROM main.persons_next n "
                  "WHERE n.person_id = r.person_id)")
                uids = (f"(SELECT uid, person_id FROM {STAGE}.uids WHERE line BETWEEN {first_line} AND {last_line} "
                        f"AND line IN (SELECT line FROM {STAGE}.rows WHERE line BETWEEN {first_line} AND {last_line}))")
                if not self.first_roster:
                    q(f"DELETE FROM main.badges_next WHERE person_id IN (SELECT person_id FROM {batch})")
                    q(f"DELETE FROM main.badges_next WHERE uid IN (SELECT uid FROM {uids})")
                q(f"INSERT INTO main.badges_next (uid, person_id) SELECT uid, person_id FROM {uids}")
        except sqlite3.IntegrityError:
            # Duplicates inside the file: the checks refuse it; if they do not, build_next() starts afresh.
            self.broken = True

    def duplicates(self) -> list[Problem]:
        """Person ids, ID numbers and badges that appear twice in the file, naming the first line."""
        q = self.conn.execute
        out = [Problem(line, "person_id", f"{pid} is also on line {first}") for line, pid, first in q(f"""
            WITH d AS (SELECT person_id, min(line) AS first FROM {STAGE}.keys WHERE person_id != ''
                       GROUP BY person_id HAVING count(*) > 1)
            SELECT k.line, k.person_id, d.first FROM d JOIN {STAGE}.keys k ON k.person_id = d.person_id
            WHERE k.line > d.first ORDER BY k.line LIMIT ?""", (MAX_PROBLEMS,))]
        out += [Problem(line, "id_number", f"{masked} is also on line {first} ({pid})")
                for line, masked, first, pid in q(f"""
            WITH d AS (SELECT id_hash, min(line) AS first FROM {STAGE}.keys WHERE id_hash IS NOT NULL
                       GROUP BY id_hash HAVING count(*) > 1)
            SELECT k.line, k.id_masked, d.first, f.person_id FROM d
            JOIN {STAGE}.keys k ON k.id_hash = d.id_hash AND k.line > d.first JOIN {STAGE}.keys f ON f.line = d.first
            ORDER BY k.line LIMIT ?""", (MAX_PROBLEMS,))]
        out += [Problem(line, "badge_uids", f"{uid} is also on line {first} ({pid})")
                for line, uid, first, pid in q(f"""
            WITH d AS (SELECT uid, min(line) AS first FROM {STAGE}.uids GROUP BY uid HAVING count(*) > 1)
            SELECT u.line, u.uid, d.first, f.person_id FROM d
            JOIN {STAGE}.uids u ON u.uid = d.uid AND u.line > d.first JOIN {STAGE}.keys f ON f.line = d.first
            ORDER BY u.line, u.pos LIMIT ?""", (MAX_PROBLEMS,))]
        return out

    def conflicts(self) -> list[Problem]:
        """ID numbers and badges in the file that belong to a person not in the file."""
        q = self.conn.execute
        out = [Problem(line, "id_number", f"{masked} is already in the roster as {pid}"
                       + (" (revoked)" if status == "revoked" else ""))
               for line, masked, pid, status in q(f"""
            SELECT k.line, k.id_masked, p.person_id, p.status FROM {STAGE}.keys k
            JOIN main.persons p ON p.id_hash = k.id_hash
            WHERE k.id_hash IS NOT NULL AND p.person_id != k.person_id
              AND p.person_id NOT IN (SELECT person_id FROM {STAGE}.keys)
            ORDER BY k.line LIMIT ?""", (MAX_PROBLEMS,))]
        out += [Problem(line, "badge_uids", f"{uid} already belongs to {pid}") for line, uid, pid in q(f"""
            SELECT u.line, u.uid, b.person_id FROM {STAGE}.uids u JOIN main.badges b ON b.uid = u.uid
            WHERE b.person_id != u.person_id AND b.person_id NOT IN (SELECT person_id FROM {STAGE}.keys)
            ORDER BY u.line, u.pos LIMIT ?""", (MAX_PROBLEMS,))]
        return out

    def compare(self) -> Outcome:
        """Which persons the file adds, updates or leaves as they were (facts and badges)."""
        same = " AND ".join(f"r.{c} IS p.{c}" for c in FILE_COLUMNS)
        outcome = Outcome([], [], [], [])
        if not self.conn.execute("SELECT 1 FROM main.persons LIMIT 1").fetchone():  # a first roster: all new
            outcome.added = [pid for pid, in self.conn.execute(f"SELECT person_id FROM {STAGE}.rows ORDER BY line")]
            return outcome
        for pid, existed, status, same_facts, new_badges, old_badges in self.conn.execute(f"""
                SELECT r.person_id, p.person_id IS NOT NULL, p.status, {same},
                       (SELECT group_concat(uid, ' ') FROM (SELECT uid FROM {STAGE}.uids u
                                                          WHERE u.line = r.line ORDER BY uid)),
                       (SELECT group_concat(uid, ' ') FROM (SELECT uid FROM main.badges b
                                                          WHERE b.person_id = r.person_id ORDER BY uid))
                FROM {STAGE}.rows r LEFT JOIN main.persons p ON p.person_id = r.person_id ORDER BY r.line"""):
            if not existed:
                outcome.added.append(pid)
                continue
            (outcome.unchanged if same_facts and new_badges == old_badges else outcome.updated).append(pid)
            if status == "revoked":
                outcome.still_revoked.append(pid)
        outcome.still_revoked.sort()
        return outcome

    def facts(self) -> Iterator[_Facts]:
        """The rows the import's warnings are about (ended permit, no review, no commitment), in file order."""
        day = lambda text: date.fromisoformat(text) if text else None  # noqa: E731
        for pid, until, review, commitment in self.conn.execute(
                f"SELECT person_id, valid_until, review_date, commitment_date FROM {STAGE}.rows "
                "WHERE valid_until < ? OR review_date IS NULL OR commitment_date IS NULL ORDER BY line",
                (self.today.isoformat(),)):
            yield _Facts(pid, day(until), day(review), day(commitment))

    # ------------------------------------------------------------------ 2. build beside

    def build_next(self) -> None:
        """persons_next and badges_next built afresh from the stage, in short transactions.

        Used when the build made while staging cannot be used: another writer changed the
        roster meanwhile, or the staged rows had duplicates that stopped it.
        """
        self.broken = False
        self._empty_next_tables()
        in_file = f"(SELECT person_id FROM {STAGE}.rows)"
        # The old persons, verbatim: their ID hashes are unique among themselves.
        self._batched("main.persons", "INSERT INTO main.persons_next SELECT * FROM main.persons "
                                      "WHERE rowid >= ? AND rowid < ?")
        # Persons in the file lose their old ID hash first, so two persons swapping one never clash midway.
        self._batched(f"{STAGE}.rows", f"UPDATE main.persons_next SET id_hash = NULL WHERE person_id IN "
                                        f"(SELECT person_id FROM {STAGE}.rows WHERE rowid >= ? AND rowid < ?)")
        assignments = ", ".join(f"{c} = r.{c}" for c in FILE_COLUMNS if c != "person_id")
        self._batched(f"{STAGE}.rows", f"UPDATE main.persons_next SET {assignments} FROM "
                                        f"(SELECT * FROM {STAGE}.rows WHERE rowid >= ? AND rowid < ?) AS r "
                                        "WHERE persons_next.person_id = r.person_id")
        self._batched(f"{STAGE}.rows", f"INSERT INTO main.persons_next ({', '.join(FILE_COLUMNS)}) "
                                        f"SELECT {', '.join(FILE_COLUMNS)} FROM {STAGE}.rows r "
                                        "WHERE r.rowid >= ? AND r.rowid < ? AND NOT EXISTS "
                                        "(SELECT 1 FROM main.persons_next n WHERE n.person_id = r.person_id)")
        self._batched("main.badges", "INSERT INTO main.badges_next SELECT * FROM main.badges "
                                     f"WHERE rowid >= ? AND rowid < ? AND person_id NOT IN {in_file}")
        self._batched(f"{STAGE}.uids", f"INSERT INTO main.badges_next (uid, person_id) SELECT uid, person_id "
                                        f"FROM {STAGE}.uids WHERE rowid >= ? AND rowid < ?")

    @contextmanager
    def _step(self, pause: bool = True):
        """One short write transaction on the door's database, then as long a pause (unless other work follows)."""
        t0 = time.perf_counter()
        with transaction(self.db):
            yield
        held = time.perf_counter() - t0
        self.longest_hold_s = max(self.longest_hold_s, held)
        if pause:
            time.sleep(min(held, 2 * TARGET_HOLD_S))

    def _batched(self, source: str, sql: str) -> None:
        """Run ``sql`` over ``source``'s rowids in ranges sized to hold the lock about TARGET_HOLD_S each."""
        lo, hi = self.conn.execute(f"SELECT min(rowid), max(rowid) FROM {source}").fetchone()
        if lo is None:
            return
        size = FIRST_BATCH
        while lo <= hi:
            t0 = time.perf_counter()
            with self._step():
                self.conn.execute(sql, (lo, lo + size))
            lo += size
            spent = time.perf_counter() - t0
            size = max(50, min(4 * FIRST_BATCH, int(size * TARGET_HOLD_S / max(spent, 1e-4))))

    def _clear(self, table: str) -> None:
        """Empty a leftover table in short steps, then drop it (dropping a full one would hold the lock long)."""
        if not self.conn.execute("SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?",
                                 (table,)).fetchone():
            return
        while True:
            with self._step():
                n = self.conn.execute(f"DELETE FROM main.{table} WHERE rowid IN "
                                      f"(SELECT rowid FROM main.{table} LIMIT {FIRST_BATCH})").rowcount
            if n == 0:
                break
        with self._step():
            self.conn.execute(f"DROP TABLE main.{table}")

    def discard(self) -> None:
        """A refused or failed import: the half-built tables go (in short steps); a failure here is left
        for the next import to clear."""
        try:
            for table in NEXT.values():
                self._clear(table)
        except Exception as exc:  # the refusal or failure being raised matters more
            log.warning("roster import: could not clear %s: %s", ", ".join(NEXT.values()), exc)

    # ------------------------------------------------------------------ 3. swap

    def swap(self, start_seq: int, append_event: Callable[[], dict]) -> dict:
        """Put the new roster in place and record it, in one short transaction; then clear the old tables."""
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("PRAGMA legacy_alter_table = ON")  # renaming persons aside must not re-point badges_next
        try:
            with self._step():
                moved = self.conn.execute("SELECT 1 FROM events WHERE seq > ? AND type IN ('roster_changed', "
                                          "'roster_applied') LIMIT 1", (start_seq,)).fetchone()
                if moved:
                    raise _RosterMoved
                for name in ("badges", "persons"):
                    self.conn.execute(f"ALTER TABLE main.{name} RENAME TO {OLD[name]}")
                for name in ("persons", "badges"):
                    self.conn.execute(f"ALTER TABLE main.{NEXT[name]} RENAME TO {name}")
                event = append_event()
            self.swapped = True
        finally:
            self.conn.execute("PRAGMA legacy_alter_table = OFF")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        for table in OLD.values():
            self._clear(table)
        self.conn.execute("PRAGMA synchronous = FULL")
        return event
