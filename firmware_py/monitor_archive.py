"""The supervisor's archive: every event the monitor received, kept in its own SQLite file.

This is not the door's database (:mod:`firmware_py.db`): it holds the events of many
doors, keyed by ``(site, door, seq)``, exactly as they arrived (the payload bytes are
kept next to the parsed columns), plus what the monitor learnt about each door:
how far its sequence is complete, the gaps it saw and when they closed, the
duplicates it dropped and every anomaly (bad hash, broken chain, conflicting copy).

Durability is the door's: WAL and ``synchronous=FULL``, and every event commits
before the monitor acknowledges it to the broker, so an event the broker handed
over is either archived or will be handed over again.

Sequence bookkeeping per door (all in the same transaction as the event):
``baseline`` the seq before the first one the archive wants (0: from the very first),
``contiguous`` the highest seq N such that every seq in (baseline, N] is archived,
``expected`` the highest seq known to exist (received, or announced by the door's status).
A door has a hole exactly when ``contiguous < expected``.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Iterator

import sqlite_utils

from .errors import StoreError
from .events import GENESIS_HASH, event_hash
from .register import COLUMNS, register_rows, write_register

DEFAULT_ARCHIVE = "monitor-archive.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    site        TEXT NOT NULL,
    door        TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    ts          TEXT NOT NULL,
    local_date  TEXT NOT NULL,     -- the date part of ts, i.e. the date at the door's offset
    category    TEXT NOT NULL,
    type        TEXT NOT NULL,
    hash        TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash_ok     INTEGER NOT NULL,  -- 1 when hash is the sha-256 of the event without it
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,     -- the MQTT payload exactly as received
    received_at TEXT NOT NULL,
    PRIMARY KEY (site, door, seq)
);
CREATE INDEX IF NOT EXISTS events_date ON events (local_date);
CREATE TABLE IF NOT EXISTS doors (
    site         TEXT NOT NULL,
    door         TEXT NOT NULL,
    baseline     INTEGER NOT NULL,
    contiguous   INTEGER NOT NULL,
    expected     INTEGER NOT NULL,
    duplicates   INTEGER NOT NULL DEFAULT 0,
    status       TEXT,               -- the last retained status (JSON)
    status_at    TEXT,
    occupancy    TEXT,               -- the last retained occupancy (JSON)
    occupancy_at TEXT,
    PRIMARY KEY (site, door)
);
CREATE TABLE IF NOT EXISTS gaps (
    site          TEXT NOT NULL,
    door          TEXT NOT NULL,
    first_missing INTEGER NOT NULL,
    last_missing  INTEGER NOT NULL,
    detected_at   TEXT NOT NULL,
    closed_at     TEXT,
    replay_requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (site, door, first_missing)
);
CREATE TABLE IF NOT EXISTS anomalies (
    id      INTEGER PRIMARY KEY,
    site    TEXT NOT NULL,
    door    TEXT NOT NULL,
    seq     INTEGER,
    kind    TEXT NOT NULL,   -- bad_hash | broken_link | conflicting_copy | wrong_topic | malformed | full_id_number
    detail  TEXT NOT NULL,
    at      TEXT NOT NULL
);
"""

# Seventeen digits and a check character: a full resident ID number, never to be shown.
FULL_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])")


def redact(text: str) -> str:
    """``text`` with anything shaped like a full resident ID number masked as the doors mask it."""
    return FULL_ID_NUMBER.sub(lambda m: m.group()[:6] + "*" * 8 + m.group()[14:], text)


@dataclass(frozen=True)
class Gap:
    site: str
    door: str
    first_missing: int
    last_missing: int
    detected_at: str
    closed_at: str | None
    replay_requests: int

    @property
    def open(self) -> bool:
        return self.closed_at is None


@dataclass(frozen=True)
class Anomaly:
    site: str
    door: str
    seq: int | None
    kind: str
    detail: str
    at: str


@dataclass(frozen=True)
class DoorState:
    site: str
    door: str
    baseline: int
    contiguous: int
    expected: int
    duplicates: int
    status: dict | None
    occupancy: object | None

    @property
    def has_hole(self) -> bool:
        return self.contiguous < self.expected


@dataclass
class Stored:
    """What archiving one event found."""

    duplicate: bool = False
    anomalies: list[Anomaly] = field(default_factory=list)
    new_gap: Gap | None = None
    closed_gaps: list[Gap] = field(default_factory=list)
    contiguous: int = 0
    expected: int = 0


class Archive:
    """The monitor's SQLite archive. Thread-safe: one lock serialises every use of the connection."""

    def __init__(self, path: str | Path = DEFAULT_ARCHIVE):
        self.path = Path(path)
        if str(path) == ":memory:":
            raise StoreError("the monitor archive must be a file on disk, not :memory:")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=10, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the monitor archive: {exc}") from None
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    def _tx(self):
        return _Transaction(self.db.conn, self._lock)

    # ------------------------------------------------------------------ writing
    def _door_row(self, site: str, door: str, first_seen_seq: int, backfill: bool) -> tuple[int, int, int]:
        row = self.db.execute("SELECT baseline, contiguous, expected FROM doors WHERE site=? AND door=?",
                              (site, door)).fetchone()
        if row:
            return row
        baseline = 0 if backfill else max(first_seen_seq, 0)
        self.db.execute("INSERT INTO doors (site, door, baseline, contiguous, expected) VALUES (?, ?, ?, ?, ?)",
                        (site, door, baseline, baseline, baseline))
        return baseline, baseline, baseline

    def _anomaly(self, site, door, seq, kind, detail, at) -> Anomaly:
        self.db.execute("INSERT INTO anomalies (site, door, seq, kind, detail, at) VALUES (?, ?, ?, ?, ?, ?)",
                        (site, door, seq, kind, detail, at))
        return Anomaly(site, door, seq, kind, detail, at)

    def note_anomaly(self, site: str, door: str, seq: int | None, kind: str, detail: str, at: str) -> Anomaly:
        with self._tx():
            return self._anomaly(site, door, seq, kind, detail, at)

    def store_event(self, site: str, door: str, topic: str, payload: bytes, event: dict, received_at: str,
                    *, backfill: bool = True) -> Stored:
        """Archive one event (``INSERT OR IGNORE`` on (site, door, seq)) and update the door's sequence.

        ``event`` is the parsed payload; it must have an int ``seq`` and a ``ts`` with offset.
        """
        seq = event["seq"]
        ts = event["ts"]
        local_date = datetime.fromisoformat(ts).date().isoformat()
        h = str(event.get("hash", ""))
        prev = str(event.get("prev_hash", ""))
        hash_ok = h == event_hash({k: v for k, v in event.items() if k != "hash"})
        result = Stored()
        with self._tx():
            baseline, contiguous, expected = self._door_row(site, door, seq - 1, backfill)
            cur = self.db.execute(
                "INSERT OR IGNORE INTO events (site, door, seq, ts, local_date, category, type, hash, prev_hash,"
                " hash_ok, topic, payload, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (site, door, seq, ts, local_date, str(event.get("category", "")), str(event.get("type", "")),
                 h, prev, int(hash_ok), topic, payload, received_at))
            if cur.rowcount == 0:
                result.duplicate = True
                self.db.execute("UPDATE doors SET duplicates = duplicates + 1 WHERE site=? AND door=?", (site, door))
                stored_hash = self.db.execute("SELECT hash FROM events WHERE site=? AND door=? AND seq=?",
                                              (site, door, seq)).fetchone()[0]
                if stored_hash != h:
                    result.anomalies.append(self._anomaly(
                        site, door, seq, "conflicting_copy",
                        f"a second copy of #{seq} differs from the archived one (hash {h[:12]}… vs {stored_hash[:12]}…)",
                        received_at))
                result.contiguous, result.expected = contiguous, expected
                return result
            if not hash_ok:
                result.anomalies.append(self._anomaly(
                    site, door, seq, "bad_hash", f"#{seq}: hash {h[:12]}… is not the sha-256 of the event", received_at))
            result.anomalies.extend(self._check_links(site, door, seq, h, prev, received_at))
            # sequence: a new hole, holes filled, the contiguous watermark
            if seq > expected + 1 and seq > baseline + 1:
                first = max(expected, baseline) + 1
                self.db.execute("INSERT OR IGNORE INTO gaps (site, door, first_missing, last_missing, detected_at)"
                                " VALUES (?, ?, ?, ?, ?)", (site, door, first, seq - 1, received_at))
                result.new_gap = Gap(site, door, first, seq - 1, received_at, None, 0)
            expected = max(expected, seq)
            if seq == contiguous + 1:
                for (s,) in self.db.execute("SELECT seq FROM events WHERE site=? AND door=? AND seq > ? ORDER BY seq",
                                            (site, door, contiguous)):
                    if s != contiguous + 1:
                        break
                    contiguous = s
            result.closed_gaps = self._close_filled_gaps(site, door, seq, received_at)
            self.db.execute("UPDATE doors SET contiguous=?, expected=? WHERE site=? AND door=?",
                            (contiguous, expected, site, door))
            result.contiguous, result.expected = contiguous, expected
        return result

    def _check_links(self, site, door, seq, h, prev, at) -> list[Anomaly]:
        found = []
        if seq == 1:
            if prev != GENESIS_HASH:
                found.append(self._anomaly(site, door, seq, "broken_link", "#1: prev_hash is not the genesis hash", at))
        else:
            row = self.db.execute("SELECT hash FROM events WHERE site=? AND door=? AND seq=?",
                                  (site, door, seq - 1)).fetchone()
            if row and row[0] != prev:
                found.append(self._anomaly(site, door, seq, "broken_link",
                                           f"#{seq}: prev_hash does not match the hash of the archived #{seq - 1}", at))
        row = self.db.execute("SELECT prev_hash FROM events WHERE site=? AND door=? AND seq=?",
                              (site, door, seq + 1)).fetchone()
        if row and row[0] != h:
            found.append(self._anomaly(site, door, seq + 1, "broken_link",
                                       f"#{seq + 1}: prev_hash does not match the hash of #{seq}", at))
        return found

    def _close_filled_gaps(self, site, door, seq, at) -> list[Gap]:
        closed = []
        rows = self.db.execute(
            "SELECT first_missing, last_missing, detected_at, replay_requests FROM gaps WHERE site=? AND door=?"
            " AND closed_at IS NULL AND ? BETWEEN first_missing AND last_missing", (site, door, seq)).fetchall()
        for first, last, detected, requests in rows:
            (present,) = self.db.execute("SELECT count(*) FROM events WHERE site=? AND door=? AND seq BETWEEN ? AND ?",
                                         (site, door, first, last)).fetchone()
            if present == last - first + 1:
                self.db.execute("UPDATE gaps SET closed_at=? WHERE site=? AND door=? AND first_missing=?",
                                (at, site, door, first))
                closed.append(Gap(site, door, first, last, detected, at, requests))
        return closed

    def note_expected(self, site: str, door: str, last_seq: int, at: str, *, backfill: bool = True) -> Gap | None:
        """The door says it has stored up to ``last_seq``: record the missing tail as a gap, if any."""
        with self._tx():
            baseline, contiguous, expected = self._door_row(site, door, last_seq, backfill)
            if last_seq <= max(expected, baseline):
                return None
            first = max(expected, baseline) + 1
            self.db.execute("INSERT OR IGNORE INTO gaps (site, door, first_missing, last_missing, detected_at)"
                            " VALUES (?, ?, ?, ?, ?)", (site, door, first, last_seq, at))
            self.db.execute("UPDATE doors SET expected=? WHERE site=? AND door=?", (last_seq, site, door))
            return Gap(site, door, first, last_seq, at, None, 0)

    def note_replay_request(self, site: str, door: str, from_seq: int) -> None:
        with self._tx():
            self.db.execute("UPDATE gaps SET replay_requests = replay_requests + 1 WHERE site=? AND door=?"
                            " AND closed_at IS NULL AND last_missing >= ?", (site, door, from_seq))

    def store_status(self, site: str, door: str, kind: str, value: object, at: str, *, backfill: bool = True) -> None:
        """Keep the last retained ``status`` or ``occupancy`` of a door."""
        if kind not in ("status", "occupancy"):
            raise ValueError(kind)
        with self._tx():
            last_seq = value.get("last_seq") if kind == "status" and isinstance(value, dict) else None
            self._door_row(site, door, last_seq if isinstance(last_seq, int) else 0, backfill)
            self.db.execute(f"UPDATE doors SET {kind}=?, {kind}_at=? WHERE site=? AND door=?",
                            (json.dumps(value, ensure_ascii=False), at, site, door))

    # ------------------------------------------------------------------ reading
    def events(self, site: str, door: str, from_seq: int = 1, to_seq: int | None = None) -> list[dict]:
        """The archived events of one door in seq order, parsed from the payloads as received."""
        sql = "SELECT payload FROM events WHERE site=? AND door=? AND seq >= ?"
        params: list = [site, door, from_seq]
        if to_seq is not None:
            sql += " AND seq <= ?"
            params.append(to_seq)
        with self._lock:
            rows = self.db.execute(sql + " ORDER BY seq", params).fetchall()
        return [json.loads(p) for (p,) in rows]

    def payload(self, site: str, door: str, seq: int) -> bytes | None:
        with self._lock:
            row = self.db.execute("SELECT payload FROM events WHERE site=? AND door=? AND seq=?",
                                  (site, door, seq)).fetchone()
        return bytes(row[0]) if row else None

    def has(self, site: str, door: str, seq: int) -> bool:
        with self._lock:
            return self.db.execute("SELECT 1 FROM events WHERE site=? AND door=? AND seq=?",
                                   (site, door, seq)).fetchone() is not None

    def count(self, site: str | None = None, door: str | None = None) -> int:
        where, params = _scope(site, door)
        with self._lock:
            return self.db.execute(f"SELECT count(*) FROM events{where}", params).fetchone()[0]

    def door_state(self, site: str, door: str) -> DoorState | None:
        states = self.doors(site, door)
        return states[0] if states else None

    def doors(self, site: str | None = None, door: str | None = None) -> list[DoorState]:
        where, params = _scope(site, door)
        with self._lock:
            rows = self.db.execute("SELECT site, door, baseline, contiguous, expected, duplicates, status, occupancy"
                                   f" FROM doors{where} ORDER BY site, door", params).fetchall()
        return [DoorState(s, d, b, c, e, n, json.loads(st) if st else None, json.loads(oc) if oc else None)
                for s, d, b, c, e, n, st, oc in rows]

    def last_contiguous(self, site: str, door: str) -> int:
        state = self.door_state(site, door)
        return state.contiguous if state else 0

    def duplicates(self, site: str | None = None, door: str | None = None) -> int:
        where, params = _scope(site, door)
        with self._lock:
            return self.db.execute(f"SELECT coalesce(sum(duplicates), 0) FROM doors{where}", params).fetchone()[0]

    def gaps(self, site: str | None = None, door: str | None = None, *, open_only: bool = False) -> list[Gap]:
        where, params = _scope(site, door)
        if open_only:
            where += (" AND" if where else " WHERE") + " closed_at IS NULL"
        with self._lock:
            rows = self.db.execute("SELECT site, door, first_missing, last_missing, detected_at, closed_at,"
                                   f" replay_requests FROM gaps{where} ORDER BY site, door, first_missing",
                                   params).fetchall()
        return [Gap(*r) for r in rows]

    def anomalies(self, site: str | None = None, door: str | None = None, kind: str | None = None) -> list[Anomaly]:
        where, params = _scope(site, door)
        if kind:
            where += (" AND" if where else " WHERE") + " kind=?"
            params.append(kind)
        with self._lock:
            rows = self.db.execute(f"SELECT site, door, seq, kind, detail, at FROM anomalies{where} ORDER BY id",
                                   params).fetchall()
        return [Anomaly(*r) for r in rows]

    def events_on(self, day: date, site: str | None = None, door: str | None = None) -> Iterator[tuple[str, str, dict]]:
        """``(site, door, event)`` for every event whose ``ts`` falls on ``day`` at the door's own offset,
        in time order."""
        where, params = _scope(site, door)
        where += (" AND" if where else " WHERE") + " local_date=?"
        params.append(day.isoformat())
        with self._lock:
            rows = self.db.execute(f"SELECT site, door, payload FROM events{where}", params).fetchall()
        items = [(s, d, json.loads(p)) for s, d, p in rows]
        items.sort(key=lambda i: (datetime.fromisoformat(i[2]["ts"]), i[0], i[1], i[2]["seq"]))
        return iter(items)


def export_register(archive: Archive, day: date, out: IO[str], *, site: str | None = None,
                    door: str | None = None, fmt: str = "csv") -> int:
    """Write ``day``'s entry register from the archive; return the number of rows.

    For one door (site and door given) the format is exactly ``accessctl log export``'s, so the
    central copy can be compared with the door's own; otherwise ``site`` and ``door`` columns lead.
    Only masked credentials are ever in an event; anything shaped like a full ID number is masked anyway.
    """
    items = list(archive.events_on(day, site, door))
    if site and door:
        rows = (_redacted(r) for r in register_rows(e for _, _, e in items))
        return write_register(rows, out, fmt)
    rows = ({"site": s, "door": d, **_redacted(r)} for s, d, e in items for r in register_rows([e]))
    return write_register(rows, out, fmt, ("site", "door", *COLUMNS))


def _redacted(row: dict) -> dict:
    return {k: redact(v) if isinstance(v, str) else v for k, v in row.items()}


def _scope(site: str | None, door: str | None) -> tuple[str, list]:
    clauses, params = [], []
    if site:
        clauses.append("site=?")
        params.append(site)
    if door:
        clauses.append("door=?")
        params.append(door)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` under the archive's lock; rolled back on any exception."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock):
        self.conn, self.lock = conn, lock

    def __enter__(self):
        self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, exc_type, exc, tb):
        try:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()
        return False
