"""The ingest's store on the PostgreSQL archive (:class:`~firmware_py.station.archive.ingest_store.IngestStore`).

A batch is stored in a few transactions, all committed before :meth:`PgIngestStore.write` returns:
its events in one (:meth:`~firmware_py.station.archive.pg.PgArchive.store_events`: each (site, door,
seq) once, epochs and conflicting copies by the shared rules), then its refused messages
(``ingest_rejects``), every door of the batch with its last status and occupancy (``door_state``,
the page's tiles), and the head each status announces (checked against the archive). When
PostgreSQL refuses the batch's data (:class:`~firmware_py.station.archive.pg.DataRefused`: not an
outage, the same batch would fail again), the events are stored one by one and each one refused goes
to ``ingest_rejects`` with PostgreSQL's reason: one door's data never holds up another's. A lost
connection is :class:`~firmware_py.station.archive.ingest_store.ArchiveAway`.

Each door's chain (:class:`~firmware_py.station.archive.chain.DoorChain`) is verified as it grows:
the hash of every event and its link to the previous one, from seq 1, in the door's current epoch.
How far each chain is verified is kept in ``door_chains`` (per epoch, every
:data:`CHAIN_SAVE_S`), so a restarted station picks up where it was; a copy that replaced the
archived one makes its chain be verified again from there.
"""

from __future__ import annotations

import json
import logging
import time

import psycopg

from firmware_py.core.events import GENESIS_HASH, event_hash
from firmware_py.errors import StoreError
from firmware_py.station.archive.chain import DoorChain
from firmware_py.station.archive.ingest_store import ArchiveAway, EventOutcome, Message, Progress, Written
from firmware_py.station.archive.pg import INGEST_SCHEMA, DataRefused, Incoming, Ingested, PgArchive
from firmware_py.station.archive.sqlite import Anomaly, Gap
from firmware_py.station.config import safe_url

log = logging.getLogger(__name__)

CHAIN_SAVE_S = 1.0  # how often the verified chain heads are written (they can be recomputed)


class PgIngestStore:
    """The ingest's view of the PostgreSQL archive at ``url`` (connections opened on demand)."""

    def __init__(self, url: str):
        self.url = url
        self.chains: dict[tuple[str, str], DoorChain] = {}
        self.archive: PgArchive | None = None
        self._db: psycopg.Connection | None = None
        self._chains_saved_at = 0.0

    # ------------------------------------------------------------------ connections
    def open(self) -> None:
        if self.archive is None:
            self.archive = PgArchive(self.url)
        if self._db is None or self._db.closed:
            try:
                self._db = psycopg.connect(self.url, autocommit=False)
                with self._db.transaction():
                    self._db.execute("SELECT pg_advisory_xact_lock(hashtext('accessctl ingest schema'))")
                    self._db.execute(INGEST_SCHEMA)
            except psycopg.Error as exc:
                self._db = None
                raise StoreError(f"{safe_url(self.url)}: cannot open the ingest's tables: {exc}") from None

    def close(self) -> None:
        for conn in (self.archive, self._db):
            try:
                if conn is not None:
                    conn.close()
            except Exception:
                pass
        self.archive = self._db = None

    # ------------------------------------------------------------------ writing
    def write(self, batch: list[Message]) -> Written:
        written = Written()
        events = [m for m in batch if m.kind == "event"]
        rejects = [m for m in batch if m.kind == "reject"]
        states: dict[tuple[str, str, str], tuple[str | None, str]] = {}  # (site, door, kind) -> (JSON, at)
        statuses = [m for m in batch if m.kind == "status" and m.value is not None]
        for m in batch:
            if m.kind in ("status", "occupancy"):
                text = None if m.value is None else json.dumps(m.value, ensure_ascii=False)
                states[(m.site, m.door, m.kind)] = (text, m.received_at)
        before = {(m.site, m.door): self.chains[(m.site, m.door)].epoch for m in events
                  if (m.site, m.door) in self.chains}
        try:
            self.open()
            kept = self._store_events(events, rejects, written)
            if rejects:
                with self._db.transaction():
                    self._db.cursor().executemany(
                        "INSERT INTO ingest_rejects (received_at, site, door, topic, reason, payload)"
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        [(m.received_at, m.site, m.door, m.topic, m.reason, m.payload) for m in rejects])
            written.rejected = rejects
            self._store_door_state([m for m, _ in kept], states)
            for m in statuses:
                written.anomalies.extend(self._anomalies(self.archive.store_status(m.site, m.door, "status",
                                                                                   m.value, m.received_at)))
        except (StoreError, psycopg.Error) as exc:
            self.close()
            raise ArchiveAway(f"{safe_url(self.url)}: cannot store in the archive: {exc}") from None
        touched: dict[tuple[str, str], DoorChain] = {}
        for m, epoch in kept:
            chain = touched.get((m.site, m.door)) or touched.setdefault((m.site, m.door), self._chain(m.site, m.door))
            if chain.epoch == epoch:  # the page verifies the door's current chain; an older one stays as it was
                chain.add(*_link(m.value))
        for chain in touched.values():
            chain.advance()
        for m, epoch in kept:
            chain = touched[(m.site, m.door)]
            changed = before.pop((m.site, m.door), chain.epoch) != chain.epoch
            written.events.append(EventOutcome(m, epoch, epoch_changed=changed, contiguous=chain.verified_to,
                                               expected=chain.expected))
        return written

    def _store_events(self, events: list[Message], rejects: list[Message],
                      written: Written) -> list[tuple[Message, int]]:
        """Store ``events`` as one batch, or one by one when PostgreSQL refuses the batch's data (the
        refused ones are added to ``rejects``); the events stored, each with its epoch. Raises for an outage."""
        if not events:
            return []
        try:
            done = self.archive.store_events([_incoming(m) for m in events], settle=True)
            self._count(done, events, written)
            return list(zip(events, done.epochs, strict=True))
        except DataRefused as exc:
            log.warning("PostgreSQL refused a batch of %d events (%s); storing them one by one", len(events), exc)
        kept = []
        for m in events:
            try:
                done = self.archive.store_events([_incoming(m)], settle=True)
                self._count(done, [m], written)
                kept.append((m, done.epochs[0]))
            except DataRefused as exc:
                rejects.append(Message("reject", m.site, m.door, m.topic, m.payload, None, m.received_at,
                                       f"the archive refused it: {exc}"))
        return kept

    def _count(self, done: Ingested, events: list[Message], written: Written) -> None:
        for (site, door), epoch in done.current.items():
            chain = self.chains.get((site, door))
            if chain is not None and chain.epoch != epoch:  # a new epoch, or an older one resumed
                self._retire(chain)
        written.anomalies.extend(self._anomalies(done.anomalies))
        written.stored += done.stored
        written.duplicates += done.duplicates
        written.conflicts += done.conflicts + done.after_retention
        if done.conflicts or done.after_retention:
            log.warning("%d conflicting copies and %d copies of dropped months went to conflicts",
                        done.conflicts, done.after_retention)

    def _anomalies(self, anomalies) -> list[Anomaly]:
        """A copy that replaced the archived one makes its door's chain be verified again from there."""
        for a in anomalies:
            if a.kind == "copy_replaced":
                self._rewind(a.site, a.door, a.epoch, a.seq)
        return list(anomalies)

    def _retire(self, chain: DoorChain) -> None:
        """The door's current epoch changed: keep how far its old chain was verified, read the new one."""
        self._save_chains()
        if not chain.dirty:
            self.chains.pop((chain.site, chain.door), None)

    def _store_door_state(self, events: list[Message], states: dict[tuple[str, str, str], tuple[str | None, str]]):
        """Every door of the batch in ``door_state``, with the last status and occupancy it published."""
        doors = sorted({(e.site, e.door) for e in events} | {(s, d) for s, d, _ in states})
        if not doors:
            return
        with self._db.transaction():
            cur = self._db.cursor()
            cur.executemany("INSERT INTO door_state (site, door) VALUES (%s, %s) ON CONFLICT DO NOTHING", doors)
            for kind in ("status", "occupancy"):  # column names from this fixed pair, never from a message
                rows = [(s, d, text, at) for (s, d, k), (text, at) in states.items() if k == kind]
                if rows:
                    cur.executemany(f"UPDATE door_state SET {kind} = %s, {kind}_at = %s WHERE site = %s AND door = %s",
                                    [(text, at, s, d) for s, d, text, at in rows])

    # ------------------------------------------------------------------ chains
    def _chain(self, site: str, door: str) -> DoorChain:
        """The door's chain, loaded from the archive the first time this station sees the door."""
        key = (site, door)
        chain = self.chains.get(key)
        if chain is not None:
            return chain
        chain = DoorChain(site, door)
        if self._db is None:
            return chain  # the archive is away: read again next time
        try:
            row = self._db.execute("SELECT epoch FROM epochs WHERE site = %s AND door = %s AND current",
                                   key).fetchone()
            chain.epoch = row[0] if row else 1
            row = self._db.execute("SELECT verified_to, last_hash, problem FROM door_chains WHERE site = %s"
                                   " AND door = %s AND epoch = %s", (site, door, chain.epoch)).fetchone()
            if row:
                chain.verified_to, chain.last_hash, chain.problem = row
            for seq, h, prev, ok in self._db.execute(
                    "SELECT seq, hash, prev_hash, hash_ok FROM events WHERE site = %s AND door = %s AND epoch = %s"
                    " AND seq > %s ORDER BY seq", (site, door, chain.epoch, chain.verified_to)):
                chain.add(seq, h, prev, ok)
            self._db.commit()
        except psycopg.Error as exc:  # the archive is away: this door's chain is read again later
            log.warning("cannot read %s/%s's chain from the archive (%s)", site, door, exc)
            self.close()
            return DoorChain(site, door)
        chain.advance()
        self.chains[key] = chain
        return chain

    def _rewind(self, site: str, door: str, epoch: int, seq: int) -> None:
        """The archived copy of ``seq`` of ``epoch`` was replaced: verify that chain again from there."""
        to = seq - 1
        with self._db.transaction():
            row = self._db.execute("SELECT hash FROM event_keys WHERE site = %s AND door = %s AND epoch = %s"
                                   " AND seq = %s", (site, door, epoch, to)).fetchone()
            last_hash = row[0] if row else GENESIS_HASH
            self._db.execute("UPDATE door_chains SET verified_to = %s, last_hash = %s, problem = NULL"
                             " WHERE site = %s AND door = %s AND epoch = %s AND verified_to >= %s",
                             (to, last_hash, site, door, epoch, to))
        chain = self.chains.get((site, door))
        if chain is None or chain.epoch != epoch:
            return  # read from door_chains and the events when next needed
        if chain.verified_to >= to:
            chain.verified_to, chain.last_hash, chain.problem = to, last_hash, None
        chain.pending.clear()
        for s, h, prev, ok in self._db.execute("SELECT seq, hash, prev_hash, hash_ok FROM events WHERE site = %s"
                                               " AND door = %s AND epoch = %s AND seq > %s ORDER BY seq",
                                               (site, door, epoch, chain.verified_to)):
            chain.add(s, h, prev, ok)
        self._db.commit()
        chain.dirty = True
        chain.advance()

    def _save_chains(self) -> None:
        dirty = [c for c in self.chains.values() if c.dirty]
        if not dirty:
            return
        try:
            self.open()
            with self._db.transaction():
                self._db.cursor().executemany(
                    "INSERT INTO door_chains (site, door, epoch, verified_to, last_hash, problem)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (site, door, epoch) DO UPDATE"
                    " SET verified_to = excluded.verified_to, last_hash = excluded.last_hash,"
                    " problem = excluded.problem",
                    [(c.site, c.door, c.epoch, c.verified_to, c.last_hash, c.problem) for c in dirty])
        except (StoreError, psycopg.Error) as exc:  # recomputed from the events table after a restart
            log.warning("cannot save the chain heads (%s); will try again", exc)
            self.close()
            return
        for c in dirty:
            c.dirty = False

    def housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._chains_saved_at >= CHAIN_SAVE_S:
            self._save_chains()
            self._chains_saved_at = now

    # ------------------------------------------------------------------ what is archived
    def verified(self, site: str, door: str) -> tuple[int, str | None]:
        """(verified_to, problem) of a door's chain as this station sees it."""
        chain = self.chains.get((site, door))
        return (chain.verified_to, chain.problem) if chain else (0, None)

    def progress(self, site: str | None = None, door: str | None = None) -> list[Progress]:
        if site is not None and door is not None and (site, door) not in self.chains:
            self._chain(site, door)  # a door known only from its status so far
        return [Progress(c.site, c.door, c.epoch, c.verified_to, c.expected) for c in list(self.chains.values())
                if (site is None or c.site == site) and (door is None or c.door == door)]

    def gap_at(self, site: str, door: str, seq: int) -> Gap | None:
        return None  # the PostgreSQL archive keeps no gaps: the ingest counts its requests itself

    def note_expected(self, site: str, door: str, last_seq: int, at: str) -> Gap | None:
        chain = self._chain(site, door)
        first = chain.expected + 1
        if chain.problem is not None or last_seq < first:
            return None
        chain.announced = last_seq
        return Gap(site, door, first, last_seq, at, None, 0, chain.epoch)

    def note_replay_request(self, site: str, door: str, from_seq: int) -> None:
        pass

    def give_up_gap(self, site: str, door: str, epoch: int, first_missing: int, at: str) -> None:
        pass


def _incoming(m: Message) -> Incoming:
    return Incoming(m.site, m.door, m.topic, m.payload, m.value, m.received_at)


def _link(event: dict) -> tuple[int, str, str, bool]:
    """(seq, hash, prev_hash, hash right) of an accepted event, for its door's chain."""
    h = event["hash"]
    return event["seq"], h, event["prev_hash"], h == event_hash({k: v for k, v in event.items() if k != "hash"})
