"""The station's own tables in a PostgreSQL archive: accounts, sessions, acknowledgements, audit, the
published roster.

The counterpart of the tables :mod:`.store_sqlite` keeps in the SQLite file, beside the archive's
tables (:mod:`.pg`) and the ingest's (:mod:`.pg_ingest`: ``door_chains``, ``door_state``).
Acknowledgements and the audit trail are never changed or deleted: a trigger raises on UPDATE,
DELETE and TRUNCATE. Acknowledgements are per (site, door, epoch, seq), as on the SQLite archive.
"""

from __future__ import annotations

import psycopg

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name          text        PRIMARY KEY,
    role          text        NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash text        NOT NULL,     -- scrypt$N$r$p$salt$hash (hex)
    created_at    timestamptz NOT NULL
);
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS last_login timestamptz;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS disabled boolean NOT NULL DEFAULT false;
CREATE TABLE IF NOT EXISTS sessions (
    token_hash text        PRIMARY KEY,     -- sha-256 of the cookie's token
    name       text        NOT NULL REFERENCES accounts (name),
    csrf       text        NOT NULL,
    created_at timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS acknowledgements (
    id      bigserial   NOT NULL UNIQUE,    -- the order they were made in
    site    text        NOT NULL,
    door    text        NOT NULL,
    epoch   integer     NOT NULL DEFAULT 1,
    seq     bigint      NOT NULL,
    by      text        NOT NULL,
    at      timestamptz NOT NULL,
    comment text        NOT NULL,
    PRIMARY KEY (site, door, epoch, seq)
);
CREATE TABLE IF NOT EXISTS audit (
    id      bigserial   PRIMARY KEY,
    at      timestamptz NOT NULL,
    who     text        NOT NULL,           -- account name, or '-' before login
    address text        NOT NULL,           -- the client's address
    action  text        NOT NULL,           -- e.g. 'POST /doors/hn-archive-1/scan-room/lockdown'
    detail  text        NOT NULL,           -- JSON: the request's arguments (never a password)
    result  text        NOT NULL            -- e.g. '303 sent', '403 csrf', '429 throttled'
);
-- The roster bundle the station last published per site (rows masked and hashed, compressed JSON lines).
CREATE TABLE IF NOT EXISTS published_roster (
    site         text        PRIMARY KEY,
    version      bigint      NOT NULL,
    published_at timestamptz NOT NULL,
    published_by text        NOT NULL,
    count        integer     NOT NULL,
    chunks       integer     NOT NULL,
    sha256       text        NOT NULL,
    rows         bytea       NOT NULL
);
CREATE OR REPLACE FUNCTION accessctl_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation';
END $$;
-- The person an archived payload names, for the register's search: the id, or the id, name and
-- organisation in lower case. NULL for a payload that is not a JSON object: that door's row is
-- found by no text, and the search goes on.
CREATE OR REPLACE FUNCTION accessctl_person(payload bytea) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL UNSAFE AS $$  -- its exception block is a subtransaction: no parallel worker
DECLARE
    doc jsonb;
BEGIN
    doc := convert_from(payload, 'UTF8')::jsonb;
    RETURN CASE WHEN jsonb_typeof(doc) = 'object' AND jsonb_typeof(doc -> 'person') = 'object'
                THEN doc -> 'person' END;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION accessctl_person_text(person jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lower(concat_ws(chr(31), person ->> 'person_id', person ->> 'name', person ->> 'organisation'))
$$;
CREATE OR REPLACE TRIGGER acknowledgements_no_update BEFORE UPDATE ON acknowledgements
    FOR EACH ROW EXECUTE FUNCTION accessctl_refuse_change('an acknowledgement is never changed');
CREATE OR REPLACE TRIGGER acknowledgements_no_delete BEFORE DELETE ON acknowledgements
    FOR EACH ROW EXECUTE FUNCTION accessctl_refuse_change('an acknowledgement is never deleted');
CREATE OR REPLACE TRIGGER acknowledgements_no_truncate BEFORE TRUNCATE ON acknowledgements
    FOR EACH STATEMENT EXECUTE FUNCTION accessctl_refuse_change('an acknowledgement is never deleted');
CREATE OR REPLACE TRIGGER audit_no_update BEFORE UPDATE ON audit
    FOR EACH ROW EXECUTE FUNCTION accessctl_refuse_change('the audit trail is never changed');
CREATE OR REPLACE TRIGGER audit_no_delete BEFORE DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION accessctl_refuse_change('the audit trail is never deleted');
CREATE OR REPLACE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION accessctl_refuse_change('the audit trail is never deleted');
"""


def create(conn: psycopg.Connection) -> None:
    """Make the station's tables (idempotent; concurrent stations wait for each other)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('accessctl station schema'))")
        conn.execute(SCHEMA)
