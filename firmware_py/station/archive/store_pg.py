"""The station's web side on a PostgreSQL archive: every SQL statement of :class:`.storage.StationStore`.

Reads the archive :mod:`.pg` keeps and :mod:`.pg_ingest` writes (``events``,
``event_keys``, ``door_state``, ``door_chains``); keeps the station's own tables
(:mod:`.schema_pg`). One connection shared by the web app's threads under a lock; a connection
PostgreSQL dropped is opened again on the next call (that call fails with :class:`StoreError`).

Dialect differences stay here: ``%s`` placeholders; times are ``timestamptz`` and come back as
ISO 8601 text in the station's zone; the live stream's cursor is ``events.received_id`` (the
SQLite archive's rowid); a door's chains are its epochs (``epochs``, the current one marked), each
verified by the ingest as it stores (``door_chains``) rather than by the page.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import psycopg

from firmware_py.errors import StoreError
from firmware_py.station.archive import pg_station_schema as schema_pg
from firmware_py.station.archive.chain import ChainResult
from firmware_py.station.archive.store import (
    PAYLOAD_START,
    AccountRow,
    AckOutcome,
    EventSearch,
    PublishedRoster,
    StationStore,
)
from firmware_py.station.config import safe_url

T = TypeVar("T")
log = logging.getLogger(__name__)

# What the page's reads need beyond the archive's own indexes: the open alarms in received order,
# each door's conflicting copies newest first (the admin's page, the tiles' counts).
# The register's search reads newest first by (ts, received_id) within a window, of every door, one
# door or one type.
INDEXES = """CREATE INDEX IF NOT EXISTS events_alarms ON events (received_id) WHERE category = 'alarm';
CREATE INDEX IF NOT EXISTS conflicts_door ON conflicts (site, door, id);
CREATE INDEX IF NOT EXISTS events_instant ON events (ts, received_id);
CREATE INDEX IF NOT EXISTS events_door_instant ON events (door, site, ts, received_id);
CREATE INDEX IF NOT EXISTS events_type_instant ON events (type, ts, received_id);"""

# The person's text (id, name, organisation in lower case) of every event, by trigrams (pg_trgm, in
# Debian's postgresql-15): a search for any part of three characters or more reads the index, not
# every payload of the window. Made on an archive that lacks it when the station starts (an archive
# of an earlier version is upgraded in place; the ingest waits while it is built); without the
# extension the search reads the payloads as before.
PERSON_TEXT = "accessctl_person_text(accessctl_person(payload))"
TRIGRAM = 3  # characters: a shorter text has no trigram to look up
TRIGRAMS = f"""CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS events_person_trgm ON events USING gin ({PERSON_TEXT} gin_trgm_ops);"""


# Alarms their door closed with a state event, and the state events themselves (as the SQLite
# archive keeps them, :data:`.store_sqlite.CLOSURES`); never changed or deleted.
CLOSURES = """
CREATE TABLE IF NOT EXISTS alarm_closures (
    id         bigserial   NOT NULL UNIQUE,   -- the order they were made in
    site       text        NOT NULL,
    door       text        NOT NULL,
    epoch      integer     NOT NULL DEFAULT 1,
    seq        bigint      NOT NULL,
    closed_by  bigint      NOT NULL,          -- the seq of the state event that closed it
    at         timestamptz NOT NULL,
    PRIMARY KEY (site, door, epoch, seq)
);
CREATE OR REPLACE TRIGGER alarm_closures_no_update BEFORE UPDATE ON alarm_closures
    FOR EACH ROW EXECUTE FUNCTION accessctl_refuse_change('a closure is never changed');
CREATE OR REPLACE TRIGGER alarm_closures_no_delete BEFORE DELETE ON alarm_closures
    FOR EACH ROW EXECUTE FUNCTION accessctl_refuse_change('a closure is never deleted');
CREATE OR REPLACE TRIGGER alarm_closures_no_truncate BEFORE TRUNCATE ON alarm_closures
    FOR EACH STATEMENT EXECUTE FUNCTION accessctl_refuse_change('a closure is never deleted');
CREATE TABLE IF NOT EXISTS answer_position (
    one    integer PRIMARY KEY CHECK (one = 1),
    after  bigint  NOT NULL
);
"""

_OPEN = (" NOT EXISTS (SELECT 1 FROM acknowledgements a WHERE a.site = e.site AND a.door = e.door AND a.epoch = 1"
         " AND a.seq = e.seq) AND NOT EXISTS (SELECT 1 FROM alarm_closures c WHERE c.site = e.site"
         " AND c.door = e.door AND c.epoch = 1 AND c.seq = e.seq)")


def _iso(value: datetime | None, timespec: str = "seconds") -> str | None:
    return value.isoformat(timespec=timespec) if value is not None else None


class PgStationStore(StationStore):
    def __init__(self, url: str, *, zone: str = "Asia/Shanghai"):
        self.url = url
        self.zone = zone
        self.lock = threading.RLock()
        self.conn: psycopg.Connection | None = None
        with self.lock:
            self._connect()
            try:
                schema_pg.create(self.conn)
                with self.conn.transaction():
                    self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('accessctl station schema'))")
                    self.conn.execute(CLOSURES)
            except psycopg.Error as exc:
                raise StoreError(f"{safe_url(url)}: cannot make the station's tables: {exc}") from None

    def _connect(self) -> None:
        try:
            self.conn = psycopg.connect(self.url, autocommit=False)
            self.conn.execute("SELECT set_config('TimeZone', %s, false)", (self.zone,))
            self.conn.commit()
        except psycopg.Error as exc:
            self.conn = None
            raise StoreError(f"{safe_url(self.url)}: cannot open the station archive: {exc}") from None

    def _run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """``work(conn)`` in one transaction; a lost connection is a StoreError and is reopened next time."""
        with self.lock:
            if self.conn is None or self.conn.closed:
                self._connect()
            try:
                with self.conn.transaction():
                    return work(self.conn)
            except psycopg.OperationalError as exc:
                self.conn.close()
                raise StoreError(f"{safe_url(self.url)}: the archive is unreachable: {exc}") from None

    def _all(self, query: str, params: tuple | list = ()) -> list[tuple]:
        return self._run(lambda c: c.execute(query, params).fetchall())

    def _one(self, query: str, params: tuple | list = ()) -> tuple | None:
        return self._run(lambda c: c.execute(query, params).fetchone())

    def _do(self, query: str, params: tuple | list = ()) -> int:
        return self._run(lambda c: c.execute(query, params).rowcount)

    def close(self) -> None:
        with self.lock:
            if self.conn is not None:
                self.conn.close()

    # ---------------------------------------------------------------- accounts and sessions
    def add_account(self, name: str, role: str, password_hash: str, at: datetime) -> bool:
        return self._do("INSERT INTO accounts (name, role, password_hash, created_at) VALUES (%s, %s, %s, %s)"
                        " ON CONFLICT (name) DO NOTHING", (name, role, password_hash, at)) == 1

    def accounts(self) -> list[tuple[str, str, str]]:
        return [(n, r, _iso(at)) for n, r, at in self._all("SELECT name, role, created_at FROM accounts ORDER BY name")]

    def account(self, name: str) -> tuple[str, str] | None:
        row = self._one("SELECT role, password_hash FROM accounts WHERE name = %s AND NOT disabled", (name,))
        return tuple(row) if row else None

    def account_rows(self) -> list[AccountRow]:
        return [AccountRow(n, r, _iso(c), _iso(last), off) for n, r, c, last, off in self._all(
            "SELECT name, role, created_at, last_login, disabled FROM accounts ORDER BY name")]

    def change_account(self, name: str, *, role: str | None = None, disabled: bool | None = None,
                       password_hash: str | None = None) -> str:
        def work(c) -> str:
            c.execute("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE")  # two admins demoting each other
            row = c.execute("SELECT role, disabled FROM accounts WHERE name = %s", (name,)).fetchone()
            if row is None:
                return "no_such_account"
            new_role, new_disabled = role or row[0], row[1] if disabled is None else disabled
            if row[0] == "admin" and not row[1] and (new_role != "admin" or new_disabled):
                others = c.execute("SELECT count(*) FROM accounts WHERE role = 'admin' AND NOT disabled"
                                   " AND name <> %s", (name,)).fetchone()[0]
                if not others:
                    return "last_admin"
            c.execute("UPDATE accounts SET role = %s, disabled = %s, password_hash = coalesce(%s, password_hash)"
                      " WHERE name = %s", (new_role, new_disabled, password_hash, name))
            if new_disabled or password_hash:
                c.execute("DELETE FROM sessions WHERE name = %s", (name,))
            return "ok"
        return self._run(work)

    def note_login(self, name: str, at: datetime) -> None:
        self._do("UPDATE accounts SET last_login = %s WHERE name = %s", (at, name))

    def add_session(self, token_hash: str, name: str, csrf: str, at: datetime) -> str:
        def work(c):
            role = c.execute("SELECT role FROM accounts WHERE name = %s", (name,)).fetchone()[0]
            c.execute("INSERT INTO sessions (token_hash, name, csrf, created_at, last_seen)"
                      " VALUES (%s, %s, %s, %s, %s)", (token_hash, name, csrf, at, at))
            return role
        return self._run(work)

    def session(self, token_hash: str) -> tuple[str, str, str, str] | None:
        row = self._one("SELECT s.name, a.role, s.csrf, s.last_seen FROM sessions s JOIN accounts a"
                        " ON a.name = s.name WHERE s.token_hash = %s AND NOT a.disabled", (token_hash,))
        return (row[0], row[1], row[2], _iso(row[3])) if row else None

    def touch_session(self, token_hash: str, at: datetime) -> None:
        self._do("UPDATE sessions SET last_seen = %s WHERE token_hash = %s", (at, token_hash))

    def end_session(self, token_hash: str) -> None:
        self._do("DELETE FROM sessions WHERE token_hash = %s", (token_hash,))

    # ---------------------------------------------------------------- audit
    def add_audit(self, at: datetime, who: str, address: str, action: str, detail: str, result: str) -> None:
        self._do("INSERT INTO audit (at, who, address, action, detail, result) VALUES (%s, %s, %s, %s, %s, %s)",
                 (at, who, address, action, detail, result))

    def audit_entries(self, limit: int) -> list[tuple]:
        rows = self._all("SELECT id, at, who, address, action, detail, result FROM audit ORDER BY id DESC LIMIT %s",
                         (limit,))
        return [(i, _iso(at, "milliseconds"), *rest) for i, at, *rest in rows]

    # ---------------------------------------------------------------- the published roster
    def published_roster(self, site: str) -> PublishedRoster | None:
        row = self._one("SELECT site, version, published_at, published_by, count, chunks, sha256, rows"
                        " FROM published_roster WHERE site = %s", (site,))
        if row is None:
            return None
        s, version, at, by, count, chunks, sha256, rows = row
        return PublishedRoster(s, version, _iso(at), by, count, chunks, sha256, bytes(rows))

    def keep_published_roster(self, roster: PublishedRoster) -> None:
        self._do("INSERT INTO published_roster (site, version, published_at, published_by, count, chunks, sha256,"
                 " rows) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (site) DO UPDATE SET"
                 " version = excluded.version, published_at = excluded.published_at,"
                 " published_by = excluded.published_by, count = excluded.count, chunks = excluded.chunks,"
                 " sha256 = excluded.sha256, rows = excluded.rows",
                 (roster.site, roster.version, datetime.fromisoformat(roster.published_at), roster.published_by,
                  roster.count, roster.chunks, roster.sha256, roster.rows))

    # ---------------------------------------------------------------- alarms
    def acknowledge(self, site: str, door: str, epoch: int, seq: int, by: str, at: datetime,
                    comment: str) -> AckOutcome:
        def work(c) -> AckOutcome:
            row = c.execute("SELECT category FROM events WHERE site = %s AND door = %s AND epoch = %s AND seq = %s"
                            " LIMIT 1", (site, door, epoch, seq)).fetchone()
            if row is None or row[0] != "alarm":
                return "not_an_alarm"
            added = c.execute("INSERT INTO acknowledgements (site, door, epoch, seq, by, at, comment)"
                              " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                              (site, door, epoch, seq, by, at, comment)).rowcount
            return "ok" if added else "already_acknowledged"
        return self._run(work)

    def alarms(self, acknowledged: bool, limit: int) -> list[tuple]:
        if acknowledged:
            rows = self._all(
                "SELECT e.site, e.door, e.seq, e.type, e.payload, a.epoch, a.by, a.at, a.comment"
                " FROM acknowledgements a JOIN events e ON e.site = a.site AND e.door = a.door AND e.epoch = a.epoch"
                " AND e.seq = a.seq"
                " ORDER BY a.at DESC, a.id DESC LIMIT %s", (limit,))
        else:
            rows = self._all(
                "SELECT e.site, e.door, e.seq, e.type, e.payload, e.epoch, NULL, NULL, NULL FROM events e"
                " WHERE e.category = 'alarm' AND NOT EXISTS (SELECT 1 FROM acknowledgements a WHERE a.site = e.site"
                " AND a.door = e.door AND a.epoch = e.epoch AND a.seq = e.seq) ORDER BY e.received_id LIMIT %s",
                (limit,))
        # ts as the door wrote it (with its own offset), as the SQLite archive keeps it
        return [(s, d, q, _door_ts(p), t, bytes(p), ep, by, _iso(at), c) for s, d, q, t, p, ep, by, at, c in rows]

    def open_alarms(self, limit: int, ranks: dict[str, int], search: EventSearch | None = None,
                    before: int | None = None) -> list[tuple]:
        rank_sql, rank_params = _ranks(ranks)
        where, params = _search_where(search) if search else ("", [])
        if before is not None:
            row = self._one("SELECT type FROM events WHERE received_id = %s LIMIT 1", (before,))
            if row is None:
                return []
            rank = ranks.get(row[0], max(ranks.values(), default=-1) + 1)
            where += f" AND ({rank_sql} > %s OR ({rank_sql} = %s AND e.received_id < %s))"
            params += [*rank_params, rank, *rank_params, rank, before]
        rows = self._all("SELECT e.received_id, e.site, e.door, e.seq, e.type, e.payload FROM events e"
                         f" WHERE e.category = 'alarm' AND{_OPEN}{where} ORDER BY {rank_sql}, e.received_id DESC"
                         " LIMIT %s", [*params, *rank_params, limit])
        return [(i, s, d, q, _door_ts(p), t, bytes(p), 1) for i, s, d, q, t, p in rows]

    def alarm_version(self) -> tuple[int, int, int]:
        return self._one("SELECT (SELECT coalesce(max(received_id), 0) FROM events WHERE category = 'alarm'),"
                         " (SELECT coalesce(max(id), 0) FROM acknowledgements),"
                         " (SELECT coalesce(max(id), 0) FROM alarm_closures)")

    def open_alarm_counts(self) -> dict[tuple[str, str], dict[str, int]]:
        out: dict[tuple[str, str], dict[str, int]] = {}
        for s, d, t, n in self._all(f"SELECT e.site, e.door, e.type, count(*) FROM events e"
                                    f" WHERE e.category = 'alarm' AND{_OPEN} GROUP BY e.site, e.door, e.type"):
            out.setdefault((s, d), {})[t] = n
        return out

    def acknowledge_many(self, alarms: list[tuple[str, str, int, int]], by: str, at: datetime,
                         comment: str) -> list[AckOutcome]:
        def work(c) -> list[AckOutcome]:
            outcomes: list[AckOutcome] = []
            for site, door, epoch, seq in alarms:
                row = c.execute("SELECT category FROM events WHERE site = %s AND door = %s AND seq = %s LIMIT 1",
                                (site, door, seq)).fetchone()
                if epoch != 1 or row is None or row[0] != "alarm":
                    outcomes.append("not_an_alarm")
                    continue
                added = c.execute("INSERT INTO acknowledgements (site, door, epoch, seq, by, at, comment)"
                                  " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                                  (site, door, epoch, seq, by, at, comment)).rowcount
                outcomes.append("ok" if added else "already_acknowledged")
            return outcomes
        return self._run(work)

    def closed_alarms(self, limit: int) -> list[tuple]:
        rows = self._all("SELECT e.site, e.door, e.seq, e.type, e.payload, c.closed_by, c.at FROM alarm_closures c"
                         " JOIN events e ON e.site = c.site AND e.door = c.door AND e.seq = c.seq"
                         " ORDER BY c.id DESC LIMIT %s", (limit,))
        return [(s, d, q, _door_ts(p), t, bytes(p), 1, by, _iso(at)) for s, d, q, t, p, by, at in rows]

    def answer_position(self) -> int:
        row = self._one("SELECT after FROM answer_position WHERE one = 1")
        return row[0] if row else 0

    def answer_candidates(self, after: int, types: tuple[str, ...], limit: int) -> list[tuple]:
        rows = self._all("SELECT received_id, site, door, seq, type, payload FROM events WHERE received_id > %s"
                         " AND type = ANY(%s) ORDER BY received_id LIMIT %s", (after, list(types), limit))
        return [(i, s, d, 1, q, t, bytes(p)) for i, s, d, q, t, p in rows]

    def door_events_of(self, site: str, door: str, epoch: int, type_: str, *, before_seq: int | None = None,
                       after_seq: int | None = None, open_only: bool = False, limit: int = 100) -> list[tuple]:
        if epoch != 1:
            return []
        sql = "SELECT e.seq, e.payload FROM events e WHERE e.site = %s AND e.door = %s AND e.type = %s"
        params: list = [site, door, type_]
        if open_only:
            sql += " AND" + _OPEN
        if before_seq is not None:
            sql += " AND e.seq < %s ORDER BY e.seq DESC"
            params.append(before_seq)
        else:
            sql += " AND e.seq > %s ORDER BY e.seq"
            params.append(after_seq or 0)
        return [(q, bytes(p)) for q, p in self._all(sql + " LIMIT %s", [*params, limit])]

    def close_alarms(self, closures: list[tuple[str, str, int, int, int]], at: datetime, position: int) -> None:
        def work(c) -> None:
            for site, door, epoch, seq, by in closures:
                c.execute("INSERT INTO alarm_closures (site, door, epoch, seq, closed_by, at)"
                          " SELECT %s, %s, %s, %s, %s, %s WHERE NOT EXISTS (SELECT 1 FROM acknowledgements"
                          " WHERE site = %s AND door = %s AND epoch = %s AND seq = %s) ON CONFLICT DO NOTHING",
                          (site, door, epoch, seq, by, at, site, door, epoch, seq))
            c.execute("INSERT INTO answer_position (one, after) VALUES (1, %s) ON CONFLICT (one)"
                      " DO UPDATE SET after = greatest(answer_position.after, excluded.after)", (position,))
        self._run(work)

    def events_around(self, site: str, door: str, epoch: int, seq: int, span: int) -> list[tuple]:
        if epoch != 1:
            return []
        return [(i, s, d, bytes(p), 1) for i, s, d, p in self._all(
            "SELECT received_id, site, door, payload FROM events WHERE site = %s AND door = %s"
            " AND seq BETWEEN %s AND %s ORDER BY seq", (site, door, seq - span, seq + span))]

    # ---------------------------------------------------------------- the page's reads
    def prepare_reads(self) -> None:
        """The archive's and the ingest's tables (a station may serve before its ingest ran), and the indexes."""
        from firmware_py.station.archive import pg as archive_pg

        def work(c):
            c.execute("SELECT pg_advisory_xact_lock(hashtext('accessctl archive schema'))")
            c.execute(archive_pg.SCHEMA)
            c.execute(archive_pg.INGEST_SCHEMA)
            c.execute(INDEXES)
            try:
                with c.transaction():  # a savepoint: without pg_trgm the rest stands
                    c.execute(TRIGRAMS)
            except psycopg.errors.Error as exc:
                log.warning("%s: no trigram index for the person search (%s): the search reads the payloads",
                            safe_url(self.url), str(exc).strip())
        try:
            self._run(work)
        except psycopg.Error as exc:
            raise StoreError(f"{safe_url(self.url)}: cannot prepare the archive for the web page: {exc}") from None

    def last_id(self) -> int:
        return self._one("SELECT coalesce(max(received_id), 0) FROM events")[0]

    def events_after(self, after: int, limit: int) -> list[tuple]:
        return [(i, s, d, bytes(p), e) for i, s, d, p, e in self._all(
            "SELECT received_id, site, door, payload, epoch FROM events WHERE received_id > %s ORDER BY received_id"
            " LIMIT %s", (after, limit))]

    def recent_events(self, limit: int) -> list[tuple]:
        rows = self._all("SELECT received_id, site, door, payload, epoch FROM events ORDER BY received_id DESC"
                         " LIMIT %s", (limit,))
        return [(i, s, d, bytes(p), e) for i, s, d, p, e in reversed(rows)]

    def events_between(self, start: datetime, end: datetime, site: str | None, door: str | None) -> list[tuple]:
        query = "SELECT received_id, site, door, payload, epoch FROM events WHERE ts >= %s AND ts < %s"  # prunes
        params: list = [start, end]
        if site:
            query += " AND site = %s"
            params.append(site)
        if door:
            query += " AND door = %s"
            params.append(door)
        return [(i, s, d, bytes(p), e) for i, s, d, p, e in self._all(query, params)]

    def search_events(self, search: EventSearch, before: int | None, limit: int) -> list[tuple]:
        where, params = _search_where(search)
        if before is not None:
            where += " AND (ts, received_id) < (SELECT ts, received_id FROM events WHERE received_id = %s"
            params.append(before)
            if search.end is not None:
                where += " AND ts < %s"  # prunes partitions
                params.append(search.end)
            where += " LIMIT 1)"
        query = f"SELECT received_id, site, door, payload FROM events WHERE true{where}"
        query += " ORDER BY ts DESC, received_id DESC LIMIT %s"
        return [(i, s, d, bytes(p), 1) for i, s, d, p in self._all(query, [*params, limit])]

    def doors(self) -> list[tuple]:
        rows = self._all("SELECT s.site, s.door, s.status, s.occupancy, s.status_at, coalesce(e.epoch, 1)"
                         " FROM door_state s LEFT JOIN epochs e ON e.site = s.site AND e.door = s.door AND e.current"
                         " ORDER BY s.site, s.door")
        return [(s, d, st, oc, _iso(at, "milliseconds"), ep) for s, d, st, oc, at, ep in rows]

    def current_epoch(self, site: str, door: str) -> int:
        row = self._one("SELECT epoch FROM epochs WHERE site = %s AND door = %s AND current", (site, door))
        return row[0] if row else 1

    def last_payload(self, site: str, door: str, epoch: int) -> bytes | None:
        row = self._one("SELECT payload FROM events WHERE site = %s AND door = %s AND epoch = %s"
                        " ORDER BY seq DESC LIMIT 1", (site, door, epoch))
        return bytes(row[0]) if row else None

    # ---------------------------------------------------------------- what the ingest refused or set apart
    def rejects(self, per_door: int, site: str | None = None, door: str | None = None) -> list[tuple]:
        return self._newest("ingest_rejects", ("topic", "reason"), per_door, site, door)

    def conflicts(self, per_door: int, site: str | None = None, door: str | None = None) -> list[tuple]:
        return self._newest("conflicts", ("seq", "topic"), per_door, site, door)

    def _newest(self, table: str, columns: tuple[str, ...], per_door: int, site: str | None,
                door: str | None) -> list[tuple]:
        """Each door's newest ``per_door`` rows of ``table``: id, received_at, site, door, ``columns``,
        the payload's start and its size."""
        clauses, params = [], []
        for column, value in (("site", site), ("door", door)):
            if value:
                clauses.append(f"{column} = %s")
                params.append(value)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = self._all(
            f"WITH ranked AS (SELECT id, row_number() OVER (PARTITION BY site, door ORDER BY id DESC) AS n"
            f" FROM {table}{where})"
            f" SELECT t.id, t.received_at, t.site, t.door, {', '.join('t.' + c for c in columns)},"
            f" substring(t.payload FROM 1 FOR %s), octet_length(t.payload) FROM {table} t JOIN ranked r"
            " ON r.id = t.id WHERE r.n <= %s ORDER BY t.site, t.door, t.id DESC", [*params, PAYLOAD_START, per_door])
        return [(i, _iso(at, "milliseconds"), *rest, bytes(p), n) for i, at, *rest, p, n in rows]

    def problem_counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        rows = self._all(
            "SELECT site, door, sum(rejects)::bigint, sum(conflicts)::bigint FROM ("
            " SELECT site, door, count(*) AS rejects, 0 AS conflicts FROM ingest_rejects GROUP BY site, door"
            " UNION ALL SELECT site, door, 0, count(*) FROM conflicts GROUP BY site, door) c GROUP BY site, door")
        return {(s, d): (r, c) for s, d, r, c in rows}

    def chains(self) -> PgChains:
        return PgChains(self)

    def chain_state(self, site: str, door: str, epoch: int) -> tuple[int | None, int, str | None, int | None]:
        """(first archived seq, verified_to, problem, the first missing seq after verified_to while later
        ones are archived) of one door's epoch."""
        def work(c):
            first, last = c.execute("SELECT min(seq), max(seq) FROM event_keys WHERE site = %s AND door = %s"
                                    " AND epoch = %s", (site, door, epoch)).fetchone()
            verified_to, problem = c.execute("SELECT verified_to, problem FROM door_chains WHERE site = %s"
                                             " AND door = %s AND epoch = %s", (site, door, epoch)).fetchone() \
                or (0, None)
            missing = None
            if problem is None and last is not None and last > verified_to:
                # the ingest verifies in seq order and saves how far about every second: its chain
                # waits only when the next seq is not archived
                if not c.execute("SELECT 1 FROM event_keys WHERE site = %s AND door = %s AND epoch = %s"
                                 " AND seq = %s", (site, door, epoch, verified_to + 1)).fetchone():
                    missing = verified_to + 1
            return first, verified_to, problem, missing
        return self._run(work)


class PgChains:
    """Each door's chain as the ingest verified it (``door_chains``, saved about every second)."""

    def __init__(self, store: PgStationStore):
        self.store = store

    def check(self, site: str, door: str, epoch: int | None = None) -> ChainResult:
        """The chain of one epoch of the door (default: its current epoch)."""
        epoch = epoch or self.store.current_epoch(site, door)
        first, verified_to, problem, missing = self.store.chain_state(site, door, epoch)
        return ChainResult(problem is None, first, verified_to, missing, problem, epoch)


def _ranks(ranks: dict[str, int]) -> tuple[str, list]:
    """``CASE e.type WHEN %s THEN %s … END`` ordering the alarm types by rank (the others after them)."""
    if not ranks:
        return "0", []
    whens = " ".join("WHEN %s THEN %s" for _ in ranks)
    return (f"CASE e.type {whens} ELSE %s END",
            [v for pair in ranks.items() for v in pair] + [max(ranks.values()) + 1])


def _search_where(search: EventSearch) -> tuple[str, list]:
    """`` AND …`` of ``search`` over the columns of ``events`` (unqualified: the outer query's row),
    shared by the register's search and the alarm queue; the window on ``ts`` prunes partitions."""
    sql, params = "", []
    if search.start is not None:
        sql += " AND ts >= %s"
        params.append(search.start)
    if search.end is not None:
        sql += " AND ts < %s"
        params.append(search.end)
    for column, value in (("site", search.site), ("door", search.door),
                          ("accessctl_person(payload) ->> 'person_id'", search.person_id)):
        if value:
            sql += f" AND {column} = %s"
            params.append(value)
    if search.types:
        sql += " AND type = ANY(%s)"
        params.append(list(search.types))
    if search.text:
        # the raw payload is tried first, and its JSON read only where it may match: it holds the
        # text's digits or Chinese byte for byte, or (ASCII text) the text in some case, unless
        # the door escaped a character
        piece = _uncased_piece(search.text)
        if any(c.isalnum() for c in piece):
            sql += " AND (position(%s IN payload) > 0 OR position('\\x5c'::bytea IN payload) > 0)"
            params.append(piece.encode("utf-8"))
        elif search.text.isascii():
            sql += " AND (encode(payload, 'escape') ~* %s OR position('\\x5c'::bytea IN payload) > 0)"
            params.append("".join(c if c.isalnum() else "\\" + c for c in search.text))
        if len(search.text) >= TRIGRAM:  # LIKE: the trigram index's operator
            sql += f" AND {PERSON_TEXT} LIKE %s"
            params.append("%" + search.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        else:  # too short for a trigram: a LIKE would read the whole index, the window's rows are fewer
            sql += f" AND strpos({PERSON_TEXT}, %s) > 0"
            params.append(search.text)
    return sql, params


def _uncased_piece(text: str) -> str:
    """The longest run of ``text`` without a cased character (digits, Chinese, punctuation): a field
    holding ``text`` in any case holds that run byte for byte, so the raw payload can be tried first."""
    runs, run = [], ""
    for c in text:
        if c.lower() == c.upper():
            run += c
        else:
            runs.append(run)
            run = ""
    runs.append(run)
    return max(runs, key=len)


def _door_ts(payload: bytes) -> str:
    try:
        ts = json.loads(bytes(payload)).get("ts")
    except (ValueError, AttributeError, RecursionError):  # whatever a door stored
        return ""
    return ts if isinstance(ts, str) else ""
