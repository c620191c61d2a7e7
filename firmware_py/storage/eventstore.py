"""The tamper-evident, append-only event log and the MQTT outbox (articles 19, 21).

Each event is stored with ``seq`` (1, 2, 3 … no gaps) and a SHA-256 chain:
``prev_hash`` is the previous event's ``hash`` (64 zeros for the first).
An event enters the outbox in the same transaction that stores it, and leaves
it only when the broker has acknowledged it (DESIGN.md "MQTT"). The outbox is
read in seq order, except that its urgent events (a ``duress`` alarm) are read
first (:meth:`EventStore.urgent_rows`). Nothing here
deletes an event: the log is kept permanently.

The door's own log, with what it keeps in memory while the database refuses
writes, is :mod:`firmware_py.storage.door_log` on top of this store.
:class:`ChainAnchor` keeps the head of the chain in a small file beside the
device secret, so that a door whose log was removed or replaced notices it at start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlite_utils

from firmware_py.core.clock import Clock
from firmware_py.core.events import GENESIS_HASH, canonical, check_vocabulary, event_hash, refuse_full_id_numbers
from firmware_py.storage.db import URGENT_EVENTS, get_meta, set_meta, transaction

log = logging.getLogger(__name__)


class EventStore:
    """Appends events for one door and reads them back.

    The chain head and the outbox count are kept in memory after this
    store's own commits (:meth:`head`, :meth:`queued`), and read again only
    when another connection has committed since (SQLite's ``data_version``),
    so a status costs no query on a door that is only writing.
    """

    def __init__(self, db: sqlite_utils.Database, *, site: str, door: str, clock: Clock):
        self.db = db
        self.site = site
        self.door = door
        self.clock = clock
        self._head: tuple[int, str] | None = None
        self._queued: int | None = None
        self._version: int | None = None  # data_version while _head and _queued were right; None: unknown
        self._batch: list[dict] | None = None  # events appended in the open batch()
        self._removed = 0  # outbox rows acknowledged in the open batch()

    def append(self, category: str, type: str, *, direction: str | None = None, person: dict | None = None,
               credential: dict | None = None, reason: str | None = None, detail: dict | None = None,
               at: str | None = None) -> dict:
        """Store one event durably (and queue it for MQTT); return it with ``seq`` and ``hash``.

        Joins the caller's transaction when one is open, so a roster change and
        its ``roster_changed`` event commit together; otherwise commits its own.
        ``at`` is the time it happened when that was earlier than now (an event
        kept while the database refused it). Raises
        :class:`~firmware_py.errors.StoreError` when the database refuses.
        """
        check_vocabulary(category, type, direction, reason)
        if self.db.conn.in_transaction:
            if self._batch is None:
                self._version = None  # the caller's transaction may yet roll back: read the head again
            return self._append(category, type, direction, person, credential, reason, detail, at)
        with self.batch():
            return self._append(category, type, direction, person, credential, reason, detail, at)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for several appends; the head and count in memory follow its commit."""
        with transaction(self.db):
            version = self._data_version()  # under the write lock: nobody else commits until we do
            self._batch = []
            try:
                yield
                appended, removed = self._batch, self._removed
            finally:
                self._batch, self._removed = None, 0
        if version == self._version and self._head is not None and self._queued is not None:
            if appended:
                self._head = (appended[-1]["seq"], appended[-1]["hash"])
            self._queued += len(appended) - removed
        else:
            self._version = None  # another connection wrote meanwhile: read both again when asked

    def _data_version(self) -> int:
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    def _append(self, category, type, direction, person, credential, reason, detail, ts: str | None = None) -> dict:
        row = self.db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev_hash = (row[0] + 1, row[1]) if row else (1, GENESIS_HASH)
        event = {
            "seq": seq,
            "ts": ts or self.clock.now().isoformat(timespec="milliseconds"),
            "site": self.site,
            "door": self.door,
            "category": category,
            "type": type,
            "direction": direction,
            "person": person,
            "credential": credential,
            "reason": reason,
            "detail": detail or {},
            "prev_hash": prev_hash,
        }
        body = canonical(event)
        refuse_full_id_numbers(body)
        event["hash"] = event_hash(event)
        self.db.execute(
            "INSERT INTO events (seq, ts, category, type, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, event["ts"], category, type, body, prev_hash, event["hash"]),
        )
        self.db.execute("INSERT INTO outbox (seq) VALUES (?)", (seq,))
        set_meta(self.db, "head_seq", seq)
        if self._batch is not None:
            self._batch.append(event)
        return event

    # ------------------------------------------------------------------ reading

    def last_seq(self) -> int:
        row = self.db.execute("SELECT max(seq) FROM events").fetchone()
        return row[0] or 0

    def head(self) -> tuple[int, str]:
        """The chain head: the last ``seq`` and its ``hash`` (0 and the genesis hash when empty)."""
        if self.db.conn.in_transaction:
            return self._read_head()
        self._refresh()
        return self._head

    def _read_head(self) -> tuple[int, str]:
        row = self.db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def _refresh(self) -> None:
        """Read the head and the count again unless only this store has written since they were read."""
        version = self._data_version()  # first: a commit after this makes the next check read again
        if version == self._version and self._head is not None and self._queued is not None:
            return
        self._head = self._read_head()
        self._queued = self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        self._version = version

    def hash_at(self, seq: int) -> str | None:
        row = self.db.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None

    def events(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[dict]:
        sql = "SELECT body, hash FROM events WHERE seq >= ?"
        params: list = [from_seq]
        if to_seq is not None:
            sql += " AND seq <= ?"
            params.append(to_seq)
        for body, h in self.db.execute(sql + " ORDER BY seq", params):
            event = json.loads(body)
            event["hash"] = h
            yield event

    def events_between(self, start: datetime, end: datetime) -> Iterator[dict]:
        """Events with ``start <= ts < end``, through the ``ts`` index.

        Stored times are ISO text in the site's offset, which sort as text within
        one offset; a day's margin either side covers a zone with daylight saving,
        and the exact comparison is made on the parsed time.
        """
        margin = timedelta(days=1)
        rows = self.db.execute("SELECT body, hash FROM events WHERE ts >= ? AND ts < ? ORDER BY seq",
                               ((start - margin).isoformat(), (end + margin).isoformat()))
        for body, h in rows:
            event = json.loads(body)
            if start <= datetime.fromisoformat(event["ts"]) < end:
                event["hash"] = h
                yield event

    # ------------------------------------------------------------------ outbox

    def pending(self, limit: int = 500) -> list[dict]:
        """The oldest events not yet acknowledged by the broker, in seq order."""
        rows = self.db.execute(
            "SELECT e.body, e.hash FROM outbox o JOIN events e ON e.seq = o.seq ORDER BY o.seq LIMIT ?", (limit,)
        ).fetchall()
        out = []
        for body, h in rows:
            event = json.loads(body)
            event["hash"] = h
            out.append(event)
        return out

    def outbox_rows(self, from_seq: int, limit: int) -> list[tuple[int, str, str, str, str]]:
        """``(seq, category, type, body, hash)`` of unacknowledged events from ``from_seq``, for publishing.

        The body is the canonical text the hash was made over, so the link publishes it unparsed.
        """
        return self.db.execute(
            "SELECT o.seq, e.category, e.type, e.body, e.hash FROM outbox o JOIN events e ON e.seq = o.seq "
            "WHERE o.seq >= ? ORDER BY o.seq LIMIT ?", (from_seq, max(limit, 0))).fetchall()

    def urgent_rows(self, from_seq: int, limit: int) -> list[tuple[int, str, str, str, str]]:
        """Like :meth:`outbox_rows`, only the urgent events (``URGENT_TYPES``: a ``duress`` alarm), which the
        link publishes ahead of the rest of the outbox. Found through a partial index of the urgent events,
        so the cost does not grow with the backlog."""
        return self.db.execute(
            "SELECT o.seq, e.category, e.type, e.body, e.hash FROM events e JOIN outbox o ON o.seq = e.seq "
            f"WHERE e.{URGENT_EVENTS} AND e.seq >= ? ORDER BY e.seq LIMIT ?", (from_seq, max(limit, 0))).fetchall()

    def stored_rows(self, first: int, last: int) -> list[tuple[int, str, str, str, str]]:
        """``(seq, category, type, body, hash)`` of the stored events ``first..last`` (a replay)."""
        return self.db.execute("SELECT seq, category, type, body, hash FROM events WHERE seq BETWEEN ? AND ? "
                               "ORDER BY seq", (first, last)).fetchall()

    def acknowledge(self, seqs: Iterable[int]) -> None:
        seqs = list(seqs)
        if not seqs:
            return
        with self.batch():
            self._removed = self.db.conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs]).rowcount

    def queued(self) -> int:
        """How many stored events the broker has not acknowledged (kept in memory like the head)."""
        if self.db.conn.in_transaction:
            return self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        self._refresh()
        return self._queued


# ---------------------------------------------------------------------- the chain anchor


class ChainAnchor:
    """The chain head (``seq`` and ``hash``) remembered in a small file outside the database.

    Kept beside the device secret (``device.key.head``), it is written at start
    and stop and every :attr:`EVERY` events; a door that starts on a log shorter
    than the anchor, or whose event at the anchor's ``seq`` has another hash,
    lost or replaced its log (a removed or swapped database file).
    """

    EVERY = 100

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.seq = 0

    @classmethod
    def beside(cls, secret_path: str | Path) -> ChainAnchor:
        secret_path = Path(secret_path)
        return cls(secret_path.with_name(secret_path.name + ".head"))

    def read(self) -> tuple[int, str] | None:
        """The head last written, or None when there is none (a new door) or it cannot be read."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            seq, h = int(data["seq"]), str(data["hash"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: the chain anchor cannot be read (%s); it is written again", self.path, exc)
            return None
        self.seq = seq
        return seq, h

    def write(self, seq: int, h: str) -> None:
        """Replace the file atomically; a failure is logged, never raised (the log itself is stored)."""
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps({"seq": seq, "hash": h}) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            self.seq = seq
        except OSError as exc:
            log.warning("%s: cannot write the chain anchor: %s", self.path, exc.strerror or exc)

    def due(self, seq: int) -> bool:
        return seq - self.seq >= self.EVERY


# ---------------------------------------------------------------------- verification


def _body_matches(body: str, seq: int, ts: str, category: str, type_: str, prev: str) -> bool:
    """Does the canonical body claim this seq, time, category, type and previous hash?

    Read from the text instead of parsing it (parsing was half of verify's time on a
    long log). The canonical form sorts keys, so the top-level ``prev_hash`` and
    ``seq`` are the last of their names (nested ones sort before them) and ``ts``
    and ``type`` close the object; quotes inside strings are escaped.
    """
    i = body.rfind(',"prev_hash":"')
    j = body.rfind(',"seq":')
    return (i > 0 and body[i + 14:i + 78] == prev and j > i and body.startswith(f',"seq":{seq},', j)
            and body.startswith(f'{{"category":"{category}",') and body.endswith(f'"ts":"{ts}","type":"{type_}"}}'))


@dataclass(frozen=True)
class Verification:
    ok: bool
    count: int
    bad_seq: int | None = None
    problem: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"ok {self.count} events"
        return f"chain broken at seq {self.bad_seq}: {self.problem}"


def verify(db: sqlite_utils.Database, progress=None) -> Verification:
    """Walk the chain; report the first seq where a row was altered, removed or reordered.

    ``progress(done, total)`` is called now and then for a long log.
    """
    total = db.execute("SELECT count(*) FROM events").fetchone()[0]
    expected_seq, prev = 1, GENESIS_HASH
    count = 0
    cursor = db.conn.execute("SELECT seq, ts, category, type, body, prev_hash, hash FROM events ORDER BY seq")
    for seq, ts, category, type_, body, prev_hash, h in cursor:
        if seq != expected_seq:
            return Verification(False, count, expected_seq, f"event {expected_seq} is missing (next stored is {seq})")
        if prev_hash != prev or not _body_matches(body, seq, ts, category, type_, prev):
            return Verification(False, count, seq, "the stored event does not match its row or the previous "
                                                   "event's hash (edited, moved or reordered)")
        # The body is the canonical text the hash was made over: hash the stored bytes.
        if hashlib.sha256(body.encode("utf-8")).hexdigest() != h:
            return Verification(False, count, seq, "the hash does not match the event (edited)")
        prev = h
        expected_seq += 1
        count += 1
        if progress and count % 50000 == 0:
            progress(count, total)
    head = get_meta(db, "head_seq", 0)
    if head > count:
        return Verification(False, count, count + 1, f"events {count + 1} to {head} were removed from the end")
    return Verification(True, count)
