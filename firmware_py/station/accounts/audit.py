"""The station's audit trail: every state-changing request, who made it, when, what, and the result.

Rows are never changed or deleted (the backends' triggers refuse it), like the doors' own logs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from firmware_py.station.archive.store import StationStore


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
    store.add_audit(at, who or "-", address, action[:300], json.dumps(detail, ensure_ascii=False)[:4000], result[:300])


def entries(store: StationStore, limit: int = 500) -> list[AuditEntry]:
    """The newest ``limit`` entries, newest first."""
    rows = store.audit_entries(limit)
    return [AuditEntry(i, at, who, addr, action, json.loads(detail), result)
            for i, at, who, addr, action, detail, result in rows]
