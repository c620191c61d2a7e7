"""What the station's ingest asks of an archive: store a batch, tell what is archived.

The ingest (:class:`firmware_py.station.ingest.ingest.Ingest`) receives and judges every message
and decides what follows (replay requests, warnings, acknowledgements); an archive behind this
interface only stores, by the archive rules both backends share
(:mod:`firmware_py.station.archive.chain`). Two implementations:
:class:`~firmware_py.station.archive.sqlite_ingest.SqliteIngestStore` and
:class:`~firmware_py.station.archive.pg_ingest.PgIngestStore`;
:func:`~firmware_py.station.archive.open.open_ingest_store` picks one.

:meth:`IngestStore.write` is durable when it returns (the ingest acknowledges the batch then) and
raises :class:`ArchiveAway` when the archive cannot be reached (nothing of the batch is
acknowledged, the ingest tries again). A message whose data the archive cannot hold is not an
outage: it is stored in ``ingest_rejects`` with the archive's reason, and the rest of the batch is
stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from firmware_py.errors import StoreError
from firmware_py.station.archive.sqlite import Anomaly, Gap


class ArchiveAway(StoreError):
    """The archive cannot be reached or written now (not the data's fault): try the batch again."""


@dataclass(frozen=True)
class Message:
    """One judged message to store, in the order it arrived.

    ``kind``: ``event``, ``status``, ``occupancy`` or ``reject``. ``value``: the parsed event, status or
    occupancy (None: a retained status or occupancy being cleared). ``reason`` and ``payload`` of a
    reject: why it was refused and what of it is kept.
    """

    kind: str
    site: str
    door: str
    topic: str
    payload: bytes
    value: object
    received_at: str
    reason: str = ""


@dataclass
class EventOutcome:
    """What storing one event found: the archive's findings and its door's sequence after it."""

    message: Message
    epoch: int = 1
    duplicate: bool = False  # this seq was archived already (an identical copy, or a conflicting one)
    conflict: bool = False
    epoch_changed: bool = False  # the door's current epoch changed with this event
    anomalies: list[Anomaly] = field(default_factory=list)
    new_gap: Gap | None = None  # a gap this event revealed (kept by the archive)
    closed_gaps: list[Gap] = field(default_factory=list)
    contiguous: int = 0  # the door's current epoch: archived without a hole up to here
    expected: int = 0  # … and known to exist up to here


@dataclass
class Written:
    """What one batch did."""

    events: list[EventOutcome] = field(default_factory=list)  # the events stored (or found archived), in order
    anomalies: list[Anomaly] = field(default_factory=list)  # found by statuses
    rejected: list[Message] = field(default_factory=list)  # refused messages kept, the archive's refusals included
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0


@dataclass(frozen=True)
class Progress:
    """A door's current epoch as archived: ``contiguous`` without a hole, ``expected`` known to exist."""

    site: str
    door: str
    epoch: int
    contiguous: int
    expected: int

    @property
    def has_hole(self) -> bool:
        return self.contiguous < self.expected


class IngestStore(Protocol):
    """An archive as the ingest uses it (see the module docstring)."""

    def open(self) -> None:
        """Connect (:class:`StoreError` when the archive cannot be opened at all)."""

    def close(self) -> None: ...

    def write(self, batch: list[Message]) -> Written:
        """Store a batch: durable on return; :class:`ArchiveAway` when the archive is away."""

    def progress(self, site: str | None = None, door: str | None = None) -> list[Progress]:
        """The doors this archive follows (of a site, or one door)."""

    def gap_at(self, site: str, door: str, seq: int) -> Gap | None:
        """The open gap the archive keeps that ``seq`` lies in, or None (an archive that keeps none)."""

    def note_expected(self, site: str, door: str, last_seq: int, at: str) -> Gap | None:
        """The door says it has stored up to ``last_seq``: the missing tail, now expected (None: nothing missing)."""

    def note_replay_request(self, site: str, door: str, from_seq: int) -> None: ...

    def give_up_gap(self, site: str, door: str, epoch: int, first_missing: int, at: str) -> None: ...

    def housekeeping(self) -> None:
        """Between batches: keep what can be kept later (the PostgreSQL archive's chain heads)."""

    def verified(self, site: str, door: str) -> tuple[int, str | None]:
        """(the last seq of the door's current chain verified, the break found or None)."""
