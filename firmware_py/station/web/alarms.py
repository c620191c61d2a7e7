"""The alarm queue: archived alarm events and their acknowledgements.

An operator acknowledges an alarm with a comment; the acknowledgement is kept with who and when
and is never changed or deleted (each backend's triggers refuse it). An alarm is acknowledged at most once.

An alarm is named by (site, door, epoch, seq): a door whose database was reset numbers its events
from 1 again in a new chain epoch, so seq alone would mix the two chains' alarms (the PostgreSQL
archive has one epoch per door: 1).

A full ID number typed into a comment is masked before the comment is kept; the alarm's event is
read as the page reads events (:mod:`.queries`, :mod:`.shown`), so a strange alarm of one door
shows as strange in its own row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from firmware_py.errors import AlarmError
from firmware_py.station.archive import masking
from firmware_py.station.archive.store import StationStore
from firmware_py.station.web import queries, shown

MAX_COMMENT = 500


@dataclass(frozen=True)
class Alarm:
    site: str
    door: str
    seq: int
    ts: str
    type: str
    event: dict  # as the page reads it (:func:`.shown.event`)
    epoch: int = 1
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    comment: str | None = None


def acknowledge(store: StationStore, site: str, door: str, epoch: int, seq: int, by: str, comment: str,
                at: datetime) -> None:
    comment = masking.mask_text(comment.strip())
    if not comment or len(comment) > MAX_COMMENT:
        raise AlarmError(f"a comment of 1 to {MAX_COMMENT} characters is required")
    name = f"{site}/{door} #{seq} of epoch {epoch}"
    outcome = store.acknowledge(site, door, epoch, seq, by, at, comment)
    if outcome == "not_an_alarm":
        raise AlarmError(f"{name} is not an archived alarm")
    if outcome == "already_acknowledged":
        raise AlarmError(f"{name} is already acknowledged")


def alarms(store: StationStore, *, acknowledged: bool, limit: int = 500) -> list[Alarm]:
    """Open alarms (oldest first) or acknowledged ones (newest acknowledgement first)."""
    rows = store.alarms(acknowledged, limit)
    return [Alarm(s, d, q, shown.text(ts) or "", shown.text(t) or "", shown.event(queries.parse_payload(p)), ep,
                  by, at, masking.mask_text(c) if isinstance(c, str) else c)
            for s, d, q, ts, t, p, ep, by, at, c in rows]
