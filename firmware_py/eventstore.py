"""The tamper-evident, append-only event log and the MQTT outbox (articles 19, 21).

Each event is stored with ``seq`` (1, 2, 3 … no gaps) and a SHA-256 chain:
``prev_hash`` is the previous event's ``hash`` (64 zeros for the first).
An event enters the outbox in the same transaction that stores it, and leaves
it only when the broker has acknowledged it (DESIGN.md "MQTT"). Nothing here
deletes an event: the log is kept permanently.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Iterator

import sqlite_utils

from .clock import Clock
from .db import get_meta, set_meta, transaction
from .events import GENESIS_HASH, canonical, check_vocabulary, event_hash, refuse_full_id_numbers


class EventStore:
    """Appends events for one door and reads them back."""

    def __init__(self, db: sqlite_utils.Database, *, site: str, door: str, clock: Clock):
        self.db = db
        self.site = site
        self.door = door
        self.clock = clock

    def append(self, category: str, type: str, *, direction: str | None = None, person: dict | None = None,
               credential: dict | None = None, reason: str | None = None, detail: dict | None = None) -> dict:
        """Store one event durably (and queue it for MQTT); return it with ``seq`` and ``hash``.

        Joins the caller's transaction when one is open, so a roster change and
        its ``roster_changed`` event commit together; otherwise commits its own.
        """
        check_vocabulary(category, type, direction, reason)
        if self.db.conn.in_transaction:
            return self._append(category, type, direction, person, credential, reason, detail)
        with transaction(self.db):
            return self._append(category, type, direction, person, credential, reason, detail)

    def _append(self, category, type, direction, person, credential, reason, detail) -> dict:
        row = self.db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev_hash = (row[0] + 1, row[1]) if row else (1, GENESIS_HASH)
        event = {
            "seq": seq,
            "ts": self.clock.now().isoformat(timespec="milliseconds"),
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
        return event

    # ------------------------------------------------------------------ reading

    def last_seq(self) -> int:
        row = self.db.execute("SELECT max(seq) FROM events").fetchone()
        return row[0] or 0

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

    def acknowledge(self, seqs: Iterable[int]) -> None:
        seqs = list(seqs)
        if not seqs:
            return
        with transaction(self.db):
            self.db.conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def queued(self) -> int:
        return self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]


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
