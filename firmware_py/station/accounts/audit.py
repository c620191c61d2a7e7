"""The station's audit trail: every state-changing request, who made it, when, what, and the result.

Rows are never changed or deleted (the backends' triggers refuse it), like the doors' own logs.
Whoever sends a request chooses what it carries, so a row keeps each value cut to
:data:`MAX_VALUE` characters and masked for ID numbers (:mod:`firmware_py.station.archive.masking`),
and its detail is always whole JSON: a row cut mid-JSON could never be shown again, and a trail an
outsider can make unreadable hides what was done. A row an older station stored that is not JSON
is shown as its masked text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from firmware_py.station.archive import masking
from firmware_py.station.archive.store import StationStore

MAX_VALUE = 500  # characters of one request field kept
MAX_TEXT = 300  # of the action and the result
MAX_SHOWN = 4000  # of an old row's detail that is not JSON


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    who: str
    address: str
    action: str
    detail: dict
    result: str


def _cut(text: str, limit: int) -> str:
    """Masked, then cut: a cut never leaves part of an unmasked number behind."""
    text = masking.mask_text(text)
    return text if len(text) <= limit else text[:limit] + "…"


def record(store: StationStore, *, at: datetime, who: str, address: str, action: str, detail: dict,
           result: str) -> None:
    kept = {_cut(str(k), 64): _cut(v, MAX_VALUE) if isinstance(v, str) else masking.mask_value(v)
            for k, v in detail.items()}
    store.add_audit(at, _cut(who or "-", 64), address[:100], _cut(action, MAX_TEXT), masking.dumps(kept),
                    _cut(result, MAX_TEXT))


def entries(store: StationStore, limit: int = 500) -> list[AuditEntry]:
    """The newest ``limit`` entries, newest first, masked; an unreadable detail as ``{"unreadable": text}``."""
    return [AuditEntry(i, at, _cut(str(who), 64), str(addr), _cut(str(action), MAX_TEXT), _detail(detail),
                       _cut(str(result), MAX_TEXT))
            for i, at, who, addr, action, detail, result in store.audit_entries(limit)]


def _detail(text: str) -> dict:
    try:
        value = masking.parse(text)
    except masking.Unreadable:
        return {"unreadable": masking.shown(text, MAX_SHOWN)}
    return value if isinstance(value, dict) else {"value": value}
