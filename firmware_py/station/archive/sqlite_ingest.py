"""The ingest's store on the SQLite archive (:class:`~firmware_py.station.archive.ingest_store.IngestStore`).

Each message of a batch is stored in its own transaction, in the order it arrived, by the SQLite
archive (:class:`~firmware_py.station.archive.sqlite.Archive`: sequence, gaps, epochs and heads by
the shared rules); every one is committed (WAL, ``synchronous=FULL``) before :meth:`write` returns.
SQLite that cannot be written (locked past its timeout, a full disk, an I/O error) is away: the
batch is tried again. A message that fails for its own data is kept in ``ingest_rejects`` with
the reason instead, and the rest of the batch is stored.
"""

from __future__ import annotations

import logging
import sqlite3

from firmware_py.errors import StoreError
from firmware_py.station.archive.chain import ChainChecker
from firmware_py.station.archive.ingest_store import ArchiveAway, EventOutcome, Message, Progress, Written
from firmware_py.station.archive.sqlite import Archive, Gap, Reject

log = logging.getLogger(__name__)


class SqliteIngestStore:
    """The ingest's view of an SQLite :class:`Archive` (``own``: closed with the store)."""

    def __init__(self, archive: Archive, *, backfill: bool = True, own: bool = True):
        self.archive = archive
        self.backfill = backfill
        self.own = own
        self._checker = ChainChecker(self)

    def open(self) -> None:
        pass  # opened with the Archive

    def close(self) -> None:
        if self.own:
            self.archive.close()

    # ------------------------------------------------------------------ writing
    def write(self, batch: list[Message]) -> Written:
        written = Written()
        for m in batch:
            try:
                self._write_one(m, written)
            except (sqlite3.OperationalError, StoreError) as exc:
                raise ArchiveAway(f"{self.archive.path}: cannot write the archive: {exc}") from None
            except Exception as exc:  # this message's data: kept as refused, the batch goes on
                log.exception("cannot archive the message on %s", m.topic)
                self._reject(Message("reject", m.site, m.door, m.topic, m.payload, None, m.received_at,
                                     f"the archive refused it: {type(exc).__name__}"), written)
        return written

    def _write_one(self, m: Message, written: Written) -> None:
        if m.kind == "reject":
            self._reject(m, written)
        elif m.kind == "event":
            stored = self.archive.store_event(m.site, m.door, m.topic, m.payload, m.value, m.received_at,
                                              backfill=self.backfill)
            written.events.append(EventOutcome(m, stored.epoch, stored.duplicate, stored.conflict,
                                               stored.epoch_changed, list(stored.anomalies), stored.new_gap,
                                               list(stored.closed_gaps), stored.contiguous, stored.expected))
            written.stored += not stored.duplicate
            written.duplicates += stored.duplicate and not stored.conflict
            written.conflicts += stored.conflict
        elif m.value is not None:  # a status or occupancy (None: the retained message was cleared)
            written.anomalies.extend(self.archive.store_status(m.site, m.door, m.kind, m.value, m.received_at,
                                                               backfill=self.backfill))

    def _reject(self, m: Message, written: Written) -> None:
        self.archive.store_reject(Reject(m.received_at, m.site, m.door, m.topic, m.reason, m.payload))
        written.rejected.append(m)

    # ------------------------------------------------------------------ what is archived
    def progress(self, site: str | None = None, door: str | None = None) -> list[Progress]:
        return [Progress(s.site, s.door, s.epoch, s.contiguous, s.expected) for s in self.archive.doors(site, door)]

    def gap_at(self, site: str, door: str, seq: int) -> Gap | None:
        return self.archive.open_gap_at(site, door, seq)

    def note_expected(self, site: str, door: str, last_seq: int, at: str) -> Gap | None:
        return self.archive.note_expected(site, door, last_seq, at, backfill=self.backfill)

    def note_replay_request(self, site: str, door: str, from_seq: int) -> None:
        self.archive.note_replay_request(site, door, from_seq)

    def give_up_gap(self, site: str, door: str, epoch: int, first_missing: int, at: str) -> None:
        self.archive.give_up_gap(site, door, epoch, first_missing, at)

    def housekeeping(self) -> None:
        pass  # everything is kept as it is stored

    def verified(self, site: str, door: str) -> tuple[int, str | None]:
        result = self._checker.check(site, door)
        return result.verified_to, result.problem

    # ------------------------------------------------------------------ for the chain check
    def current_epoch(self, site: str, door: str) -> int:
        return self.archive.current_epoch(site, door)

    def chain_rows(self, site: str, door: str, epoch: int, after_seq: int,
                   limit: int = 5000) -> list[tuple[int, bytes]]:
        return self.archive.chain_rows(site, door, epoch, after_seq, limit)
