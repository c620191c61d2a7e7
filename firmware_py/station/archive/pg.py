"""The station's archive on PostgreSQL 15 (psycopg 3): the fleet counterpart of the SQLite archive.

Same meaning as :mod:`firmware_py.station.archive.sqlite` for what the station calls (``store_event``,
``has``, ``count``, ``events``, ``events_on``, ``payload``), plus a batched ``store_events`` for
ingest at fleet rates, monthly export and retention.

Tables
  ``events``      one row per (site, door, epoch, seq), partitioned by month on ``ts`` (declarative
                  range partitioning; month bounds in the archive's zone, Asia/Shanghai by
                  default); a month's partition is made when its first event arrives.
                  ``received_id`` numbers the events in the order they were stored: writers take
                  one lock for it per batch, so the numbers become visible in order and the web
                  page's live stream can resume after the last one it sent.
  ``event_keys``  (site, door, epoch, seq) PRIMARY KEY, with the event's ts and hash.
  ``conflicts``   copies that are not the archived event: same key, another hash or the same
                  hash with another content (``conflicting_copy``), or an event of a month
                  already dropped (``after_retention``). Never in ``events``.
  ``epochs``      each door's chains: a door whose log was reset starts again at seq 1 in a new
                  epoch, decided by the SQLite archive's rule (:func:`.chain.epoch_for`); the
                  current one marked, and the head the door published in each (a linked event,
                  or its status's ``last_seq``/``last_hash``, :meth:`PgArchive.store_status`).
  ``anomalies``   what the archive found, as the SQLite archive's table: ``new_epoch``,
                  ``epoch_resumed``, ``conflicting_copy``, ``copy_replaced``, ``head_mismatch``,
                  ``head_regressed``.
  ``months``      every month that has (or had) a partition, and when it was dropped.
  ``exports``     every export of a month: when, how many rows, their SHA-256, where to.

An archive written before epochs upgrades in place when opened: the tables gain ``epoch`` (its rows
are epoch 1), the primary keys of ``event_keys`` and ``events`` gain it, and each door gets its
epoch 1 in ``epochs``.

Why ``event_keys``: PostgreSQL requires a unique constraint on a partitioned table to include
the partition key, so ``events`` can only be unique on (site, door, epoch, seq, ts) -- the same seq with
a ts in another month would land in another partition as a second row. ``event_keys`` is not
partitioned and holds the real key; every event is inserted into it first (``ON CONFLICT DO
NOTHING``) and into ``events`` only when that insert made a new key, in the same transaction, so
concurrent writers of the same key serialise on its primary key and exactly one wins. When a
month is dropped, its keys go with it and the month is remembered in ``months``, so a late copy
of a dropped event goes to ``conflicts`` instead of bringing the month back.

Retention (GB 50396 5.2.3): at least 180 days, and a month is dropped only when it is wholly
older than that *and* an export of it holds every row it has now.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import IO
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from firmware_py.core.events import GENESIS_HASH, event_hash
from firmware_py.errors import StoreError
from firmware_py.station.archive.chain import (
    copy_score,
    epoch_for,
    event_head_mismatch,
    new_epoch_detail,
    resumed_detail,
    status_head,
)
from firmware_py.station.archive.sqlite import HASH, Anomaly, Epoch, Stored
from firmware_py.station.config import safe_url

MIN_RETENTION_DAYS = 180  # GB 50396 5.2.3

SCHEMA = """
CREATE TABLE IF NOT EXISTS event_keys (
    site  text    NOT NULL,
    door  text    NOT NULL,
    epoch integer NOT NULL DEFAULT 1,
    seq   bigint  NOT NULL,
    ts    timestamptz NOT NULL,
    hash  text    NOT NULL,
    PRIMARY KEY (site, door, epoch, seq)
);
CREATE TABLE IF NOT EXISTS events (
    site        text        NOT NULL,
    door        text        NOT NULL,
    epoch       integer     NOT NULL DEFAULT 1,   -- the door's chain (a reset log starts the next)
    seq         bigint      NOT NULL,
    ts          timestamptz NOT NULL,
    local_date  date        NOT NULL,   -- the date part of ts at the door's own offset
    category    text        NOT NULL,
    type        text        NOT NULL,
    hash        text        NOT NULL,
    prev_hash   text        NOT NULL,
    hash_ok     boolean     NOT NULL,   -- hash is the sha-256 of the event without it
    topic       text        NOT NULL,
    payload     bytea       NOT NULL,   -- the MQTT payload exactly as received
    received_at timestamptz NOT NULL,
    received_id bigserial   NOT NULL,   -- the order the archive stored the events in (the page's stream)
    PRIMARY KEY (site, door, epoch, seq, ts)
) PARTITION BY RANGE (ts);
ALTER TABLE events ADD COLUMN IF NOT EXISTS received_id bigserial NOT NULL;
ALTER TABLE events ADD COLUMN IF NOT EXISTS epoch integer NOT NULL DEFAULT 1;
ALTER TABLE event_keys ADD COLUMN IF NOT EXISTS epoch integer NOT NULL DEFAULT 1;
CREATE INDEX IF NOT EXISTS events_local_date ON events (local_date);
CREATE INDEX IF NOT EXISTS events_received_id ON events (received_id);
CREATE TABLE IF NOT EXISTS conflicts (
    id          bigserial PRIMARY KEY,
    site        text        NOT NULL,
    door        text        NOT NULL,
    epoch       integer     NOT NULL DEFAULT 1,
    seq         bigint      NOT NULL,
    ts          timestamptz NOT NULL,
    hash        text        NOT NULL,
    stored_hash text,                   -- the archived copy's hash (NULL: after_retention)
    reason      text        NOT NULL,   -- conflicting_copy | after_retention
    topic       text        NOT NULL,
    payload     bytea       NOT NULL,
    received_at timestamptz NOT NULL
);
ALTER TABLE conflicts ADD COLUMN IF NOT EXISTS epoch integer NOT NULL DEFAULT 1;
CREATE INDEX IF NOT EXISTS conflicts_key ON conflicts (site, door, seq);
DO $$ BEGIN  -- an archive of one chain per door: its keys gain the epoch (its events are epoch 1)
    IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
                   AND a.attnum = ANY (i.indkey) WHERE i.indrelid = 'event_keys'::regclass AND i.indisprimary
                   AND a.attname = 'epoch') THEN
        ALTER TABLE event_keys DROP CONSTRAINT event_keys_pkey, ADD PRIMARY KEY (site, door, epoch, seq);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
                   AND a.attnum = ANY (i.indkey) WHERE i.indrelid = 'events'::regclass AND i.indisprimary
                   AND a.attname = 'epoch') THEN
        ALTER TABLE events DROP CONSTRAINT events_pkey, ADD PRIMARY KEY (site, door, epoch, seq, ts);
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS epochs (
    site        text        NOT NULL,
    door        text        NOT NULL,
    epoch       integer     NOT NULL,
    started_at  timestamptz NOT NULL,
    current     boolean     NOT NULL,   -- the door's current chain (one per door)
    head_seq    bigint      NOT NULL DEFAULT 0,  -- the highest seq the door published: a linked event or its status
    head_hash   text,
    head_source text,                   -- 'event' or 'status'
    status_seq  bigint,                 -- last_seq and last_hash of the door's last status checked
    status_hash text,
    PRIMARY KEY (site, door, epoch)
);
CREATE UNIQUE INDEX IF NOT EXISTS epochs_current ON epochs (site, door) WHERE current;
INSERT INTO epochs (site, door, epoch, started_at, current)  -- the doors of an archive written before epochs
    SELECT DISTINCT k.site, k.door, 1, now(), true FROM event_keys k
    WHERE NOT EXISTS (SELECT 1 FROM epochs e WHERE e.site = k.site AND e.door = k.door)
    AND NOT EXISTS (SELECT 1 FROM epochs LIMIT 1);
CREATE TABLE IF NOT EXISTS anomalies (
    id     bigserial   PRIMARY KEY,
    site   text        NOT NULL,
    door   text        NOT NULL,
    epoch  integer,
    seq    bigint,
    kind   text        NOT NULL,        -- new_epoch | epoch_resumed | conflicting_copy | copy_replaced
                                        -- | head_mismatch | head_regressed
    detail text        NOT NULL,
    at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS anomalies_door ON anomalies (site, door, id);
CREATE TABLE IF NOT EXISTS months (
    month        date        PRIMARY KEY,   -- the first day, in the archive's zone
    partition    text        NOT NULL,
    starts       timestamptz NOT NULL,
    ends         timestamptz NOT NULL,
    dropped_at   timestamptz,
    dropped_rows bigint
);
CREATE TABLE IF NOT EXISTS exports (
    id          bigserial   PRIMARY KEY,
    month       date        NOT NULL REFERENCES months,
    exported_at timestamptz NOT NULL,
    rows        bigint      NOT NULL,
    sha256      text        NOT NULL,
    target      text        NOT NULL
);
"""

# The ingest's own tables: each door's verified chain head, its last status and occupancy, and
# the messages refused as they entered.
INGEST_SCHEMA = """
CREATE TABLE IF NOT EXISTS door_chains (
    site        text    NOT NULL,
    door        text    NOT NULL,
    epoch       integer NOT NULL DEFAULT 1,
    verified_to bigint  NOT NULL,       -- every seq from 1 to here is archived and its chain verified
    last_hash   text    NOT NULL,
    problem     text,                   -- the first break found, if any (final)
    PRIMARY KEY (site, door, epoch)
);
ALTER TABLE door_chains ADD COLUMN IF NOT EXISTS epoch integer NOT NULL DEFAULT 1;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
                   AND a.attnum = ANY (i.indkey) WHERE i.indrelid = 'door_chains'::regclass AND i.indisprimary
                   AND a.attname = 'epoch') THEN
        ALTER TABLE door_chains DROP CONSTRAINT door_chains_pkey, ADD PRIMARY KEY (site, door, epoch);
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS door_state (
    site         text NOT NULL,
    door         text NOT NULL,
    status       text,                  -- the last retained status (JSON), as the door published it
    status_at    timestamptz,
    occupancy    text,                  -- the last retained occupancy (JSON)
    occupancy_at timestamptz,
    PRIMARY KEY (site, door)
);
CREATE TABLE IF NOT EXISTS ingest_rejects (
    id          bigserial   PRIMARY KEY,
    received_at timestamptz NOT NULL,
    site        text        NOT NULL DEFAULT '',   -- from the topic ('' when the topic names none)
    door        text        NOT NULL DEFAULT '',
    topic       text        NOT NULL,
    reason      text        NOT NULL,
    payload     bytea       NOT NULL
);
ALTER TABLE ingest_rejects ADD COLUMN IF NOT EXISTS site text NOT NULL DEFAULT '';
ALTER TABLE ingest_rejects ADD COLUMN IF NOT EXISTS door text NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS ingest_rejects_door ON ingest_rejects (site, door, id);
"""

_COLUMNS = ("ord", "site", "door", "seq", "ts", "local_date", "category", "type", "hash", "prev_hash",
            "hash_ok", "topic", "payload", "received_at", "epoch")
_EVENT_COLUMNS = ", ".join(_COLUMNS[1:])


class DataRefused(StoreError):
    """PostgreSQL refused the data of a batch (a value it cannot hold, a constraint), not for being away:
    storing the same batch again fails again. The ingest stores its events one by one to find which."""


@dataclass(frozen=True)
class Incoming:
    """One event as it came from the broker: its payload bytes and the parsed object."""

    site: str
    door: str
    topic: str
    payload: bytes
    event: dict
    received_at: str   # ISO 8601 with offset


@dataclass(frozen=True)
class Ingested:
    """What one batch did: new events, exact repeats, conflicting copies, copies of dropped months, and
    the (site, door, seq) whose archived copy was replaced by a conflicting one that verifies better."""

    stored: int
    duplicates: int
    conflicts: int
    after_retention: int
    replaced: tuple[tuple[str, str, int, int], ...] = ()   # (site, door, epoch, seq)
    epochs: tuple[int, ...] = ()   # the epoch of each event of the batch, in its order
    current: dict[tuple[str, str], int] = field(default_factory=dict)   # each door's current epoch after it
    anomalies: tuple[Anomaly, ...] = ()


@dataclass(frozen=True)
class Conflict:
    site: str
    door: str
    epoch: int
    seq: int
    ts: datetime
    hash: str
    stored_hash: str | None
    reason: str
    received_at: datetime


@dataclass(frozen=True)
class Retention:
    """What ``drop_expired`` did: the months dropped, and the old months kept with the reason."""

    dropped: list[date]
    kept: dict[date, str]


class PgArchive:
    """The station's archive in one PostgreSQL database. Thread-safe: one lock, one connection."""

    def __init__(self, url: str, *, zone: str = "Asia/Shanghai"):
        self.url = url
        self.zone = ZoneInfo(zone)
        self._lock = threading.RLock()
        try:
            self.conn = psycopg.connect(url, autocommit=False)
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('accessctl archive schema'))")
                self.conn.execute(SCHEMA)
        except psycopg.Error as exc:
            raise StoreError(f"{safe_url(url)}: cannot open the PostgreSQL archive: {exc}") from None
        self._months: dict[date, bool] = {}   # month -> dropped
        self._load_months()

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # ------------------------------------------------------------------ months
    def _load_months(self) -> None:
        with self._lock, self.conn.transaction():
            rows = self.conn.execute("SELECT month, dropped_at IS NOT NULL FROM months").fetchall()
        self._months = dict(rows)

    def month_of(self, ts: datetime) -> date:
        local = ts.astimezone(self.zone)
        return date(local.year, local.month, 1)

    def _bounds(self, month: date) -> tuple[datetime, datetime]:
        nxt = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        return (datetime(month.year, month.month, 1, tzinfo=self.zone),
                datetime(nxt.year, nxt.month, 1, tzinfo=self.zone))

    def _ensure_months(self, months: Iterable[date]) -> None:
        """Make the partitions of ``months`` that do not exist yet (never for a dropped month)."""
        missing = sorted(m for m in set(months) if m not in self._months)
        if not missing:
            return
        with self._lock, self.conn.transaction():
            for month in missing:
                starts, ends = self._bounds(month)
                name = f"events_{month:%Y_%m}"
                self.conn.execute("INSERT INTO months (month, partition, starts, ends) VALUES (%s, %s, %s, %s)"
                                  " ON CONFLICT (month) DO NOTHING", (month, name, starts, ends))
                dropped = self.conn.execute("SELECT dropped_at IS NOT NULL FROM months WHERE month = %s",
                                            (month,)).fetchone()[0]
                if not dropped:
                    self.conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF events"
                                              " FOR VALUES FROM ({}) TO ({})").format(
                        sql.Identifier(name), sql.Literal(starts), sql.Literal(ends)))
                self._months[month] = dropped

    # ------------------------------------------------------------------ writing
    def _row(self, ordinal: int, item: Incoming) -> tuple:
        ev = item.event
        where = f"{item.site}/{item.door}"
        seq = ev.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise DataRefused(f"{where}: event seq {seq!r} is not a positive integer")
        ts = _aware(ev.get("ts"), f"{where} #{seq}: ts")
        received = _aware(item.received_at, f"{where} #{seq}: received_at")
        h = str(ev.get("hash", ""))
        hash_ok = h == event_hash({k: v for k, v in ev.items() if k != "hash"})
        return (ordinal, item.site, item.door, seq, ts, ts.date(), str(ev.get("category", "")),
                str(ev.get("type", "")), h, str(ev.get("prev_hash", "")), hash_ok, item.topic,
                bytes(item.payload), received, 0)   # the epoch is decided when stored

    def store_events(self, items: Iterable[Incoming], *, settle: bool = False) -> Ingested:
        """Archive a batch in one transaction (COPY into a scratch table, then set-based inserts).

        Each (site, door, seq) is stored once: a repeat with the same hash is a duplicate, one
        with another hash goes to ``conflicts``, as does any copy of an event whose month was
        dropped. With ``settle`` (the ingest's way) the copy that verifies best then stays in
        ``events`` (:func:`.chain.copy_score`, as on the SQLite archive); without it (a migration,
        which reports what the archive already holds) the archived copy stays. Raises
        :class:`DataRefused` (nothing stored) when PostgreSQL refuses the batch's data (no
        integer seq, a time without offset, a value out of range), :class:`StoreError` when it
        cannot be reached.
        """
        try:
            rows = [self._row(i, item) for i, item in enumerate(items)]
            if not rows:
                return Ingested(0, 0, 0, 0)
            self._ensure_months(self.month_of(r[4]) for r in rows)
            with self._lock, self.conn.transaction():
                return self._ingest(rows, settle)
        except (ValueError, OverflowError, psycopg.DataError, psycopg.IntegrityError) as exc:
            raise DataRefused(f"{safe_url(self.url)}: PostgreSQL refused the data: {exc}") from None
        except psycopg.Error as exc:
            raise StoreError(f"{safe_url(self.url)}: storing {len(rows)} event(s) failed: {exc}") from None

    def _ingest(self, rows: list[tuple], settle: bool) -> Ingested:
        c = self.conn
        # epochs are decided one writer at a time, in the batch's order; received_id must become visible
        # in order as well: one lock for both
        c.execute("SELECT pg_advisory_xact_lock(hashtext('accessctl events received_id'))")
        anomalies: list[Anomaly] = []
        rows, current = self._epochs(rows, anomalies)
        c.execute("CREATE TEMP TABLE incoming (ord int, site text, door text, seq bigint, ts timestamptz,"
                  " local_date date, category text, type text, hash text, prev_hash text, hash_ok boolean,"
                  " topic text, payload bytea, received_at timestamptz, epoch int) ON COMMIT DROP")
        with c.cursor() as cur, cur.copy(f"COPY incoming ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        # copies of events whose month was dropped (by any station process) are conflicts
        late = c.execute(
            "WITH late AS (DELETE FROM incoming i USING months m WHERE m.dropped_at IS NOT NULL"
            " AND i.ts >= m.starts AND i.ts < m.ends RETURNING i.*)"
            " INSERT INTO conflicts (site, door, epoch, seq, ts, hash, stored_hash, reason, topic, payload,"
            " received_at) SELECT site, door, epoch, seq, ts, hash, NULL, 'after_retention', topic, payload,"
            " received_at FROM late").rowcount
        fresh = [o for (o,) in c.execute(   # the ord of each copy stored as a new event
            "WITH firsts AS (SELECT DISTINCT ON (site, door, epoch, seq) * FROM incoming"
            "                ORDER BY site, door, epoch, seq, ord),"
            " fresh AS (INSERT INTO event_keys (site, door, epoch, seq, ts, hash)"
            "           SELECT site, door, epoch, seq, ts, hash FROM firsts ON CONFLICT DO NOTHING"
            "           RETURNING site, door, epoch, seq),"
            f" stored AS (INSERT INTO events ({_EVENT_COLUMNS}) SELECT {', '.join('f.' + n for n in _COLUMNS[1:])}"
            "            FROM firsts f JOIN fresh USING (site, door, epoch, seq) ORDER BY f.ord)"
            " SELECT f.ord FROM firsts f JOIN fresh USING (site, door, epoch, seq)")]
        stored = len(fresh)
        if fresh:
            self._links(rows, fresh, anomalies)
        conflicts = 0
        replaced: list[tuple[str, str, int, int]] = []
        if stored + late < len(rows):
            # some copies were not new: which of them differ from the archived one (its hash, or, with the
            # same hash, what it says: one of the two is not what its hash vouches for) and are not kept yet?
            kept = c.execute(
                "INSERT INTO conflicts (site, door, epoch, seq, ts, hash, stored_hash, reason, topic, payload,"
                " received_at)"
                " SELECT DISTINCT ON (i.site, i.door, i.epoch, i.seq, i.hash, i.payload) i.site, i.door, i.epoch,"
                " i.seq, i.ts, i.hash, k.hash, 'conflicting_copy', i.topic, i.payload, i.received_at"
                " FROM incoming i JOIN event_keys k USING (site, door, epoch, seq)"
                " WHERE (i.hash <> k.hash OR EXISTS (SELECT 1 FROM events e WHERE e.site = i.site"
                " AND e.door = i.door AND e.epoch = i.epoch AND e.seq = i.seq AND e.ts = k.ts"
                " AND e.payload <> i.payload"
                " AND convert_from(e.payload, 'UTF8')::jsonb <> convert_from(i.payload, 'UTF8')::jsonb))"
                " AND NOT EXISTS (SELECT 1 FROM conflicts x WHERE x.site = i.site AND x.door = i.door"
                " AND x.epoch = i.epoch AND x.seq = i.seq AND x.hash = i.hash AND x.payload = i.payload)"
                " ORDER BY i.site, i.door, i.epoch, i.seq, i.hash, i.payload, i.ord"
                " RETURNING site, door, epoch, seq, hash, stored_hash, received_at").fetchall()
            conflicts = len(kept)
            for site, door, epoch, seq, h, archived, at in kept:
                anomalies.append(self._anomaly(
                    site, door, epoch, seq, "conflicting_copy",
                    f"a second copy of #{seq} differs from the archived one (hash {h[:12]}… vs {archived[:12]}…);"
                    " both are kept", at))
        self._heads(fresh, anomalies)
        # a conflicting copy, or the new neighbour of one, may show which copy verifies best
        for site, door, epoch, seq in [] if not settle else c.execute(
                "SELECT DISTINCT x.site, x.door, x.epoch, x.seq FROM conflicts x JOIN incoming i ON x.site = i.site"
                " AND x.door = i.door AND x.epoch = i.epoch AND x.seq IN (i.seq, i.seq - 1)"
                " WHERE x.reason = 'conflicting_copy' ORDER BY 1, 2, 3, 4").fetchall():
            if self._settle(site, door, epoch, seq, anomalies):
                replaced.append((site, door, epoch, seq))
                if seq > 1 and self._settle(site, door, epoch, seq - 1, anomalies):
                    replaced.append((site, door, epoch, seq - 1))
        return Ingested(stored, len(rows) - stored - conflicts - late, conflicts, late, tuple(replaced),
                        tuple(r[-1] for r in sorted(rows)), current, tuple(anomalies))

    def _links(self, rows: list[tuple], fresh: list[int], anomalies: list[Anomaly]) -> None:
        """The new events' ``bad_hash`` and ``broken_link`` anomalies, as the SQLite archive keeps them: a hash
        that is not the event's SHA-256; a ``prev_hash`` that is not the archived predecessor's hash (the
        genesis hash for #1); an archived successor (not of this batch) whose ``prev_hash`` is not the new
        event's hash. Two indexed look-ups per batch, whatever its size."""
        stored = set(fresh)
        new = sorted((r for r in rows if r[0] in stored), key=lambda r: r[0])
        keys = {(r[1], r[2], r[14], r[3]) for r in new}

        def lookup(query: str, wanted: list[tuple]) -> dict[tuple, str]:
            if not wanted:
                return {}
            columns = list(zip(*wanted, strict=True))
            return {(s, d, e, q): v for s, d, e, q, v in self.conn.execute(query, [list(c) for c in columns])}

        before = lookup("SELECT k.site, k.door, k.epoch, k.seq, k.hash FROM unnest(%s::text[], %s::text[], %s::int[],"
                        " %s::bigint[]) AS w(site, door, epoch, seq) JOIN event_keys k USING (site, door, epoch, seq)",
                        [(r[1], r[2], r[14], r[3] - 1) for r in new if r[3] > 1])
        after = lookup("SELECT k.site, k.door, k.epoch, k.seq, n.prev_hash FROM unnest(%s::text[], %s::text[],"
                       " %s::int[], %s::bigint[]) AS w(site, door, epoch, seq) JOIN event_keys k"
                       " USING (site, door, epoch, seq) JOIN events n ON n.site = k.site AND n.door = k.door"
                       " AND n.epoch = k.epoch AND n.seq = k.seq AND n.ts = k.ts",
                       [(r[1], r[2], r[14], r[3] + 1) for r in new if (r[1], r[2], r[14], r[3] + 1) not in keys])
        for _, site, door, seq, _, _, _, _, h, prev, ok, _, _, at, epoch in new:
            if not ok:
                anomalies.append(self._anomaly(site, door, epoch, seq, "bad_hash",
                                               f"#{seq}: hash {h[:12]}… is not the sha-256 of the event", at))
            if seq == 1 and prev != GENESIS_HASH:
                anomalies.append(self._anomaly(site, door, epoch, seq, "broken_link",
                                               "#1: prev_hash is not the genesis hash", at))
            elif seq > 1 and before.get((site, door, epoch, seq - 1), prev) != prev:
                anomalies.append(self._anomaly(site, door, epoch, seq, "broken_link",
                                               f"#{seq}: prev_hash does not match the hash of the archived #{seq - 1}",
                                               at))
            if after.get((site, door, epoch, seq + 1), h) != h:
                anomalies.append(self._anomaly(site, door, epoch, seq + 1, "broken_link",
                                               f"#{seq + 1}: prev_hash does not match the hash of #{seq}", at))

    def _heads(self, fresh: list[int], anomalies: list[Anomaly]) -> None:
        """Each epoch's head after a batch: its highest new seq, when its hash and link verify; a new event that
        is not the copy the door's status announced for its seq is a ``head_mismatch`` (as on SQLite)."""
        c = self.conn
        for site, door, epoch, seq, h, announced, at in c.execute(
                "SELECT i.site, i.door, i.epoch, i.seq, i.hash, e.head_hash, i.received_at FROM incoming i"
                " JOIN epochs e USING (site, door, epoch) WHERE i.ord = ANY (%s) AND e.head_seq = i.seq"
                " AND e.head_source = 'status' AND e.head_hash <> i.hash ORDER BY i.ord", (fresh,)).fetchall():
            anomalies.append(self._anomaly(site, door, epoch, seq, "head_mismatch",
                                           event_head_mismatch(seq, h, announced), at))
        c.execute(
            "WITH top AS (SELECT DISTINCT ON (site, door, epoch) * FROM incoming WHERE ord = ANY (%s)"
            "             ORDER BY site, door, epoch, seq DESC),"
            " linked AS (SELECT i.site, i.door, i.epoch, i.seq, i.hash FROM top i LEFT JOIN event_keys p"
            "  ON p.site = i.site AND p.door = i.door AND p.epoch = i.epoch AND p.seq = i.seq - 1"
            "  WHERE i.hash_ok AND i.prev_hash = CASE WHEN i.seq = 1 THEN %s ELSE p.hash END)"
            " UPDATE epochs e SET head_seq = l.seq, head_hash = l.hash, head_source = 'event' FROM linked l"
            " WHERE e.site = l.site AND e.door = l.door AND e.epoch = l.epoch"
            " AND (l.seq > e.head_seq OR (l.seq = e.head_seq AND e.head_hash IS NULL))", (fresh, GENESIS_HASH))

    def _epochs(self, rows: list[tuple], anomalies: list[Anomaly]) -> tuple[list[tuple], dict[tuple[str, str], int]]:
        """``rows`` with the epoch of each (:func:`.chain.epoch_for`, the SQLite archive's rule), in the batch's
        order; opens and resumes epochs. Returns the rows and each door's current epoch after the batch."""
        c = self.conn
        doors = sorted({(r[1], r[2]) for r in rows})
        known: dict[tuple[str, str], tuple[int, int]] = {}   # door -> (current epoch, highest epoch)
        for site, door, current, highest in c.execute(
                "SELECT site, door, max(epoch) FILTER (WHERE current), max(epoch) FROM epochs"
                " WHERE (site, door) IN (SELECT * FROM unnest(%s::text[], %s::text[])) GROUP BY site, door",
                ([d[0] for d in doors], [d[1] for d in doors])):
            known[(site, door)] = (current or highest, highest)
        new_doors = [d for d in doors if d not in known]
        if new_doors:
            now = datetime.now(UTC)
            c.cursor().executemany("INSERT INTO epochs (site, door, epoch, started_at, current)"
                                   " VALUES (%s, %s, 1, %s, true) ON CONFLICT DO NOTHING",
                                   [(s, d, now) for s, d in new_doors])
            known.update({d: (1, 1) for d in new_doors})
        current = {d: known[d][0] for d in doors}
        highest = {d: known[d][1] for d in doors}
        batch: dict[tuple, tuple[str, datetime]] = {}   # (site, door, epoch, seq) -> (hash, ts): earlier in the batch
        out = []
        for row in rows:
            site, door, seq, ts, h, prev, ok = row[1], row[2], row[3], row[4], row[8], row[9], row[10]
            key = (site, door)
            if highest[key] == 1 and not (seq == 1 and prev == GENESIS_HASH and ok):
                epoch = 1   # one chain, and not the start of another: nothing to decide
            elif seq > 1 and batch.get((site, door, current[key], seq - 1), ("",))[0] == prev:
                epoch = current[key]   # it follows the current chain's event just before it in the batch
            else:
                choice = epoch_for(current[key], seq, ts, h, prev, ok, _PgEpochs(c, site, door, batch))
                epoch = choice.epoch
                at = row[13]
                if epoch is None:
                    epoch = highest[key] = highest[key] + 1
                    last = _PgEpochs(c, site, door, batch).newest(current[key])
                    c.execute("UPDATE epochs SET current = false WHERE site = %s AND door = %s AND current",
                              (site, door))
                    c.execute("INSERT INTO epochs (site, door, epoch, started_at, current) VALUES (%s, %s, %s, %s,"
                              " true)", (site, door, epoch, at))
                    anomalies.append(self._anomaly(site, door, epoch, 1, "new_epoch",
                                                   new_epoch_detail(epoch, current[key], last[0] if last else 0),
                                                   at))
                    current[key] = epoch
                elif choice.resumed:
                    c.execute("UPDATE epochs SET current = false WHERE site = %s AND door = %s AND current",
                              (site, door))
                    c.execute("UPDATE epochs SET current = true WHERE site = %s AND door = %s AND epoch = %s",
                              (site, door, epoch))
                    anomalies.append(self._anomaly(site, door, epoch, seq, "epoch_resumed",
                                                   resumed_detail(seq, epoch, current[key]), at))
                    current[key] = epoch
            batch.setdefault((site, door, epoch, seq), (h, ts))
            out.append((*row[:-1], epoch))
        return out, current

    def _anomaly(self, site: str, door: str, epoch: int | None, seq: int | None, kind: str, detail: str,
                 at: datetime | str) -> Anomaly:
        self.conn.execute("INSERT INTO anomalies (site, door, epoch, seq, kind, detail, at)"
                          " VALUES (%s, %s, %s, %s, %s, %s, %s)", (site, door, epoch, seq, kind, detail, at))
        at = at.isoformat() if isinstance(at, datetime) else at
        return Anomaly(site, door, seq, kind, detail, at, epoch)

    def _head(self, site: str, door: str, epoch: int) -> tuple[int, str | None, str | None]:
        row = self.conn.execute("SELECT head_seq, head_hash, head_source FROM epochs WHERE site = %s AND door = %s"
                                " AND epoch = %s", (site, door, epoch)).fetchone()
        return row if row else (0, None, None)

    def _hash_at(self, site: str, door: str, epoch: int, seq: int) -> str | None:
        row = self.conn.execute("SELECT hash FROM event_keys WHERE site = %s AND door = %s AND epoch = %s"
                                " AND seq = %s", (site, door, epoch, seq)).fetchone()
        return row[0] if row else None

    def _settle(self, site: str, door: str, epoch: int, seq: int, anomalies: list[Anomaly]) -> bool:
        """Keep in ``events`` the copy of ``seq`` that verifies best (:func:`.chain.copy_score`, the SQLite
        archive's rule), the other copies in ``conflicts``; True when the archived copy was replaced."""
        c = self.conn
        incumbent = c.execute("SELECT ts, hash, prev_hash, hash_ok, topic, payload, received_at FROM events"
                              " WHERE site = %s AND door = %s AND epoch = %s AND seq = %s",
                              (site, door, epoch, seq)).fetchone()
        candidates = c.execute("SELECT id, topic, payload, received_at FROM conflicts WHERE site = %s"
                               " AND door = %s AND epoch = %s AND seq = %s AND reason = 'conflicting_copy'"
                               " ORDER BY id", (site, door, epoch, seq)).fetchall()
        if incumbent is None or not candidates:
            return False
        before = self._hash_at(site, door, epoch, seq - 1)
        after = c.execute("SELECT prev_hash FROM events WHERE site = %s AND door = %s AND epoch = %s AND seq = %s",
                          (site, door, epoch, seq + 1)).fetchone()
        head_seq, head_hash, source = self._head(site, door, epoch)
        announced = head_hash if head_seq == seq and source == "status" else None

        def score(h: str, prev: str, ok: bool) -> int:
            return copy_score(seq, h, prev, ok, before=before, after_prev=after[0] if after else None,
                              announced=announced)

        ts, h, prev, ok, topic, payload, received_at = incumbent
        best, best_score = None, score(h, prev, ok)
        for cid, c_topic, c_payload, c_received in candidates:
            try:
                event = json.loads(bytes(c_payload))
                item = Incoming(site, door, c_topic, bytes(c_payload), event, c_received.isoformat())
                row = (*self._row(0, item)[:-1], epoch)
            except (ValueError, TypeError, StoreError):
                continue  # a copy that cannot be read is no candidate
            candidate_score = score(row[8], row[9], row[10])
            if candidate_score > best_score:
                best, best_score = (cid, row), candidate_score
        if best is None:
            return False
        cid, row = best
        month = self.month_of(row[4])
        self._ensure_months([month])
        if self._months.get(month):
            return False  # its month was dropped after its export: the archived copy stays
        c.execute("DELETE FROM events WHERE site = %s AND door = %s AND epoch = %s AND seq = %s",
                  (site, door, epoch, seq))
        c.execute(f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({', '.join(['%s'] * (len(_COLUMNS) - 1))})",
                  row[1:])
        c.execute("UPDATE event_keys SET ts = %s, hash = %s WHERE site = %s AND door = %s AND epoch = %s"
                  " AND seq = %s", (row[4], row[8], site, door, epoch, seq))
        c.execute("DELETE FROM conflicts WHERE id = %s", (cid,))
        c.execute("INSERT INTO conflicts (site, door, epoch, seq, ts, hash, stored_hash, reason, topic, payload,"
                  " received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, 'conflicting_copy', %s, %s, %s)",
                  (site, door, epoch, seq, ts, h, row[8], topic, payload, received_at))
        c.execute("UPDATE conflicts SET stored_hash = %s WHERE site = %s AND door = %s AND epoch = %s AND seq = %s"
                  " AND reason = 'conflicting_copy'", (row[8], site, door, epoch, seq))
        if head_seq == seq and source == "event":
            c.execute("UPDATE epochs SET head_hash = %s WHERE site = %s AND door = %s AND epoch = %s",
                      (row[8], site, door, epoch))
        anomalies.append(self._anomaly(
            site, door, epoch, seq, "copy_replaced",
            f"#{seq}: the copy {row[8][:12]}… verifies and the archived {h[:12]}… did not (hash or chain link): it "
            "replaces it in the register; the other copy is kept in conflicts", row[13]))
        return True

    def store_status(self, site: str, door: str, kind: str, value: object, at: str) -> list[Anomaly]:
        """Check the head a door's ``status`` publishes (its ``last_seq``, and ``last_hash`` when present)
        against the door's current epoch, as the SQLite archive does: kept as the epoch's head, and a
        head that went back or names another hash than the archived one is an anomaly (returned and kept).
        The status itself is kept by the ingest (``door_state``); ``occupancy`` has no head."""
        if kind not in ("status", "occupancy"):
            raise ValueError(kind)
        last_seq = value.get("last_seq") if kind == "status" and isinstance(value, dict) else None
        if not isinstance(last_seq, int) or isinstance(last_seq, bool) or last_seq < 1:
            return []
        last_hash = value.get("last_hash")
        last_hash = last_hash if isinstance(last_hash, str) and HASH.fullmatch(last_hash) else None
        anomalies: list[Anomaly] = []
        try:
            with self._lock, self.conn.transaction():
                c = self.conn
                c.execute("SELECT pg_advisory_xact_lock(hashtext('accessctl events received_id'))")
                c.execute("INSERT INTO epochs (site, door, epoch, started_at, current) SELECT %s, %s, 1, %s, true"
                          " WHERE NOT EXISTS (SELECT 1 FROM epochs WHERE site = %s AND door = %s)",
                          (site, door, at, site, door))
                epoch, status_seq, status_hash = c.execute(
                    "SELECT epoch, status_seq, status_hash FROM epochs WHERE site = %s AND door = %s AND current",
                    (site, door)).fetchone()
                if (status_seq, status_hash) == (last_seq, value.get("last_hash")):
                    return []   # the same status again (a reconnect hands the retained one over again)
                c.execute("UPDATE epochs SET status_seq = %s, status_hash = %s WHERE site = %s AND door = %s"
                          " AND epoch = %s", (last_seq, value.get("last_hash"), site, door, epoch))
                head_seq, head_hash, _ = self._head(site, door, epoch)
                archived = self._hash_at(site, door, epoch, last_seq)
                if last_seq >= head_seq:
                    if last_seq > head_seq or not head_hash or (last_hash and archived and archived != last_hash):
                        c.execute("UPDATE epochs SET head_seq = %s, head_hash = %s, head_source = %s WHERE site = %s"
                                  " AND door = %s AND epoch = %s",
                                  (last_seq, last_hash or (head_hash if last_seq == head_seq else None),
                                   "status" if last_hash or last_seq > head_seq else "event", site, door, epoch))
                    if last_hash and archived and archived != last_hash:
                        self._settle(site, door, epoch, last_seq, anomalies)  # the door vouches for one copy
                        archived = self._hash_at(site, door, epoch, last_seq)
                found = status_head(last_seq, last_hash, head_seq, head_hash, archived)
                if found:
                    anomalies.append(self._anomaly(site, door, epoch, last_seq, *found, at))
        except psycopg.Error as exc:
            raise StoreError(f"{safe_url(self.url)}: checking {site}/{door}'s status failed: {exc}") from None
        return anomalies

    def store_event(self, site: str, door: str, topic: str, payload: bytes, event: dict, received_at: str,
                    *, backfill: bool = True) -> Stored:
        """Archive one event; the result says, as the SQLite archive's does, whether it was a duplicate,
        its epoch and which anomalies it showed (``new_epoch``, ``conflicting_copy``, ``bad_hash`` …).

        The per-door sequence bookkeeping of the SQLite archive (``contiguous``, gaps) is not
        kept here: ``Stored.contiguous`` and ``expected`` stay 0. ``backfill`` is accepted for
        the same signature.
        """
        item = Incoming(site, door, topic, payload, event, received_at)
        done = self.store_events([item], settle=True)
        result = Stored(duplicate=done.stored == 0, conflict=bool(done.conflicts), epoch=done.epochs[0],
                        anomalies=list(done.anomalies))
        seq = event["seq"]
        if done.after_retention:
            result.anomalies.append(Anomaly(site, door, seq, "after_retention",
                                            f"#{seq} belongs to a month already dropped after its export",
                                            received_at, done.epochs[0]))
        return result

    # ------------------------------------------------------------------ reading
    def _query(self, query, params=()) -> list[tuple]:
        with self._lock, self.conn.transaction():
            return self.conn.execute(query, params).fetchall()

    def current_epoch(self, site: str, door: str) -> int:
        """The door's current epoch (1 for a door not seen yet)."""
        rows = self._query("SELECT epoch FROM epochs WHERE site=%s AND door=%s AND current", (site, door))
        return rows[0][0] if rows else 1

    def epochs(self, site: str, door: str) -> list[Epoch]:
        """The door's chain epochs, oldest first (the sequence bookkeeping fields are the SQLite archive's:
        ``baseline`` 0, ``contiguous`` and ``expected`` the highest archived seq)."""
        rows = self._query(
            "SELECT e.epoch, coalesce((SELECT max(seq) FROM event_keys k WHERE k.site = e.site AND k.door = e.door"
            " AND k.epoch = e.epoch), 0), e.head_seq, e.head_hash, e.head_source, e.started_at FROM epochs e"
            " WHERE e.site=%s AND e.door=%s ORDER BY e.epoch", (site, door))
        return [Epoch(site, door, epoch, 0, top, top, hs, hh, src, started.isoformat())
                for epoch, top, hs, hh, src, started in rows]

    def anomalies(self, site: str | None = None, door: str | None = None, kind: str | None = None) -> list[Anomaly]:
        where, params = _scope(site, door)
        if kind:
            where += (" AND" if where else " WHERE") + " kind=%s"
            params.append(kind)
        rows = self._query(f"SELECT site, door, seq, kind, detail, at, epoch FROM anomalies{where} ORDER BY id", params)
        return [Anomaly(s, d, q, k, t, at.isoformat(), e) for s, d, q, k, t, at, e in rows]

    def has(self, site: str, door: str, seq: int, *, epoch: int | None = None) -> bool:
        """Is ``seq`` of the door's epoch (default: its current one) archived?"""
        epoch = epoch or self.current_epoch(site, door)
        return bool(self._query("SELECT 1 FROM event_keys WHERE site=%s AND door=%s AND epoch=%s AND seq=%s",
                                (site, door, epoch, seq)))

    def count(self, site: str | None = None, door: str | None = None) -> int:
        where, params = _scope(site, door)
        return self._query(f"SELECT count(*) FROM events{where}", params)[0][0]

    def payload(self, site: str, door: str, seq: int, *, epoch: int | None = None) -> bytes | None:
        epoch = epoch or self.current_epoch(site, door)
        rows = self._query("SELECT payload FROM events WHERE site=%s AND door=%s AND epoch=%s AND seq=%s",
                           (site, door, epoch, seq))
        return bytes(rows[0][0]) if rows else None

    def events(self, site: str, door: str, from_seq: int = 1, to_seq: int | None = None, *,
               epoch: int | None = None) -> list[dict]:
        """The archived events of one door's epoch (default: the current one) in seq order, parsed from the
        payloads as received."""
        epoch = epoch or self.current_epoch(site, door)
        query = "SELECT payload FROM events WHERE site=%s AND door=%s AND epoch=%s AND seq >= %s"
        params: list = [site, door, epoch, from_seq]
        if to_seq is not None:
            query += " AND seq <= %s"
            params.append(to_seq)
        return [json.loads(p) for (p,) in self._query(query + " ORDER BY seq", params)]

    def events_on(self, day: date, site: str | None = None, door: str | None = None) -> Iterator[tuple[str, str, dict]]:
        """``(site, door, event)`` for every event whose ``ts`` falls on ``day`` at the door's own
        offset, in time order."""
        where, params = _scope(site, door)
        # Offsets run from -12:00 to +14:00: this ts window holds the day everywhere, so only the
        # partitions it touches are read.
        lo = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=14)
        hi = lo + timedelta(hours=14 + 24 + 12)
        where += (" AND" if where else " WHERE") + " local_date = %s AND ts >= %s AND ts < %s"
        params += [day, lo, hi]
        rows = self._query(f"SELECT site, door, payload FROM events{where} ORDER BY ts, site, door, seq", params)
        return iter([(s, d, json.loads(p)) for s, d, p in rows])

    def conflicts(self, site: str | None = None, door: str | None = None) -> list[Conflict]:
        where, params = _scope(site, door)
        rows = self._query("SELECT site, door, epoch, seq, ts, hash, stored_hash, reason, received_at"
                           f" FROM conflicts{where} ORDER BY id", params)
        return [Conflict(*r) for r in rows]

    def months(self) -> list[tuple[date, int, bool]]:
        """``(month, rows now, dropped)`` for every month the archive has had, oldest first."""
        out = []
        for month, name, dropped in self._query("SELECT month, partition, dropped_at IS NOT NULL FROM months"
                                                " ORDER BY month"):
            rows = 0 if dropped else self._query(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name)))[0][0]
            out.append((month, rows, dropped))
        return out

    # ------------------------------------------------------------------ export and retention
    def export_month(self, month: date, out: IO[bytes], *, target: str, now: datetime | None = None) -> int:
        """Write every event of ``month`` to ``out`` as JSON lines (in site, door, epoch, seq order) and
        record the export (rows, SHA-256, ``target``: where the file is kept). Returns the rows."""
        month = date(month.year, month.month, 1)
        info = self._query("SELECT partition, dropped_at FROM months WHERE month = %s", (month,))
        if not info:
            raise StoreError(f"the archive has no events for {month:%Y-%m}")
        name, dropped = info[0]
        if dropped is not None:
            raise StoreError(f"{month:%Y-%m} was dropped on {dropped:%Y-%m-%d}: nothing left to export")
        digest, rows = hashlib.sha256(), 0
        with self._lock, self.conn.transaction():
            # The count recorded is of the rows written; drop_expired compares it with the
            # partition's count at drop time, so rows that arrive after this export block the drop.
            with self.conn.cursor(name="export_month") as cur:
                cur.execute(sql.SQL("SELECT payload FROM {} ORDER BY site, door, epoch, seq").format(
                    sql.Identifier(name)))
                for (payload,) in cur:
                    line = json.dumps(json.loads(payload), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
                    out.write(line)
                    digest.update(line)
                    rows += 1
            self.conn.execute("INSERT INTO exports (month, exported_at, rows, sha256, target)"
                              " VALUES (%s, %s, %s, %s, %s)",
                              (month, now or datetime.now(UTC), rows, digest.hexdigest(), target))
        return rows

    def drop_expired(self, now: datetime, keep_days: int = MIN_RETENTION_DAYS) -> Retention:
        """Drop every month wholly older than ``keep_days`` whose last export holds all its rows.

        Older months that were never exported, or that received events after their export, are
        kept and named in the result with the reason.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if keep_days < MIN_RETENTION_DAYS:
            raise ValueError(f"keep_days {keep_days}: GB 50396 5.2.3 requires at least {MIN_RETENTION_DAYS} days")
        horizon = now - timedelta(days=keep_days)
        dropped: list[date] = []
        kept: dict[date, str] = {}
        candidates = self._query("SELECT month, partition FROM months WHERE dropped_at IS NULL AND ends <= %s"
                                 " ORDER BY month", (horizon,))
        for month, name in candidates:
            with self._lock, self.conn.transaction():
                # Lock the month's partition against concurrent ingest while deciding.
                self.conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(name)))
                rows = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()[0]
                last = self.conn.execute("SELECT rows, exported_at FROM exports WHERE month = %s"
                                         " ORDER BY exported_at DESC, id DESC LIMIT 1", (month,)).fetchone()
                if last is None:
                    kept[month] = "never exported"
                    continue
                if last[0] != rows:
                    kept[month] = (f"{rows - last[0]} event(s) arrived after the export of "
                                   f"{last[1]:%Y-%m-%d %H:%M}: export it again")
                    continue
                self.conn.execute(sql.SQL("DELETE FROM event_keys k USING {} e WHERE k.site = e.site"
                                          " AND k.door = e.door AND k.epoch = e.epoch AND k.seq = e.seq").format(
                    sql.Identifier(name)))
                self.conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                self.conn.execute("UPDATE months SET dropped_at = %s, dropped_rows = %s WHERE month = %s",
                                  (now, rows, month))
            self._months[month] = True
            dropped.append(month)
        return Retention(dropped, kept)


class _PgEpochs:
    """One door's archived epochs as :func:`.chain.epoch_for` reads them, with the events taken earlier in the
    same batch (``batch``: (site, door, epoch, seq) -> (hash, ts)), inside the batch's transaction."""

    def __init__(self, conn: psycopg.Connection, site: str, door: str, batch: dict[tuple, tuple[str, datetime]]):
        self.conn, self.site, self.door, self.batch = conn, site, door, batch

    def epoch_with(self, seq: int, h: str) -> int | None:
        row = self.conn.execute("SELECT max(epoch) FROM event_keys WHERE site = %s AND door = %s AND seq = %s"
                                " AND hash = %s", (self.site, self.door, seq, h)).fetchone()
        found = [e for (s, d, e, q), (bh, _) in self.batch.items()
                 if (s, d, q) == (self.site, self.door, seq) and bh == h]
        return max([*found, *([row[0]] if row[0] is not None else [])], default=None)

    def newest(self, epoch: int) -> tuple[int, datetime] | None:
        row = self.conn.execute("SELECT seq, ts FROM event_keys WHERE site = %s AND door = %s AND epoch = %s"
                                " ORDER BY seq DESC LIMIT 1", (self.site, self.door, epoch)).fetchone()
        found = [(q, ts) for (s, d, e, q), (_, ts) in self.batch.items() if (s, d, e) == (self.site, self.door, epoch)]
        return max([*found, *([tuple(row)] if row else [])], default=None)

    def expected(self, epoch: int) -> int:
        newest = self.newest(epoch)
        head = self.conn.execute("SELECT head_seq FROM epochs WHERE site = %s AND door = %s AND epoch = %s",
                                 (self.site, self.door, epoch)).fetchone()
        return max(newest[0] if newest else 0, head[0] if head else 0)


def _aware(value: object, what: str) -> datetime:
    if not isinstance(value, str):
        raise DataRefused(f"{what} {value!r} is not an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise DataRefused(f"{what} {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise DataRefused(f"{what} {value!r} has no UTC offset")
    return parsed


def _scope(site: str | None, door: str | None) -> tuple[str, list]:
    clauses, params = [], []
    if site is not None:
        clauses.append("site = %s")
        params.append(site)
    if door is not None:
        clauses.append("door = %s")
        params.append(door)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
