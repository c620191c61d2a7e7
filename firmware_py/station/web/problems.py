"""What the ingest refused (``ingest_rejects``) and the conflicting copies it set apart
(``conflicts``), per door, for the admin's page (DESIGN.md: admins see rejects and conflicts per door).

A refused payload is whatever a door (or anyone with its account) sent: it is shown masked
(:mod:`firmware_py.station.archive.masking`), cut to :data:`SHOWN_CHARS` characters, and escaped by
the page. Each door shows its newest :data:`PER_DOOR` of each kind and how many it has in all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from firmware_py.station.archive import masking
from firmware_py.station.archive.store import StationStore

PER_DOOR = 20
SHOWN_CHARS = 500


@dataclass(frozen=True)
class Problem:
    id: int
    received_at: str
    topic: str
    what: str  # a reject's reason, or a conflicting copy's ``#seq``
    payload: str  # masked and cut
    size: int  # of the whole payload, in bytes


@dataclass
class DoorProblems:
    site: str
    door: str
    reject_count: int = 0
    conflict_count: int = 0
    rejects: list[Problem] = field(default_factory=list)
    conflicts: list[Problem] = field(default_factory=list)


def counts(store: StationStore) -> dict[tuple[str, str], int]:
    """Refused messages and conflicting copies together, of each (site, door) that has any."""
    return {key: r + c for key, (r, c) in store.problem_counts().items()}


def per_door(store: StationStore, site: str | None = None, door: str | None = None) -> list[DoorProblems]:
    """Every door with problems (or the one asked for), by site and door, each kind newest first."""
    doors = {key: DoorProblems(*key, r, c) for key, (r, c) in store.problem_counts().items()
             if (not site or key[0] == site) and (not door or key[1] == door)}
    for i, at, s, d, topic, reason, payload, size in store.rejects(PER_DOOR, site, door):
        doors.setdefault((s, d), DoorProblems(s, d)).rejects.append(
            Problem(i, at, _text(topic), _text(reason), _payload(payload, size), size))
    for i, at, s, d, seq, topic, payload, size in store.conflicts(PER_DOOR, site, door):
        doors.setdefault((s, d), DoorProblems(s, d)).conflicts.append(
            Problem(i, at, _text(topic), f"#{seq}", _payload(payload, size), size))
    return [doors[key] for key in sorted(doors)]


def _text(value: object, limit: int = 300) -> str:
    text = masking.mask_text(str(value))
    return text if len(text) <= limit else text[:limit] + "…"


def _payload(start: bytes, size: int) -> str:
    return masking.shown(start, SHOWN_CHARS, cut=size > len(start))
