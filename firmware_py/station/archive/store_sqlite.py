"""The station's web side on the SQLite archive file: every SQL statement of :class:`.storage.StationStore`.

The monitor's :class:`~firmware_py.station.archive.sqlite.Archive` writes events on its own connection;
this second connection (WAL: readers never block the writer) serves the web app. The station's
own tables live in the same file; acknowledgements and the audit trail are never changed or
deleted (triggers refuse it). ``rowid`` is the order in which the archive received the events:
the live stream's cursor.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from firmware_py.errors import StoreError
from firmware_py.station.archive.store import (
    PAYLOAD_START,
    AccountRow,
    AckOutcome,
    EventSearch,
    PublishedRoster,
    StationStore,
)

ACCOUNTS = """
CREATE TABLE IF NOT EXISTS accounts (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash TEXT NOT NULL,      -- scrypt$N$r$p$salt$hash (hex)
    created_at    TEXT NOT NULL,
    last_login    TEXT,
    disabled      INTEGER NOT NULL DEFAULT 0  -- 1: may not log in (its sessions were ended)
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash  TEXT PRIMARY KEY,     -- sha-256 of the cookie's token
    name        TEXT NOT NULL REFERENCES accounts (name),
    csrf        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    last_seen   TEXT NOT NULL
);
"""

AUDIT = """
CREATE TABLE IF NOT EXISTS audit (
    id       INTEGER PRIMARY KEY,
    at       TEXT NOT NULL,
    who      TEXT NOT NULL,     -- account name, or '-' before login
    address  TEXT NOT NULL,     -- the client's address
    action   TEXT NOT NULL,     -- e.g. 'POST /doors/hn-archive-1/scan-room/lockdown'
    detail   TEXT NOT NULL,     -- JSON: the request's arguments (never a password)
    result   TEXT NOT NULL      -- e.g. '303 sent', '403 csrf', '429 throttled'
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is never changed'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is never deleted'); END;
"""

# The roster bundle the station last published per site (rows masked and hashed, compressed JSON lines).
PUBLISHED_ROSTER = """
CREATE TABLE IF NOT EXISTS published_roster (
    site          TEXT PRIMARY KEY,
    version       INTEGER NOT NULL,
    published_at  TEXT NOT NULL,
    published_by  TEXT NOT NULL,
    count         INTEGER NOT NULL,
    chunks        INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    rows          BLOB NOT NULL
);
"""

_ACK_TABLE = """
CREATE TABLE IF NOT EXISTS acknowledgements (
    site     TEXT NOT NULL,
    door     TEXT NOT NULL,
    epoch    INTEGER NOT NULL,  -- the door's chain epoch (archive_schema)
    seq      INTEGER NOT NULL,
    by       TEXT NOT NULL,
    at       TEXT NOT NULL,
    comment  TEXT NOT NULL,
    PRIMARY KEY (site, door, epoch, seq)
)"""
ACKNOWLEDGEMENTS = _ACK_TABLE + """;
CREATE TRIGGER IF NOT EXISTS acknowledgements_no_update BEFORE UPDATE ON acknowledgements
    BEGIN SELECT RAISE(ABORT, 'an acknowledgement is never changed'); END;
CREATE TRIGGER IF NOT EXISTS acknowledgements_no_delete BEFORE DELETE ON acknowledgements
    BEGIN SELECT RAISE(ABORT, 'an acknowledgement is never deleted'); END;
"""

# Alarms their door closed with a state event (a fault recovered, a tamper cleared, the link up again,
# the held door closed), and the state events themselves: kept like acknowledgements, never changed
# or deleted. ``answer_position`` is how far (rowid) the events were read for them.
CLOSURES = """
CREATE TABLE IF NOT EXISTS alarm_closures (
    site       TEXT NOT NULL,
    door       TEXT NOT NULL,
    epoch      INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    closed_by  INTEGER NOT NULL,  -- the seq (same door and epoch) of the state event that closed it
    at         TEXT NOT NULL,
    PRIMARY KEY (site, door, epoch, seq)
);
CREATE TRIGGER IF NOT EXISTS alarm_closures_no_update BEFORE UPDATE ON alarm_closures
    BEGIN SELECT RAISE(ABORT, 'a closure is never changed'); END;
CREATE TRIGGER IF NOT EXISTS alarm_closures_no_delete BEFORE DELETE ON alarm_closures
    BEGIN SELECT RAISE(ABORT, 'a closure is never deleted'); END;
CREATE TABLE IF NOT EXISTS answer_position (
    one    INTEGER PRIMARY KEY CHECK (one = 1),
    after  INTEGER NOT NULL
);
"""

_OPEN = (" NOT EXISTS (SELECT 1 FROM acknowledgements a WHERE a.site=e.site AND a.door=e.door AND a.epoch=e.epoch"
         " AND a.seq=e.seq) AND NOT EXISTS (SELECT 1 FROM alarm_closures c WHERE c.site=e.site AND c.door=e.door"
         " AND c.epoch=e.epoch AND c.seq=e.seq)")

# Indexes the page's reads need on the archive's table (made once the archive exists): the register
# of one door and one day reads (site, door, local_date) without scanning the door's other days;
# each door's conflicting copies are read newest first (the admin's page, the tiles' counts).
INDEXES = """
CREATE INDEX IF NOT EXISTS station_events_category ON events (category);
CREATE INDEX IF NOT EXISTS station_events_door_date ON events (site, door, local_date);
CREATE INDEX IF NOT EXISTS station_conflicts_door ON conflicts (site, door, id);
CREATE INDEX IF NOT EXISTS station_events_instant ON events (julianday(ts));
CREATE INDEX IF NOT EXISTS station_events_door_instant ON events (door, site, julianday(ts));
CREATE INDEX IF NOT EXISTS station_events_type_instant ON events (type, julianday(ts));
"""

# The search's order: the instant of ts (SQLite reads its offset) as a Julian day number, the same
# expression as the indexes above so they serve the order and the window.
INSTANT = "julianday(ts)"
_PAYLOAD = "CAST(payload AS TEXT)"
# The person's id, name and organisation in lower case (NULL for a payload that is not JSON: that
# door's row is found by no text, and the search goes on).
PERSON_TEXT = (f"CASE WHEN json_valid({_PAYLOAD}) THEN lower("
               + " || char(31) || ".join(f"coalesce(json_extract({_PAYLOAD}, '$.person.{f}'), '')"
                                         for f in ("person_id", "name", "organisation")) + ") END")
PERSON_ID = f"CASE WHEN json_valid({_PAYLOAD}) THEN json_extract({_PAYLOAD}, '$.person.person_id') END"
UNIX_EPOCH_JD_MS = 210866760000000  # 1970-01-01T00:00Z as SQLite's Julian day in milliseconds


class SqliteStationStore(StationStore):
    """One SQLite connection shared by the web app's threads; a lock serialises its use."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=10, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA busy_timeout=10000")
            self.conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: a search reads many pages of payloads
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the station archive: {exc}") from None
        self.lock = threading.RLock()
        self._chains = None

    @classmethod
    def open(cls, path: str | Path) -> SqliteStationStore:
        """The store with the station's tables created (accounts, sessions, audit, acknowledgements)."""
        store = cls(path)
        store.script(ACCOUNTS)
        store.script(AUDIT)
        store.script(CLOSURES)
        store.script(PUBLISHED_ROSTER)
        with store.lock:
            _prepare_accounts(store.conn)
        with store.lock:
            _prepare_acknowledgements(store.conn)
        return store

    # ---------------------------------------------------------------- plumbing
    def query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple | list = ()) -> tuple | None:
        with self.lock:
            return self.conn.execute(sql, params).fetchone()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on an exception) under the lock."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def script(self, sql: str) -> None:
        with self.lock:
            self.conn.executescript(sql)

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    # ---------------------------------------------------------------- accounts and sessions
    def add_account(self, name: str, role: str, password_hash: str, at: datetime) -> bool:
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM accounts WHERE name=?", (name,)).fetchone():
                return False
            conn.execute("INSERT INTO accounts (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                         (name, role, password_hash, at.isoformat(timespec="seconds")))
        return True

    def accounts(self) -> list[tuple[str, str, str]]:
        return [tuple(r) for r in self.query("SELECT name, role, created_at FROM accounts ORDER BY name")]

    def account(self, name: str) -> tuple[str, str] | None:
        row = self.one("SELECT role, password_hash FROM accounts WHERE name=? AND disabled=0", (name,))
        return tuple(row) if row else None

    def account_rows(self) -> list[AccountRow]:
        return [AccountRow(n, r, c, last, bool(off)) for n, r, c, last, off in self.query(
            "SELECT name, role, created_at, last_login, disabled FROM accounts ORDER BY name")]

    def change_account(self, name: str, *, role: str | None = None, disabled: bool | None = None,
                       password_hash: str | None = None) -> str:
        with self.transaction() as conn:
            row = conn.execute("SELECT role, disabled FROM accounts WHERE name=?", (name,)).fetchone()
            if row is None:
                return "no_such_account"
            new_role, new_disabled = role or row[0], bool(row[1]) if disabled is None else disabled
            if row[0] == "admin" and not row[1] and (new_role != "admin" or new_disabled):
                others = conn.execute("SELECT count(*) FROM accounts WHERE role='admin' AND disabled=0 AND name<>?",
                                      (name,)).fetchone()[0]
                if not others:
                    return "last_admin"
            conn.execute("UPDATE accounts SET role=?, disabled=?, password_hash=coalesce(?, password_hash)"
                         " WHERE name=?", (new_role, int(new_disabled), password_hash, name))
            if new_disabled or password_hash:
                conn.execute("DELETE FROM sessions WHERE name=?", (name,))
        return "ok"

    def note_login(self, name: str, at: datetime) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE accounts SET last_login=? WHERE name=?", (at.isoformat(timespec="seconds"), name))

    def add_session(self, token_hash: str, name: str, csrf: str, at: datetime) -> str:
        now = at.isoformat(timespec="seconds")
        with self.transaction() as conn:
            role = conn.execute("SELECT role FROM accounts WHERE name=?", (name,)).fetchone()[0]
            conn.execute("INSERT INTO sessions (token_hash, name, csrf, created_at, last_seen) VALUES (?, ?, ?, ?, ?)",
                         (token_hash, name, csrf, now, now))
        return role

    def session(self, token_hash: str) -> tuple[str, str, str, str] | None:
        row = self.one("SELECT s.name, a.role, s.csrf, s.last_seen FROM sessions s JOIN accounts a"
                       " ON a.name = s.name WHERE s.token_hash=? AND a.disabled=0", (token_hash,))
        return tuple(row) if row else None

    def touch_session(self, token_hash: str, at: datetime) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE sessions SET last_seen=? WHERE token_hash=?",
                         (at.isoformat(timespec="seconds"), token_hash))

    def end_session(self, token_hash: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE token_hash=?", (token_hash,))

    # ---------------------------------------------------------------- audit
    def add_audit(self, at: datetime, who: str, address: str, action: str, detail: str, result: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO audit (at, who, address, action, detail, result) VALUES (?, ?, ?, ?, ?, ?)",
                         (at.isoformat(timespec="milliseconds"), who, address, action, detail, result))

    def audit_entries(self, limit: int) -> list[tuple]:
        return self.query("SELECT id, at, who, address, action, detail, result FROM audit ORDER BY id DESC LIMIT ?",
                          (limit,))

    # ---------------------------------------------------------------- the published roster
    def published_roster(self, site: str) -> PublishedRoster | None:
        row = self.one("SELECT site, version, published_at, published_by, count, chunks, sha256, rows"
                       " FROM published_roster WHERE site=?", (site,))
        return PublishedRoster(*row[:7], bytes(row[7])) if row else None

    def keep_published_roster(self, roster: PublishedRoster) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO published_roster (site, version, published_at, published_by, count,"
                         " chunks, sha256, rows) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (roster.site, roster.version, roster.published_at, roster.published_by, roster.count,
                          roster.chunks, roster.sha256, roster.rows))

    # ---------------------------------------------------------------- alarms
    def acknowledge(self, site: str, door: str, epoch: int, seq: int, by: str, at: datetime,
                    comment: str) -> AckOutcome:
        with self.transaction() as conn:
            row = conn.execute("SELECT category FROM events WHERE site=? AND door=? AND epoch=? AND seq=?",
                               (site, door, epoch, seq)).fetchone()
            if row is None or row[0] != "alarm":
                return "not_an_alarm"
            if conn.execute("SELECT 1 FROM acknowledgements WHERE site=? AND door=? AND epoch=? AND seq=?",
                            (site, door, epoch, seq)).fetchone():
                return "already_acknowledged"
            conn.execute("INSERT INTO acknowledgements (site, door, epoch, seq, by, at, comment)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (site, door, epoch, seq, by, at.isoformat(timespec="seconds"), comment))
        return "ok"

    def alarms(self, acknowledged: bool, limit: int) -> list[tuple]:
        if acknowledged:
            sql = ("SELECT e.site, e.door, e.seq, e.ts, e.type, e.payload, e.epoch, a.by, a.at, a.comment"
                   " FROM acknowledgements a JOIN events e ON e.site=a.site AND e.door=a.door AND e.epoch=a.epoch"
                   " AND e.seq=a.seq ORDER BY a.at DESC, a.rowid DESC LIMIT ?")
        else:
            sql = ("SELECT e.site, e.door, e.seq, e.ts, e.type, e.payload, e.epoch, NULL, NULL, NULL FROM events e"
                   " LEFT JOIN acknowledgements a ON e.site=a.site AND e.door=a.door AND e.epoch=a.epoch"
                   " AND e.seq=a.seq WHERE e.category='alarm' AND a.seq IS NULL ORDER BY e.rowid LIMIT ?")
        return [(s, d, q, ts, t, bytes(p), ep, by, at, c) for s, d, q, ts, t, p, ep, by, at, c
                in self.query(sql, (limit,))]

    def open_alarms(self, limit: int, ranks: dict[str, int], search: EventSearch | None = None,
                    before: int | None = None) -> list[tuple]:
        rank_sql, rank_params = _ranks(ranks)
        where, params = _search_where(search) if search else ("", [])
        if before is not None:
            row = self.one("SELECT type FROM events WHERE rowid=?", (before,))
            if row is None:
                return []
            rank = ranks.get(row[0], max(ranks.values(), default=-1) + 1)
            where += f" AND ({rank_sql} > ? OR ({rank_sql} = ? AND e.rowid < ?))"
            params += [*rank_params, rank, *rank_params, rank, before]
        rows = self.query("SELECT e.rowid, e.site, e.door, e.seq, e.ts, e.type, e.payload, e.epoch FROM events e"
                          f" WHERE e.category='alarm' AND{_OPEN}{where} ORDER BY {rank_sql}, e.rowid DESC LIMIT ?",
                          [*params, *rank_params, limit])
        return [(i, s, d, q, ts, t, _bytes(p), ep) for i, s, d, q, ts, t, p, ep in rows]

    def alarm_version(self) -> tuple[int, int, int]:
        return self.one("SELECT (SELECT coalesce(max(rowid), 0) FROM events WHERE category='alarm'),"
                        " (SELECT coalesce(max(rowid), 0) FROM acknowledgements),"
                        " (SELECT coalesce(max(rowid), 0) FROM alarm_closures)")

    def open_alarm_counts(self) -> dict[tuple[str, str], dict[str, int]]:
        out: dict[tuple[str, str], dict[str, int]] = {}
        for s, d, t, n in self.query(f"SELECT e.site, e.door, e.type, count(*) FROM events e WHERE e.category='alarm'"
                                     f" AND{_OPEN} GROUP BY e.site, e.door, e.type"):
            out.setdefault((s, d), {})[t] = n
        return out

    def acknowledge_many(self, alarms: list[tuple[str, str, int, int]], by: str, at: datetime,
                         comment: str) -> list[AckOutcome]:
        outcomes: list[AckOutcome] = []
        with self.transaction() as conn:
            for site, door, epoch, seq in alarms:
                row = conn.execute("SELECT category FROM events WHERE site=? AND door=? AND epoch=? AND seq=?",
                                   (site, door, epoch, seq)).fetchone()
                if row is None or row[0] != "alarm":
                    outcomes.append("not_an_alarm")
                    continue
                added = conn.execute("INSERT OR IGNORE INTO acknowledgements (site, door, epoch, seq, by, at, comment)"
                                     " VALUES (?, ?, ?, ?, ?, ?, ?)",
                                     (site, door, epoch, seq, by, at.isoformat(timespec="seconds"), comment)).rowcount
                outcomes.append("ok" if added else "already_acknowledged")
        return outcomes

    def closed_alarms(self, limit: int) -> list[tuple]:
        rows = self.query("SELECT e.site, e.door, e.seq, e.ts, e.type, e.payload, e.epoch, c.closed_by, c.at"
                          " FROM alarm_closures c JOIN events e ON e.site=c.site AND e.door=c.door"
                          " AND e.epoch=c.epoch AND e.seq=c.seq ORDER BY c.rowid DESC LIMIT ?", (limit,))
        return [(s, d, q, ts, t, _bytes(p), ep, by, at) for s, d, q, ts, t, p, ep, by, at in rows]

    def answer_position(self) -> int:
        row = self.one("SELECT after FROM answer_position WHERE one=1")
        return row[0] if row else 0

    def answer_candidates(self, after: int, types: tuple[str, ...], limit: int) -> list[tuple]:
        marks = ", ".join("?" * len(types))
        rows = self.query(f"SELECT rowid, site, door, epoch, seq, type, payload FROM events WHERE rowid > ?"
                          f" AND type IN ({marks}) ORDER BY rowid LIMIT ?", [after, *types, limit])
        return [(*rest, _bytes(p)) for *rest, p in rows]

    def door_events_of(self, site: str, door: str, epoch: int, type_: str, *, before_seq: int | None = None,
                       after_seq: int | None = None, open_only: bool = False, limit: int = 100) -> list[tuple]:
        sql = "SELECT e.seq, e.payload FROM events e WHERE e.site=? AND e.door=? AND e.epoch=? AND e.type=?"
        params: list = [site, door, epoch, type_]
        if open_only:
            sql += " AND" + _OPEN
        if before_seq is not None:
            sql += " AND e.seq < ? ORDER BY e.seq DESC"
            params.append(before_seq)
        else:
            sql += " AND e.seq > ? ORDER BY e.seq"
            params.append(after_seq or 0)
        return [(q, _bytes(p)) for q, p in self.query(sql + " LIMIT ?", [*params, limit])]

    def close_alarms(self, closures: list[tuple[str, str, int, int, int]], at: datetime, position: int) -> None:
        when = at.isoformat(timespec="seconds")
        with self.transaction() as conn:
            for site, door, epoch, seq, by in closures:
                if conn.execute("SELECT 1 FROM acknowledgements WHERE site=? AND door=? AND epoch=? AND seq=?",
                                (site, door, epoch, seq)).fetchone():
                    continue
                conn.execute("INSERT OR IGNORE INTO alarm_closures (site, door, epoch, seq, closed_by, at)"
                             " VALUES (?, ?, ?, ?, ?, ?)", (site, door, epoch, seq, by, when))
            conn.execute("INSERT INTO answer_position (one, after) VALUES (1, ?) ON CONFLICT (one)"
                         " DO UPDATE SET after = max(after, excluded.after)", (position,))

    def events_around(self, site: str, door: str, epoch: int, seq: int, span: int) -> list[tuple]:
        return self.query("SELECT rowid, site, door, payload, epoch FROM events WHERE site=? AND door=? AND epoch=?"
                          " AND seq BETWEEN ? AND ? ORDER BY seq", (site, door, epoch, seq - span, seq + span))

    # ---------------------------------------------------------------- the page's reads
    def prepare_reads(self) -> None:
        self.script(INDEXES)

    def last_id(self) -> int:
        row = self.one("SELECT coalesce(max(rowid), 0) FROM events")
        return row[0] if row else 0

    def events_after(self, after: int, limit: int) -> list[tuple]:
        return self.query("SELECT rowid, site, door, payload, epoch FROM events WHERE rowid > ? ORDER BY rowid"
                          " LIMIT ?", (after, limit))

    def recent_events(self, limit: int) -> list[tuple]:
        rows = self.query("SELECT rowid, site, door, payload, epoch FROM events ORDER BY rowid DESC LIMIT ?", (limit,))
        return list(reversed(rows))

    def events_between(self, start: datetime, end: datetime, site: str | None, door: str | None) -> list[tuple]:
        # ts is text with the door's own offset, so the window is checked in Python; local_date is
        # the date at that offset: a day either side of the window's dates covers any offset.
        sql = "SELECT rowid, site, door, payload, epoch, ts FROM events WHERE local_date BETWEEN ? AND ?"
        params: list = [(start.date() - timedelta(days=1)).isoformat(), (end.date() + timedelta(days=1)).isoformat()]
        if site:
            sql += " AND site=?"
            params.append(site)
        if door:
            sql += " AND door=?"
            params.append(door)
        return [(i, s, d, p, ep) for i, s, d, p, ep, ts in self.query(sql, params) if _within(ts, start, end)]

    def search_events(self, search: EventSearch, before: int | None, limit: int) -> list[tuple]:
        where, params = _search_where(search)
        if before is not None:
            row = self.one(f"SELECT {INSTANT} FROM events WHERE rowid=?", (before,))
            if row is None or row[0] is None:
                return []
            where += f" AND ({INSTANT}, rowid) < (?, ?)"
            params += [row[0], before]
        sql = f"SELECT rowid, site, door, payload, epoch FROM events WHERE 1{where}"
        sql += f" ORDER BY {INSTANT} DESC, rowid DESC LIMIT ?"
        return [(i, s, d, _bytes(p), ep) for i, s, d, p, ep in self.query(sql, [*params, limit])]

    def doors(self) -> list[tuple]:
        return self.query("SELECT site, door, status, occupancy, status_at, epoch FROM doors ORDER BY site, door")

    def current_epoch(self, site: str, door: str) -> int:
        row = self.one("SELECT epoch FROM doors WHERE site=? AND door=?", (site, door))
        return row[0] if row else 1

    def last_payload(self, site: str, door: str, epoch: int) -> bytes | None:
        row = self.one("SELECT payload FROM events WHERE site=? AND door=? AND epoch=? ORDER BY seq DESC LIMIT 1",
                       (site, door, epoch))
        return bytes(row[0]) if row else None

    def chain_rows(self, site: str, door: str, epoch: int, after_seq: int,
                   limit: int = 5000) -> list[tuple[int, bytes]]:
        """(seq, payload) of one door's epoch from ``after_seq`` on, in seq order (for the chain check)."""
        return [(s, bytes(p)) for s, p in self.query(
            "SELECT seq, payload FROM events WHERE site=? AND door=? AND epoch=? AND seq > ? ORDER BY seq LIMIT ?",
            (site, door, epoch, after_seq, limit))]

    # ---------------------------------------------------------------- what the ingest refused or set apart
    def rejects(self, per_door: int, site: str | None = None, door: str | None = None) -> list[tuple]:
        return self._newest("ingest_rejects", ("topic", "reason"), per_door, site, door)

    def conflicts(self, per_door: int, site: str | None = None, door: str | None = None) -> list[tuple]:
        return self._newest("conflicts", ("seq", "topic"), per_door, site, door)

    def _newest(self, table: str, columns: tuple[str, ...], per_door: int, site: str | None,
                door: str | None) -> list[tuple]:
        """Each door's newest ``per_door`` rows of ``table``: id, received_at, site, door, ``columns``,
        the payload's start and its size."""
        where, params = _door_scope(site, door)
        rows = self.query(
            f"WITH ranked AS (SELECT id, row_number() OVER (PARTITION BY site, door ORDER BY id DESC) AS n"
            f" FROM {table}{where})"
            f" SELECT t.id, t.received_at, t.site, t.door, {', '.join('t.' + c for c in columns)},"
            f" substr(t.payload, 1, ?), length(t.payload) FROM {table} t JOIN ranked r ON r.id = t.id"
            " WHERE r.n <= ? ORDER BY t.site, t.door, t.id DESC", [*params, PAYLOAD_START, per_door])
        return [(*rest, _bytes(p), n) for *rest, p, n in rows]

    def problem_counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        rows = self.query(
            "SELECT site, door, sum(rejects), sum(conflicts) FROM ("
            " SELECT site, door, count(*) AS rejects, 0 AS conflicts FROM ingest_rejects GROUP BY site, door"
            " UNION ALL SELECT site, door, 0, count(*) FROM conflicts GROUP BY site, door) c GROUP BY site, door")
        return {(s, d): (r, c) for s, d, r, c in rows}

    def chains(self):
        """The chains verified here, from the archived payloads (:class:`.chain.ChainChecker`)."""
        from firmware_py.station.archive.chain import ChainChecker

        with self.lock:
            if self._chains is None:
                self._chains = ChainChecker(self)
            return self._chains


def _within(ts: str, start: datetime, end: datetime) -> bool:
    """Whether a stored ``ts`` is in [start, end); a time without offset is taken in the window's zone,
    and a row whose time cannot be read is in no window."""
    try:
        at = datetime.fromisoformat(ts)
        return start <= (at if at.tzinfo else at.replace(tzinfo=start.tzinfo)) < end
    except (TypeError, ValueError, OverflowError):
        return False


def _ranks(ranks: dict[str, int]) -> tuple[str, list]:
    """``CASE e.type WHEN ? THEN ? … END`` ordering the alarm types by rank (the others after them)."""
    if not ranks:
        return "0", []
    whens = " ".join("WHEN ? THEN ?" for _ in ranks)
    return (f"CASE e.type {whens} ELSE ? END",
            [v for pair in ranks.items() for v in pair] + [max(ranks.values()) + 1])


def _search_where(search: EventSearch) -> tuple[str, list]:
    """`` AND …`` of ``search`` over the columns of ``events`` (unqualified: the outer query's row),
    shared by the register's search and the alarm queue."""
    sql, params = "", []
    if search.start is not None:
        sql += f" AND {INSTANT} >= ?"
        params.append(_julian_day(search.start))
    if search.end is not None:
        sql += f" AND {INSTANT} < ?"
        params.append(_julian_day(search.end))
    for column, value in (("site", search.site), ("door", search.door), (PERSON_ID, search.person_id)):
        if value:
            sql += f" AND {column} = ?"
            params.append(value)
    if search.types:
        sql += f" AND type IN ({', '.join('?' * len(search.types))})"
        params += search.types
    if search.text:
        # the raw payload holds the text (LIKE folds ASCII case as lower() does) unless the door
        # escaped a character: only then, and for the rows it finds, is the JSON read
        sql += (f" AND ({_PAYLOAD} LIKE ? ESCAPE '\\' OR instr({_PAYLOAD}, '\\') > 0)"
                f" AND instr({PERSON_TEXT}, ?) > 0")
        params += ["%" + _like_escaped(search.text) + "%", search.text]
    return sql, params


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _julian_day(at: datetime) -> float:
    """``at`` as SQLite's ``julianday()`` gives it (whole milliseconds over the same divisor, so a
    window's bound equals an event's instant exactly)."""
    return (round(at.timestamp() * 1000) + UNIX_EPOCH_JD_MS) / 86400000.0


def _door_scope(site: str | None, door: str | None) -> tuple[str, list]:
    clauses, params = [], []
    for column, value in (("site", site), ("door", door)):
        if value:
            clauses.append(f"{column}=?")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _bytes(value: object) -> bytes:
    """A payload column as bytes (an old row may hold it as text)."""
    return value.encode("utf-8", "replace") if isinstance(value, str) else bytes(value or b"")


def _prepare_accounts(conn: sqlite3.Connection) -> None:
    """Add the columns a station before the accounts page lacks (last login, disabled)."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(accounts)")}
    for column, kind in (("last_login", "TEXT"), ("disabled", "INTEGER NOT NULL DEFAULT 0")):
        if column not in columns:
            conn.execute(f"ALTER TABLE accounts ADD COLUMN {column} {kind}")


def _prepare_acknowledgements(conn: sqlite3.Connection) -> None:
    """Create the table, or move acknowledgements keyed by (site, door, seq) into epoch 1 (all or nothing).

    The old table is renamed and dropped (a DROP fires no delete trigger); its triggers go with it and
    are created again on the new table."""
    columns = [r[1] for r in conn.execute("PRAGMA table_info(acknowledgements)")]
    if columns and "epoch" not in columns:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("ALTER TABLE acknowledgements RENAME TO acknowledgements_v1")
            conn.execute(_ACK_TABLE)
            conn.execute("INSERT INTO acknowledgements (site, door, epoch, seq, by, at, comment)"
                         " SELECT site, door, 1, seq, by, at, comment FROM acknowledgements_v1 ORDER BY rowid")
            conn.execute("DROP TABLE acknowledgements_v1")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    conn.executescript(ACKNOWLEDGEMENTS)
