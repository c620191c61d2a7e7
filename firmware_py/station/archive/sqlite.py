"""The supervisor's archive: every event the monitor received, kept in its own SQLite file.

This is not the door's database (:mod:`firmware_py.storage.db`): it holds the events of many
doors, exactly as they arrived (the payload bytes are kept next to the parsed columns),
plus what the monitor learnt about each door: how far its sequence is complete, the
gaps it saw and when they closed, the duplicates it dropped, every anomaly, and the chain
head each door published. The schema is in :mod:`firmware_py.station.archive.sqlite_schema`.

Evidence, not first come first served (DESIGN.md: one row per seq, conflicts apart):

- ``events`` holds one copy per ``(site, door, epoch, seq)``. When a second, different copy of
  an archived seq arrives, both are kept: the one that verifies better stays in ``events``
  (its own hash right, its ``prev_hash`` the archived predecessor's hash, the archived
  successor's ``prev_hash`` its hash, the door's status naming it as the head), the other goes
  to ``conflicts``, and a later event that links to a conflicting copy can still promote it.
  A forged copy published first therefore loses to the genuine one once the chain shows which
  is which; neither is ever dropped.
- A door whose log was reset starts again at seq 1 with a genesis-linked chain: that starts a
  new *epoch* of the door (``epoch`` 2, 3 …) instead of being discarded as duplicates. An event
  that continues an older epoch's chain is stored in that epoch (and if that chain is growing,
  it becomes the current epoch again: a forged seq 1 does not divert a door's real chain).
- Each epoch keeps the head the door published: the highest seq of an event whose hash and
  link verify, or the ``last_seq``/``last_hash`` of its retained status.
  ``accessctl log verify --against`` compares a door's log with it (:mod:`firmware_py.station.archive.anchor`).

Durability is the door's: WAL and ``synchronous=FULL``, and every event commits
before the monitor acknowledges it to the broker, so an event the broker handed
over is either archived or will be handed over again.

Sequence bookkeeping per epoch (all in the same transaction as the event):
``baseline`` the seq before the first one the archive wants (0: from the very first),
``contiguous`` the highest seq N such that every seq in (baseline, N] is archived,
``expected`` the highest seq known to exist (received, or announced by the door's status).
An epoch has a hole exactly when ``contiguous < expected``.

Every public method is a plain query or one transaction, safe to call from any thread.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO

import sqlite_utils

from firmware_py.core.events import GENESIS_HASH, event_hash
from firmware_py.core.register import COLUMNS, register_rows, write_register
from firmware_py.errors import StoreError
from firmware_py.station.archive.chain import (
    copy_score,
    epoch_for,
    event_head_mismatch,
    is_repeat,
    new_epoch_detail,
    resumed_detail,
    status_head,
)
from firmware_py.station.archive.sqlite_schema import VERSION as SCHEMA_VERSION
from firmware_py.station.archive.sqlite_schema import prepare
from firmware_py.storage.db import transaction

HASH = re.compile(r"[0-9a-f]{64}")

# Seventeen digits and a check character: a full resident ID number, never to be shown.
FULL_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])")


def redact(text: str) -> str:
    """``text`` with anything shaped like a full resident ID number masked as the doors mask it."""
    return FULL_ID_NUMBER.sub(lambda m: m.group()[:6] + "*" * 8 + m.group()[14:], text)


@dataclass(frozen=True)
class Gap:
    """Seqs ``first_missing``–``last_missing`` of a door's epoch that were missing when detected."""

    site: str
    door: str
    first_missing: int
    last_missing: int
    detected_at: str
    closed_at: str | None
    replay_requests: int
    epoch: int = 1
    given_up_at: str | None = None  # replays no longer requested (unanswered, or the epoch ended)

    @property
    def open(self) -> bool:
        return self.closed_at is None


@dataclass(frozen=True)
class Anomaly:
    site: str
    door: str
    seq: int | None
    kind: str
    detail: str
    at: str
    epoch: int | None = None


@dataclass(frozen=True)
class DoorState:
    """A door as the archive knows it; the sequence fields and the head are the current epoch's."""

    site: str
    door: str
    baseline: int
    contiguous: int
    expected: int
    duplicates: int
    status: dict | None
    occupancy: object | None
    epoch: int = 1
    head_seq: int = 0
    head_hash: str | None = None

    @property
    def has_hole(self) -> bool:
        return self.contiguous < self.expected


@dataclass(frozen=True)
class Epoch:
    """One chain of a door: seq 1 onward until the door's log was reset (the next epoch)."""

    site: str
    door: str
    epoch: int
    baseline: int
    contiguous: int
    expected: int
    head_seq: int  # the highest seq the door published in this chain (a linked event, or its status)
    head_hash: str | None
    head_source: str | None  # 'event' or 'status'
    started_at: str


@dataclass(frozen=True)
class Conflict:
    """A copy of an archived seq that differs from the one in ``events``, kept as evidence."""

    site: str
    door: str
    epoch: int
    seq: int
    hash: str
    prev_hash: str
    hash_ok: bool
    topic: str
    payload: bytes
    received_at: str


@dataclass(frozen=True)
class Reject:
    """A message the station refused as it entered (``ingest_rejects``): where it came from and why."""

    received_at: str
    site: str
    door: str
    topic: str
    reason: str
    payload: bytes


@dataclass(frozen=True)
class ArchivedEvent:
    """An archived event with how it verifies: ``verification`` is ``verified`` (hash right, linked to
    the archived predecessor, or seq 1 to the genesis hash), or ``;``-joined problems: ``bad_hash``,
    ``broken_link``, ``unlinked`` (the predecessor is not archived), ``conflicting_copies``."""

    site: str
    door: str
    epoch: int
    event: dict
    verification: str


@dataclass
class Stored:
    """What archiving one event found."""

    duplicate: bool = False  # an identical copy was already archived (or a conflicting one: see conflict)
    conflict: bool = False  # a different copy of this seq was archived: both are kept
    anomalies: list[Anomaly] = field(default_factory=list)
    new_gap: Gap | None = None
    closed_gaps: list[Gap] = field(default_factory=list)
    contiguous: int = 0
    expected: int = 0
    epoch: int = 1
    epoch_changed: bool = False  # the door's current epoch changed with this event


_EVENT_COLUMNS = ("ts", "local_date", "category", "type", "hash", "prev_hash", "hash_ok", "topic", "payload",
                  "received_at")


class Archive:
    """The monitor's SQLite archive. Thread-safe: one lock serialises every use of the connection."""

    def __init__(self, path: str | Path, *, read_only: bool = False):
        """Open (creating or upgrading) the archive at ``path``; with ``read_only`` open an existing,
        current archive without writing anything (for ``log verify --against`` and other readers)."""
        self.path = Path(path)
        if str(path) == ":memory:":
            raise StoreError("the monitor archive must be a file on disk, not :memory:")
        if read_only:
            conn = _open_read_only(self.path)
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, isolation_level=None, timeout=10, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                prepare(conn)
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"{self.path}: cannot open the monitor archive: {exc}") from None
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction under the archive's lock (the connection is shared by threads)."""
        with self._lock, transaction(self.db):
            yield

    # ------------------------------------------------------------------ writing: helpers inside a transaction
    def _current_epoch(self, site: str, door: str, first_seen_seq: int, backfill: bool, at: str) -> int:
        row = self.db.execute("SELECT epoch FROM doors WHERE site=? AND door=?", (site, door)).fetchone()
        if row:
            return row[0]
        baseline = 0 if backfill else max(first_seen_seq, 0)
        self.db.execute("INSERT INTO doors (site, door, epoch) VALUES (?, ?, 1)", (site, door))
        self.db.execute("INSERT INTO epochs (site, door, epoch, baseline, contiguous, expected, started_at)"
                        " VALUES (?, ?, 1, ?, ?, ?, ?)", (site, door, baseline, baseline, baseline, at))
        return 1

    def _sequence(self, site, door, epoch) -> tuple[int, int, int]:
        return self.db.execute("SELECT baseline, contiguous, expected FROM epochs WHERE site=? AND door=? AND epoch=?",
                               (site, door, epoch)).fetchone()

    def _head(self, site, door, epoch) -> tuple[int, str | None, str | None]:
        return self.db.execute("SELECT head_seq, head_hash, head_source FROM epochs WHERE site=? AND door=?"
                               " AND epoch=?", (site, door, epoch)).fetchone()

    def _set_head(self, site, door, epoch, seq, h, source) -> None:
        self.db.execute("UPDATE epochs SET head_seq=?, head_hash=?, head_source=? WHERE site=? AND door=? AND epoch=?",
                        (seq, h, source, site, door, epoch))

    def _hash_at(self, site, door, epoch, seq) -> tuple[str, str] | None:
        """(hash, prev_hash) of the archived event, or None."""
        return self.db.execute("SELECT hash, prev_hash FROM events WHERE site=? AND door=? AND epoch=? AND seq=?",
                               (site, door, epoch, seq)).fetchone()

    def _insert_copy(self, verb: str, site, door, epoch, seq, values) -> sqlite3.Cursor:
        """``verb`` (``INSERT [OR IGNORE] INTO events|conflicts``) one copy: ``values`` in ``_EVENT_COLUMNS`` order."""
        return self.db.execute(f"{verb} (site, door, epoch, seq, {', '.join(_EVENT_COLUMNS)}) VALUES (?, ?, ?, ?"
                               + ", ?" * len(_EVENT_COLUMNS) + ")", (site, door, epoch, seq, *values))

    def _count_duplicate(self, site, door) -> None:
        self.db.execute("UPDATE doors SET duplicates = duplicates + 1 WHERE site=? AND door=?", (site, door))

    def _anomaly(self, site, door, seq, kind, detail, at, epoch=None) -> Anomaly:
        self.db.execute("INSERT INTO anomalies (site, door, seq, kind, detail, at, epoch) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (site, door, seq, kind, detail, at, epoch))
        return Anomaly(site, door, seq, kind, detail, at, epoch)

    def store_reject(self, reject: Reject) -> None:
        """Keep a message the ingest refused, with the reason (the admin's page lists them per door)."""
        with self._tx():
            self.db.execute("INSERT INTO ingest_rejects (received_at, site, door, topic, reason, payload)"
                            " VALUES (?, ?, ?, ?, ?, ?)", (reject.received_at, reject.site, reject.door, reject.topic,
                                                           reject.reason, reject.payload))

    def rejects(self, site: str | None = None, door: str | None = None) -> list[Reject]:
        """The refused messages, oldest first."""
        where, params = _scope(site, door)
        with self._lock:
            rows = self.db.execute("SELECT received_at, site, door, topic, reason, payload FROM ingest_rejects"
                                   f"{where} ORDER BY id", params).fetchall()
        return [Reject(r, s, d, t, why, bytes(p)) for r, s, d, t, why, p in rows]

    def note_anomaly(self, site: str, door: str, seq: int | None, kind: str, detail: str, at: str) -> Anomaly:
        """Record an anomaly the monitor found itself (a malformed message, a wrong topic …)."""
        with self._tx():
            return self._anomaly(site, door, seq, kind, detail, at)

    def _epoch_for(self, site, door, current, seq, ts, h, prev, hash_ok, at, result: Stored) -> int:
        """The epoch an incoming event belongs to (:func:`.chain.epoch_for`); opens a new epoch for a door's
        restarted chain, makes an older one current again when its chain grows."""
        choice = epoch_for(current, seq, _instant(ts), h, prev, hash_ok, _SqliteEpochs(self, site, door))
        if choice.epoch is None:
            last = self.db.execute("SELECT max(seq) FROM events WHERE site=? AND door=? AND epoch=?",
                                   (site, door, current)).fetchone()[0]
            return self._open_epoch(site, door, current, last, at, result)
        if choice.resumed:
            epoch = choice.epoch
            self.db.execute("UPDATE doors SET epoch=? WHERE site=? AND door=?", (epoch, site, door))
            result.epoch_changed = True
            result.anomalies.append(self._anomaly(site, door, seq, "epoch_resumed",
                                                  resumed_detail(seq, epoch, current), at, epoch))
        return choice.epoch

    def _open_epoch(self, site, door, current, last_seq, at, result: Stored) -> int:
        epoch = self.db.execute("SELECT max(epoch) FROM epochs WHERE site=? AND door=?", (site, door)).fetchone()[0] + 1
        self.db.execute("INSERT INTO epochs (site, door, epoch, baseline, contiguous, expected, started_at)"
                        " VALUES (?, ?, ?, 0, 0, 0, ?)", (site, door, epoch, at))
        self.db.execute("UPDATE doors SET epoch=? WHERE site=? AND door=?", (epoch, site, door))
        self.db.execute("UPDATE gaps SET given_up_at=? WHERE site=? AND door=? AND epoch=? AND closed_at IS NULL"
                        " AND given_up_at IS NULL", (at, site, door, current))
        result.epoch_changed = True
        result.anomalies.append(self._anomaly(site, door, 1, "new_epoch", new_epoch_detail(epoch, current, last_seq),
                                              at, epoch))
        return epoch

    def _score(self, site, door, epoch, seq, h, prev, hash_ok) -> int:
        """How well one copy of ``seq`` verifies (:func:`~firmware_py.station.archive.chain.copy_score`)."""
        before = self._hash_at(site, door, epoch, seq - 1) if seq > 1 else None
        after = self._hash_at(site, door, epoch, seq + 1)
        head_seq, head_hash, source = self._head(site, door, epoch)
        return copy_score(seq, h, prev, bool(hash_ok), before=before[0] if before else None,
                          after_prev=after[1] if after else None,
                          announced=head_hash if head_seq == seq and source == "status" else None)

    def _settle(self, site, door, epoch, seq, at, result: Stored, *, depth: int = 0) -> None:
        """Keep in ``events`` the copy of ``seq`` that verifies best; the others in ``conflicts``."""
        if seq < 1:
            return
        cols = ", ".join(_EVENT_COLUMNS)
        incumbent = self.db.execute(f"SELECT {cols} FROM events WHERE site=? AND door=? AND epoch=? AND seq=?",
                                    (site, door, epoch, seq)).fetchone()
        if incumbent is None:
            return
        candidates = self.db.execute(f"SELECT id, {cols} FROM conflicts WHERE site=? AND door=? AND epoch=? AND seq=?"
                                     " ORDER BY id", (site, door, epoch, seq)).fetchall()
        if not candidates:
            return
        inc = dict(zip(_EVENT_COLUMNS, incumbent))
        best, best_score = None, self._score(site, door, epoch, seq, inc["hash"], inc["prev_hash"], inc["hash_ok"])
        for row in candidates:
            c = dict(zip(("id", *_EVENT_COLUMNS), row))
            score = self._score(site, door, epoch, seq, c["hash"], c["prev_hash"], c["hash_ok"])
            if score > best_score:
                best, best_score = c, score
        if best is None:
            return
        self.db.execute("DELETE FROM conflicts WHERE id=?", (best.pop("id"),))
        self._insert_copy("INSERT OR IGNORE INTO conflicts", site, door, epoch, seq, incumbent)
        self.db.execute(f"UPDATE events SET {', '.join(f'{c}=?' for c in _EVENT_COLUMNS)}"
                        " WHERE site=? AND door=? AND epoch=? AND seq=?",
                        (*(best[c] for c in _EVENT_COLUMNS), site, door, epoch, seq))
        head_seq, head_hash, source = self._head(site, door, epoch)
        if head_seq == seq and source == "event":
            self._set_head(site, door, epoch, seq, best["hash"], "event")
        result.anomalies.append(self._anomaly(
            site, door, seq, "copy_replaced",
            f"#{seq}: the copy {best['hash'][:12]}… verifies and the archived {inc['hash'][:12]}… did not (hash or "
            "chain link): it replaces it in the register; the other copy is kept in conflicts", at, epoch))
        if depth == 0:
            self._settle(site, door, epoch, seq - 1, at, result, depth=1)

    # ------------------------------------------------------------------ writing
    def store_event(self, site: str, door: str, topic: str, payload: bytes, event: dict, received_at: str,
                    *, backfill: bool = True) -> Stored:
        """Archive one event and update its epoch's sequence and head; return what was found.

        ``event`` is the parsed payload; it must have an int ``seq`` and a ``ts`` with offset. An
        identical copy is counted as a duplicate; a different copy of an archived seq is kept in
        ``conflicts`` (or replaces the archived one if it verifies and that one does not).
        """
        seq, ts = event["seq"], event["ts"]
        local_date = datetime.fromisoformat(ts).date().isoformat()
        h = str(event.get("hash", ""))
        prev = str(event.get("prev_hash", ""))
        hash_ok = h == event_hash({k: v for k, v in event.items() if k != "hash"})
        values = (ts, local_date, str(event.get("category", "")), str(event.get("type", "")), h, prev, int(hash_ok),
                  topic, payload, received_at)
        result = Stored()
        with self._tx():
            current = self._current_epoch(site, door, seq - 1, backfill, received_at)
            epoch = result.epoch = self._epoch_for(site, door, current, seq, ts, h, prev, hash_ok, received_at, result)
            archived = self.db.execute("SELECT hash, payload FROM events WHERE site=? AND door=? AND epoch=? AND seq=?",
                                       (site, door, epoch, seq)).fetchone()
            if archived is not None:
                result.duplicate = True
                if is_repeat(archived[0], archived[1], h, event):
                    self._count_duplicate(site, door)
                else:
                    self._conflicting_copy(site, door, epoch, seq, h, archived[0], values, received_at, result)
                _, result.contiguous, result.expected = self._sequence(site, door, epoch)
                return result
            self._insert_copy("INSERT INTO events", site, door, epoch, seq, values)
            if not hash_ok:
                result.anomalies.append(self._anomaly(
                    site, door, seq, "bad_hash", f"#{seq}: hash {h[:12]}… is not the sha-256 of the event",
                    received_at, epoch))
            self._settle(site, door, epoch, seq - 1, received_at, result)  # it may vouch for a conflicting copy
            result.anomalies.extend(self._check_links(site, door, epoch, seq, h, prev, received_at))
            self._advance_head(site, door, epoch, seq, h, prev, hash_ok, received_at, result)
            self._advance_sequence(site, door, epoch, seq, received_at, result)
        return result

    def _conflicting_copy(self, site, door, epoch, seq, h, archived_hash, values, at, result: Stored) -> None:
        result.conflict = True
        cur = self._insert_copy("INSERT OR IGNORE INTO conflicts", site, door, epoch, seq, values)
        if cur.rowcount == 0:  # this very copy was seen before: already kept and reported
            self._count_duplicate(site, door)
            return
        result.anomalies.append(self._anomaly(
            site, door, seq, "conflicting_copy",
            f"a second copy of #{seq} differs from the archived one (hash {h[:12]}… vs {archived_hash[:12]}…); "
            "both are kept", at, epoch))
        self._settle(site, door, epoch, seq, at, result)

    def _check_links(self, site, door, epoch, seq, h, prev, at) -> list[Anomaly]:
        found = []
        if seq == 1:
            if prev != GENESIS_HASH:
                found.append(self._anomaly(site, door, seq, "broken_link", "#1: prev_hash is not the genesis hash",
                                           at, epoch))
        else:
            row = self._hash_at(site, door, epoch, seq - 1)
            if row and row[0] != prev:
                found.append(self._anomaly(site, door, seq, "broken_link",
                                           f"#{seq}: prev_hash does not match the hash of the archived #{seq - 1}",
                                           at, epoch))
        row = self._hash_at(site, door, epoch, seq + 1)
        if row and row[1] != h:
            found.append(self._anomaly(site, door, seq + 1, "broken_link",
                                       f"#{seq + 1}: prev_hash does not match the hash of #{seq}", at, epoch))
        return found

    def _advance_head(self, site, door, epoch, seq, h, prev, hash_ok, at, result: Stored) -> None:
        head_seq, head_hash, source = self._head(site, door, epoch)
        if seq == head_seq and source == "status" and head_hash and head_hash != h:
            result.anomalies.append(self._anomaly(site, door, seq, "head_mismatch",
                                                  event_head_mismatch(seq, h, head_hash), at, epoch))
            return
        before = (GENESIS_HASH, "") if seq == 1 else self._hash_at(site, door, epoch, seq - 1)
        linked = hash_ok and before is not None and before[0] == prev
        if linked and (seq > head_seq or (seq == head_seq and not head_hash)):
            self._set_head(site, door, epoch, seq, h, "event")

    def _advance_sequence(self, site, door, epoch, seq, at, result: Stored) -> None:
        baseline, contiguous, expected = self._sequence(site, door, epoch)
        if seq > expected + 1 and seq > baseline + 1:
            first = max(expected, baseline) + 1
            self.db.execute("INSERT OR IGNORE INTO gaps (site, door, epoch, first_missing, last_missing, detected_at)"
                            " VALUES (?, ?, ?, ?, ?, ?)", (site, door, epoch, first, seq - 1, at))
            result.new_gap = Gap(site, door, first, seq - 1, at, None, 0, epoch)
        expected = max(expected, seq)
        if seq == contiguous + 1:
            for (s,) in self.db.execute("SELECT seq FROM events WHERE site=? AND door=? AND epoch=? AND seq > ?"
                                        " ORDER BY seq", (site, door, epoch, contiguous)):
                if s != contiguous + 1:
                    break
                contiguous = s
        result.closed_gaps = self._close_filled_gaps(site, door, epoch, seq, at)
        self.db.execute("UPDATE epochs SET contiguous=?, expected=? WHERE site=? AND door=? AND epoch=?",
                        (contiguous, expected, site, door, epoch))
        result.contiguous, result.expected = contiguous, expected

    def _close_filled_gaps(self, site, door, epoch, seq, at) -> list[Gap]:
        closed = []
        rows = self.db.execute(
            "SELECT first_missing, last_missing, detected_at, replay_requests FROM gaps WHERE site=? AND door=?"
            " AND epoch=? AND closed_at IS NULL AND ? BETWEEN first_missing AND last_missing",
            (site, door, epoch, seq)).fetchall()
        for first, last, detected, requests in rows:
            (present,) = self.db.execute("SELECT count(*) FROM events WHERE site=? AND door=? AND epoch=?"
                                         " AND seq BETWEEN ? AND ?", (site, door, epoch, first, last)).fetchone()
            if present == last - first + 1:
                self.db.execute("UPDATE gaps SET closed_at=? WHERE site=? AND door=? AND epoch=? AND first_missing=?",
                                (at, site, door, epoch, first))
                closed.append(Gap(site, door, first, last, detected, at, requests, epoch))
        return closed

    def note_expected(self, site: str, door: str, last_seq: int, at: str, *, backfill: bool = True) -> Gap | None:
        """The door says it has stored up to ``last_seq``: record the missing tail as a gap, if any."""
        with self._tx():
            epoch = self._current_epoch(site, door, last_seq, backfill, at)
            baseline, contiguous, expected = self._sequence(site, door, epoch)
            if last_seq <= max(expected, baseline):
                return None
            first = max(expected, baseline) + 1
            self.db.execute("INSERT OR IGNORE INTO gaps (site, door, epoch, first_missing, last_missing, detected_at)"
                            " VALUES (?, ?, ?, ?, ?, ?)", (site, door, epoch, first, last_seq, at))
            self.db.execute("UPDATE epochs SET expected=? WHERE site=? AND door=? AND epoch=?",
                            (last_seq, site, door, epoch))
            return Gap(site, door, first, last_seq, at, None, 0, epoch)

    def note_replay_request(self, site: str, door: str, from_seq: int) -> None:
        """A replay from ``from_seq`` was asked for: count it on every open gap of the current epoch it covers."""
        with self._tx():
            self.db.execute("UPDATE gaps SET replay_requests = replay_requests + 1 WHERE site=? AND door=?"
                            " AND epoch=(SELECT epoch FROM doors WHERE site=? AND door=?)"
                            " AND closed_at IS NULL AND given_up_at IS NULL AND last_missing >= ?",
                            (site, door, site, door, from_seq))

    def give_up_gap(self, site: str, door: str, epoch: int, first_missing: int, at: str) -> None:
        """Ask for no more replays of this gap (it stays open: the events are still missing)."""
        with self._tx():
            self.db.execute("UPDATE gaps SET given_up_at=? WHERE site=? AND door=? AND epoch=? AND first_missing=?",
                            (at, site, door, epoch, first_missing))

    def store_status(self, site: str, door: str, kind: str, value: object, at: str, *,
                     backfill: bool = True) -> list[Anomaly]:
        """Keep the last retained ``status`` or ``occupancy`` of a door; a status's ``last_seq`` (and
        ``last_hash`` when present) is the head the door publishes: kept per epoch, and checked
        against what is archived. Returns the anomalies found (a head that went back, a hash that differs)."""
        if kind not in ("status", "occupancy"):
            raise ValueError(kind)
        result = Stored()
        with self._tx():
            last_seq = value.get("last_seq") if kind == "status" and isinstance(value, dict) else None
            if not isinstance(last_seq, int) or isinstance(last_seq, bool) or last_seq < 0:
                last_seq = None
            epoch = self._current_epoch(site, door, last_seq or 0, backfill, at)
            previous = self.db.execute(f"SELECT {kind} FROM doors WHERE site=? AND door=?", (site, door)).fetchone()[0]
            self.db.execute(f"UPDATE doors SET {kind}=?, {kind}_at=? WHERE site=? AND door=?",
                            (json.dumps(value, ensure_ascii=False), at, site, door))
            if last_seq:
                last_hash = value.get("last_hash")
                last_hash = last_hash if isinstance(last_hash, str) and HASH.fullmatch(last_hash) else None
                before = json.loads(previous) if previous else {}
                repeated = isinstance(before, dict) and before.get("last_seq") == last_seq \
                    and before.get("last_hash") == value.get("last_hash")
                if not repeated:
                    self._status_head(site, door, epoch, last_seq, last_hash, at, result)
        return result.anomalies

    def _status_head(self, site, door, epoch, last_seq, last_hash, at, result: Stored) -> None:
        head_seq, head_hash, _ = self._head(site, door, epoch)
        archived = self._hash_at(site, door, epoch, last_seq)
        if last_seq >= head_seq:
            if last_seq > head_seq or not head_hash or (last_hash and archived and archived[0] != last_hash):
                self._set_head(site, door, epoch, last_seq, last_hash or (head_hash if last_seq == head_seq else None),
                               "status" if last_hash or last_seq > head_seq else "event")
            if last_hash and archived and archived[0] != last_hash:
                self._settle(site, door, epoch, last_seq, at, result)  # the door vouches for one of the copies
                archived = self._hash_at(site, door, epoch, last_seq)
        found = status_head(last_seq, last_hash, head_seq, head_hash, archived[0] if archived else None)
        if found:
            result.anomalies.append(self._anomaly(site, door, last_seq, *found, at, epoch))

    # ------------------------------------------------------------------ reading
    def _current(self, site: str, door: str) -> int:
        row = self.db.execute("SELECT epoch FROM doors WHERE site=? AND door=?", (site, door)).fetchone()
        return row[0] if row else 1

    def current_epoch(self, site: str, door: str) -> int:
        """The door's current epoch (1 for a door not seen yet)."""
        with self._lock:
            return self._current(site, door)

    def events(self, site: str, door: str, from_seq: int = 1, to_seq: int | None = None, *,
               epoch: int | None = None) -> list[dict]:
        """The archived events of one door's epoch (default: the current one) in seq order, parsed
        from the payloads as received."""
        with self._lock:
            epoch = epoch or self._current(site, door)
            sql = "SELECT payload FROM events WHERE site=? AND door=? AND epoch=? AND seq >= ?"
            params: list = [site, door, epoch, from_seq]
            if to_seq is not None:
                sql += " AND seq <= ?"
                params.append(to_seq)
            rows = self.db.execute(sql + " ORDER BY seq", params).fetchall()
        return [json.loads(p) for (p,) in rows]

    def hashes(self, site: str, door: str, epoch: int) -> Iterator[tuple[int, str]]:
        """``(seq, hash)`` of every archived event of one epoch, in seq order (what the door published)."""
        with self._lock:
            rows = self.db.execute("SELECT seq, hash FROM events WHERE site=? AND door=? AND epoch=? ORDER BY seq",
                                   (site, door, epoch)).fetchall()
        return iter(rows)

    def chain_rows(self, site: str, door: str, epoch: int, after_seq: int,
                   limit: int = 5000) -> list[tuple[int, bytes]]:
        """(seq, payload) of one door's epoch from ``after_seq`` on, in seq order (for the chain check)."""
        with self._lock:
            rows = self.db.execute("SELECT seq, payload FROM events WHERE site=? AND door=? AND epoch=? AND seq > ?"
                                   " ORDER BY seq LIMIT ?", (site, door, epoch, after_seq, limit)).fetchall()
        return [(s, bytes(p)) for s, p in rows]

    def payload(self, site: str, door: str, seq: int, *, epoch: int | None = None) -> bytes | None:
        with self._lock:
            row = self.db.execute("SELECT payload FROM events WHERE site=? AND door=? AND epoch=? AND seq=?",
                                  (site, door, epoch or self._current(site, door), seq)).fetchone()
        return bytes(row[0]) if row else None

    def has(self, site: str, door: str, seq: int) -> bool:
        """Is ``seq`` of the door's current epoch archived?"""
        with self._lock:
            return self.db.execute("SELECT 1 FROM events WHERE site=? AND door=? AND epoch=? AND seq=?",
                                   (site, door, self._current(site, door), seq)).fetchone() is not None

    def count(self, site: str | None = None, door: str | None = None) -> int:
        """Archived events (every epoch), conflicting copies not counted."""
        where, params = _scope(site, door)
        with self._lock:
            return self.db.execute(f"SELECT count(*) FROM events{where}", params).fetchone()[0]

    def conflicts(self, site: str | None = None, door: str | None = None) -> list[Conflict]:
        """The conflicting copies kept as evidence, in the order they were kept."""
        where, params = _scope(site, door)
        with self._lock:
            rows = self.db.execute("SELECT site, door, epoch, seq, hash, prev_hash, hash_ok, topic, payload,"
                                   f" received_at FROM conflicts{where} ORDER BY id", params).fetchall()
        return [Conflict(s, d, e, q, h, p, bool(ok), t, bytes(pl), r) for s, d, e, q, h, p, ok, t, pl, r in rows]

    def epochs(self, site: str, door: str) -> list[Epoch]:
        """The door's chain epochs, oldest first."""
        with self._lock:
            rows = self.db.execute("SELECT site, door, epoch, baseline, contiguous, expected, head_seq, head_hash,"
                                   " head_source, started_at FROM epochs WHERE site=? AND door=? ORDER BY epoch",
                                   (site, door)).fetchall()
        return [Epoch(*r) for r in rows]

    def door_state(self, site: str, door: str) -> DoorState | None:
        states = self.doors(site, door)
        return states[0] if states else None

    def doors(self, site: str | None = None, door: str | None = None) -> list[DoorState]:
        """Every door (of a site, or one door) with its current epoch's sequence and head."""
        where, params = _scope(site, door, "d.")
        with self._lock:
            rows = self.db.execute(
                "SELECT d.site, d.door, e.baseline, e.contiguous, e.expected, d.duplicates, d.status, d.occupancy,"
                " d.epoch, e.head_seq, e.head_hash FROM doors d JOIN epochs e ON e.site = d.site AND e.door = d.door"
                f" AND e.epoch = d.epoch{where} ORDER BY d.site, d.door", params).fetchall()
        return [DoorState(s, d, b, c, e, n, json.loads(st) if st else None, json.loads(oc) if oc else None, ep, hs, hh)
                for s, d, b, c, e, n, st, oc, ep, hs, hh in rows]

    def last_contiguous(self, site: str, door: str) -> int:
        state = self.door_state(site, door)
        return state.contiguous if state else 0

    def duplicates(self, site: str | None = None, door: str | None = None) -> int:
        where, params = _scope(site, door)
        with self._lock:
            return self.db.execute(f"SELECT coalesce(sum(duplicates), 0) FROM doors{where}", params).fetchone()[0]

    def gaps(self, site: str | None = None, door: str | None = None, *, open_only: bool = False) -> list[Gap]:
        """Gaps of every epoch; ``open_only``: those still missing events and still asked for."""
        where, params = _scope(site, door)
        if open_only:
            where += (" AND" if where else " WHERE") + " closed_at IS NULL AND given_up_at IS NULL"
        with self._lock:
            rows = self.db.execute("SELECT site, door, first_missing, last_missing, detected_at, closed_at,"
                                   f" replay_requests, epoch, given_up_at FROM gaps{where}"
                                   " ORDER BY site, door, epoch, first_missing", params).fetchall()
        return [Gap(*r) for r in rows]

    def open_gap_at(self, site: str, door: str, seq: int) -> Gap | None:
        """The open gap of the door's current epoch that ``seq`` lies in (given up or not), or None."""
        with self._lock:
            row = self.db.execute(
                "SELECT site, door, first_missing, last_missing, detected_at, closed_at, replay_requests, epoch,"
                " given_up_at FROM gaps WHERE site=? AND door=? AND epoch=? AND closed_at IS NULL"
                " AND ? BETWEEN first_missing AND last_missing ORDER BY first_missing LIMIT 1",
                (site, door, self._current(site, door), seq)).fetchone()
        return Gap(*row) if row else None

    def anomalies(self, site: str | None = None, door: str | None = None, kind: str | None = None) -> list[Anomaly]:
        where, params = _scope(site, door)
        if kind:
            where += (" AND" if where else " WHERE") + " kind=?"
            params.append(kind)
        with self._lock:
            rows = self.db.execute(f"SELECT site, door, seq, kind, detail, at, epoch FROM anomalies{where} ORDER BY id",
                                   params).fetchall()
        return [Anomaly(*r) for r in rows]

    def events_on(self, day: date, site: str | None = None, door: str | None = None) -> Iterator[tuple[str, str, dict]]:
        """``(site, door, event)`` for every event whose ``ts`` falls on ``day`` at the door's own offset,
        in time order."""
        return ((a.site, a.door, a.event) for a in self.verified_on(day, site, door))

    def verified_on(self, day: date, site: str | None = None, door: str | None = None) -> Iterator[ArchivedEvent]:
        """Every archived event of ``day`` (at the door's own offset) with how it verifies, in time order."""
        where, params = _scope(site, door, "e.")
        where += (" AND" if where else " WHERE") + " e.local_date=?"
        params.append(day.isoformat())
        with self._lock:
            rows = self.db.execute(
                "SELECT e.site, e.door, e.epoch, e.seq, e.payload, e.hash_ok, e.prev_hash, p.hash,"
                " EXISTS (SELECT 1 FROM conflicts c WHERE c.site = e.site AND c.door = e.door AND c.epoch = e.epoch"
                " AND c.seq = e.seq) FROM events e LEFT JOIN events p ON p.site = e.site AND p.door = e.door"
                f" AND p.epoch = e.epoch AND p.seq = e.seq - 1{where}", params).fetchall()
        items = []
        for s, d, epoch, seq, payload, hash_ok, prev, before, conflicted in rows:
            problems = [] if hash_ok else ["bad_hash"]
            if seq == 1:
                before = GENESIS_HASH
            if before is None:
                problems.append("unlinked")
            elif before != prev:
                problems.append("broken_link")
            if conflicted:
                problems.append("conflicting_copies")
            items.append(ArchivedEvent(s, d, epoch, json.loads(payload), ";".join(problems) or "verified"))
        items.sort(key=lambda a: (_instant(a.event["ts"]), a.site, a.door, a.epoch, a.event["seq"]))
        return iter(items)


class _SqliteEpochs:
    """One door's archived epochs, as :func:`.chain.epoch_for` reads them (inside the archive's transaction)."""

    def __init__(self, archive: Archive, site: str, door: str):
        self.db, self.site, self.door = archive.db, site, door

    def epoch_with(self, seq: int, h: str) -> int | None:
        row = self.db.execute("SELECT max(epoch) FROM events WHERE site=? AND door=? AND seq=? AND hash=?",
                              (self.site, self.door, seq, h)).fetchone()
        return row[0]

    def newest(self, epoch: int) -> tuple[int, datetime] | None:
        row = self.db.execute("SELECT seq, ts FROM events WHERE site=? AND door=? AND epoch=? ORDER BY seq DESC"
                              " LIMIT 1", (self.site, self.door, epoch)).fetchone()
        return (row[0], _instant(row[1])) if row else None

    def expected(self, epoch: int) -> int:
        return self.db.execute("SELECT expected FROM epochs WHERE site=? AND door=? AND epoch=?",
                               (self.site, self.door, epoch)).fetchone()[0]


def _open_read_only(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise StoreError(f"{path}: no such archive")
    uri = path.resolve().as_uri() + "?mode=ro" + ("" if Path(f"{path}-wal").exists() else "&immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10, check_same_thread=False)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot read the monitor archive, the file is damaged or not an archive: {exc}") \
            from None
    if "events" not in tables:
        raise StoreError(f"{path}: not a monitor archive (it has no events table)")
    if version < SCHEMA_VERSION:
        raise StoreError(f"{path}: written by an older monitor; open it once with the current one "
                         "(accessctl monitor export, as its owner) to upgrade it, then check again")
    return conn


def _instant(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def export_register(archive: Archive, day: date, out: IO[str], *, site: str | None = None,
                    door: str | None = None, fmt: str = "csv") -> int:
    """Write ``day``'s entry register from the archive; return the number of rows.

    For one door (site and door given) the columns are ``accessctl log export``'s, then ``epoch``
    and ``verification`` (see :class:`ArchivedEvent`), so the central copy can be compared with the
    door's own; otherwise ``site`` and ``door`` columns lead. Conflicting copies are not rows: the
    row of their seq says ``conflicting_copies``. CSV cells are formula-safe
    (:func:`firmware_py.core.register.write_csv`). Only masked credentials are ever in an event; anything
    shaped like a full ID number is masked anyway.
    """
    items = list(archive.verified_on(day, site, door))
    single = bool(site and door)
    rows = ({**({} if single else {"site": a.site, "door": a.door}), **_redacted(r), "epoch": a.epoch,
             "verification": a.verification} for a in items for r in register_rows([a.event]))
    return write_register(rows, out, fmt, (*(() if single else ("site", "door")), *COLUMNS, "epoch", "verification"))


def _redacted(row: dict) -> dict:
    return {k: redact(v) if isinstance(v, str) else v for k, v in row.items()}


def _scope(site: str | None, door: str | None, alias: str = "") -> tuple[str, list]:
    clauses, params = [], []
    if site:
        clauses.append(f"{alias}site=?")
        params.append(site)
    if door:
        clauses.append(f"{alias}door=?")
        params.append(door)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

