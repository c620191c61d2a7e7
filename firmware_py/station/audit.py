"""The station's audit trail: every state-changing request, who made it, when, what, and the result.

Rows are never changed or deleted (triggers refuse it), like the doors' own logs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from firmware_py.station.storage import StationStore

SCHEMA = """
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


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    who: str
    address: str
    action: str
    detail: dict
    result: str


def record(store: StationStore, *, at: datetime, who: str, address: str, action: str, detail: dict,
           result: str) -> None:
    with store.transaction() as conn:
        conn.execute("INSERT INTO audit (at, who, address, action, detail, result) VALUES (?, ?, ?, ?, ?, ?)",
                     (at.isoformat(timespec="milliseconds"), who or "-", address, action[:300],
                      json.dumps(detail, ensure_ascii=False)[:4000], result[:300]))


def entries(store: StationStore, limit: int = 500) -> list[AuditEntry]:
    """The newest ``limit`` entries, newest first."""
    rows = store.query("SELECT id, at, who, address, action, detail, result FROM audit ORDER BY id DESC LIMIT ?",
                       (limit,))
    return [AuditEntry(i, at, who, addr, action, json.loads(detail), result)
            for i, at, who, addr, action, detail, result in rows]
