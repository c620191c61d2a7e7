"""The monitor archive's SQLite schema, and the upgrade of an archive written by an older monitor.

Version 2 (``PRAGMA user_version``) adds chain epochs and kept conflicting copies:

- ``events``: one row per ``(site, door, epoch, seq)``, the copy that verifies best;
- ``conflicts``: every other copy of an archived seq, as evidence, never in ``events``;
- ``epochs``: per door and chain epoch (a door whose log was reset starts epoch 2 at seq 1), the
  sequence bookkeeping and the chain head the door published (from its events and its status);
- ``doors``: the current epoch, duplicates, the last retained status and occupancy;
- ``gaps`` (per epoch, with the replay requests sent and when the monitor gave up), ``anomalies``.

Version 1 (no ``user_version``) had ``events`` keyed by ``(site, door, seq)`` and the sequence
bookkeeping in ``doors``; :func:`prepare` moves it into epoch 1 in one transaction.
"""

from __future__ import annotations

import sqlite3

VERSION = 2

_EVENTS = """
CREATE TABLE IF NOT EXISTS events (
    site        TEXT NOT NULL,
    door        TEXT NOT NULL,
    epoch       INTEGER NOT NULL,  -- 1, then one more for each chain that restarted at seq 1
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
    PRIMARY KEY (site, door, epoch, seq)
);
CREATE INDEX IF NOT EXISTS events_date ON events (local_date);
"""

_DOORS = """
CREATE TABLE IF NOT EXISTS doors (
    site         TEXT NOT NULL,
    door         TEXT NOT NULL,
    epoch        INTEGER NOT NULL DEFAULT 1,  -- the current chain epoch
    duplicates   INTEGER NOT NULL DEFAULT 0,
    status       TEXT,               -- the last retained status (JSON)
    status_at    TEXT,
    occupancy    TEXT,               -- the last retained occupancy (JSON)
    occupancy_at TEXT,
    PRIMARY KEY (site, door)
);
"""

_GAPS = """
CREATE TABLE IF NOT EXISTS gaps (
    site            TEXT NOT NULL,
    door            TEXT NOT NULL,
    epoch           INTEGER NOT NULL,
    first_missing   INTEGER NOT NULL,
    last_missing    INTEGER NOT NULL,
    detected_at     TEXT NOT NULL,
    closed_at       TEXT,
    replay_requests INTEGER NOT NULL DEFAULT 0,
    given_up_at     TEXT,            -- no more replay requests (too many unanswered, or the epoch ended)
    PRIMARY KEY (site, door, epoch, first_missing)
);
"""

_CONFLICTS = """
CREATE TABLE IF NOT EXISTS conflicts (
    id          INTEGER PRIMARY KEY,
    site        TEXT NOT NULL,
    door        TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    ts          TEXT NOT NULL,
    local_date  TEXT NOT NULL,
    category    TEXT NOT NULL,
    type        TEXT NOT NULL,
    hash        TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash_ok     INTEGER NOT NULL,
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    received_at TEXT NOT NULL,
    UNIQUE (site, door, epoch, seq, hash, payload)
);
"""

_EPOCHS = """
CREATE TABLE IF NOT EXISTS epochs (
    site        TEXT NOT NULL,
    door        TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    baseline    INTEGER NOT NULL,  -- the seq before the first one the archive wants (0: from seq 1)
    contiguous  INTEGER NOT NULL,  -- every seq in (baseline, contiguous] is archived
    expected    INTEGER NOT NULL,  -- the highest seq known to exist (received, or announced by the status)
    head_seq    INTEGER NOT NULL DEFAULT 0,  -- the highest seq the door published: a linked event or its status
    head_hash   TEXT,              -- its hash, when known
    head_source TEXT,              -- 'event' or 'status'
    started_at  TEXT NOT NULL,
    PRIMARY KEY (site, door, epoch)
);
"""

_ANOMALIES = """
CREATE TABLE IF NOT EXISTS anomalies (
    id      INTEGER PRIMARY KEY,
    site    TEXT NOT NULL,
    door    TEXT NOT NULL,
    seq     INTEGER,
    kind    TEXT NOT NULL,   -- bad_hash | broken_link | conflicting_copy | copy_replaced | new_epoch | epoch_resumed
                             -- | head_mismatch | head_regressed | wrong_topic | malformed | full_id_number
    detail  TEXT NOT NULL,
    at      TEXT NOT NULL,
    epoch   INTEGER
);
"""

_INGEST_REJECTS = """
CREATE TABLE IF NOT EXISTS ingest_rejects (
    id          INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    site        TEXT NOT NULL,     -- from the topic ('' when the topic names none)
    door        TEXT NOT NULL,
    topic       TEXT NOT NULL,
    reason      TEXT NOT NULL,     -- what is wrong, for the admin's page
    payload     BLOB NOT NULL      -- as received, ID-number-shaped text masked, cut a little past the
                                   -- size limit; empty past the door's budget (ingest/rejects.py)
);
CREATE INDEX IF NOT EXISTS ingest_rejects_door ON ingest_rejects (site, door, id);
"""

SCHEMA = _EVENTS + _DOORS + _GAPS + _CONFLICTS + _EPOCHS + _ANOMALIES + _INGEST_REJECTS


def prepare(conn: sqlite3.Connection) -> None:
    """Create the schema, or upgrade a version 1 archive to it (all or nothing)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    old = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='events'").fetchone()
    if version < VERSION and old:
        conn.execute("BEGIN IMMEDIATE")
        try:
            _upgrade_v1(conn)
            conn.execute(f"PRAGMA user_version = {VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    conn.executescript(SCHEMA)
    if version < VERSION:
        conn.execute(f"PRAGMA user_version = {VERSION}")


def _upgrade_v1(conn: sqlite3.Connection) -> None:
    columns = "site, door, seq, ts, local_date, category, type, hash, prev_hash, hash_ok, topic, payload, received_at"
    conn.execute("DROP INDEX IF EXISTS events_date")
    conn.execute("ALTER TABLE events RENAME TO events_v1")
    for statement in _EVENTS.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"INSERT INTO events (epoch, {columns}) SELECT 1, {columns} FROM events_v1")
    conn.execute("DROP TABLE events_v1")
    conn.execute("ALTER TABLE doors RENAME TO doors_v1")
    conn.execute(_DOORS)
    conn.execute("INSERT INTO doors (site, door, epoch, duplicates, status, status_at, occupancy, occupancy_at)"
                 " SELECT site, door, 1, duplicates, status, status_at, occupancy, occupancy_at FROM doors_v1")
    conn.execute(_EPOCHS)  # one statement each: executescript would commit the transaction
    conn.execute("INSERT INTO epochs (site, door, epoch, baseline, contiguous, expected, head_seq, head_hash,"
                 " head_source, started_at)"
                 " SELECT d.site, d.door, 1, d.baseline, d.contiguous, d.expected, d.contiguous, e.hash,"
                 " CASE WHEN e.hash IS NULL THEN NULL ELSE 'event' END, coalesce(d.status_at, '')"
                 " FROM doors_v1 d LEFT JOIN events e ON e.site = d.site AND e.door = d.door AND e.epoch = 1"
                 " AND e.seq = d.contiguous")
    conn.execute("DROP TABLE doors_v1")
    conn.execute("ALTER TABLE gaps RENAME TO gaps_v1")
    conn.execute(_GAPS)
    conn.execute("INSERT INTO gaps (site, door, epoch, first_missing, last_missing, detected_at, closed_at,"
                 " replay_requests) SELECT site, door, 1, first_missing, last_missing, detected_at, closed_at,"
                 " replay_requests FROM gaps_v1")
    conn.execute("DROP TABLE gaps_v1")
    conn.execute("ALTER TABLE anomalies ADD COLUMN epoch INTEGER")
    conn.execute("UPDATE anomalies SET epoch = 1")
