"""`accessctl station archive migrate`: move the station's SQLite archive into PostgreSQL.

The SQLite file is opened read-only (URI ``mode=ro``) and read in one transaction, so what is
copied is one consistent snapshot even while a station still writes the file. Each door's events
are read in seq order and written through :meth:`PgArchive.store_events` in batches: the same
de-duplication as the PostgreSQL ingest, so a second run adds nothing, and an event PostgreSQL
already holds with another hash goes to its ``conflicts`` and is reported here. The conflicting
copies the SQLite archive kept as evidence (its ``conflicts`` table) go the same way after their
door's events, so they land in PostgreSQL's ``conflicts``.

Every chain epoch is copied (a door whose log was reset starts epoch 2 at seq 1), a door's epochs
in order, each in seq order: the PostgreSQL archive decides each event's epoch by the rule both
archives share (:func:`~firmware_py.station.archive.chain.epoch_for`), so a door's epochs come out
as the SQLite archive has them. An event PostgreSQL places in another epoch than SQLite did is
named (door, seq, both epochs) and makes the exit status say so.

What cannot be carried:

- **Rows that are not events**: a payload that is not a strict JSON object (NaN, Infinity), a seq
  that is not the row's or is beyond 2^53, a site or door that is not the row's, a control
  character in an identifier, a time without offset or outside the years 1900–9998, or anything
  else PostgreSQL refuses (a batch it refuses is split until the one row is found). Each is
  refused and named (door, seq, why), never stored; every other row, of that door and of every
  later door, is still copied, and the exit status says that rows were refused.
- **The station's own tables** (accounts, sessions, alarm acknowledgements, audit) and the SQLite
  archive's bookkeeping (doors' last status, gaps, anomalies, epochs): not migrated. The web page
  reads its tables from the SQLite file only; a PostgreSQL station recomputes each door's chain
  from the events.

A copy that a previous run already put into PostgreSQL's ``conflicts`` (same door, seq, hash and
payload) is not sent again, so running twice adds no conflict row either; it is still counted as
a conflict, because the SQLite copy is not the archived one.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from firmware_py.errors import ConfigError, StoreError

DEFAULT_BATCH = 1000
PROGRESS_EVERY = 10_000  # events between two progress lines
NAMED_PER_DOOR = 10  # conflicts named one by one per door, at most (every refused row is named)
CONNECT_TIMEOUT_S = 10
MAX_SEQ = 2**53  # the largest seq an archive takes (DESIGN.md: seq in 1..2^53)
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)  # the dates the page can name, as the web guard's
IDENTIFIERS = ("site", "door", "category", "type", "hash", "prev_hash")

NOT_MIGRATED = ("not migrated: station accounts, sessions, alarm acknowledgements and the audit trail (a PostgreSQL "
                "station keeps its own: make its accounts again with `accessctl station user add`), and the SQLite "
                "archive's door status, gaps and anomalies (a PostgreSQL station recomputes each door's chain from "
                "its events and takes each door's state from its retained status)")


@dataclass
class Summary:
    """What one migration did; ``ok`` when every event was copied or already there."""

    total: int = 0  # events and kept copies in the SQLite archive
    events: int = 0
    copied: int = 0
    already: int = 0
    conflicts: int = 0  # events PostgreSQL holds with another hash (this run's and earlier runs')
    after_retention: int = 0  # events of a month PostgreSQL already exported and dropped
    refused: int = 0  # events not copied: unreadable rows
    misplaced: int = 0  # events PostgreSQL put into another epoch than the SQLite archive
    copies: int = 0  # conflicting copies kept by the SQLite archive
    copies_carried: int = 0
    copies_already: int = 0
    copies_refused: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.conflicts == 0 and self.after_retention == 0 and self.refused == 0
                and self.copies_refused == 0 and self.misplaced == 0)

    @property
    def rate(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        return [
            f"events: {self.events} in the SQLite archive: {self.copied} copied, {self.already} already there, "
            f"{self.conflicts} conflicting with PostgreSQL, {self.after_retention} of dropped months, "
            f"{self.refused} refused, {self.misplaced} in another epoch than in SQLite",
            f"conflicting copies kept by the SQLite archive: {self.copies}: {self.copies_carried} carried into "
            f"conflicts, {self.copies_already} already there, {self.copies_refused} refused",
            f"{self.total} rows in {self.seconds:.1f} s ({self.rate:.0f} rows/s)",
        ]


@dataclass(frozen=True)
class _Row:
    seq: int
    topic: str
    payload: bytes
    received_at: str


class _Progress:
    def __init__(self, total: int, every: int, say: Callable[[str], None]):
        self.total, self.every, self.say = total, max(1, every), say
        self.done = 0
        self.started = time.monotonic()
        self._next = self.every

    def add(self, n: int) -> None:
        self.done += n
        if self.done >= self._next:
            while self._next <= self.done:
                self._next += self.every
            elapsed = time.monotonic() - self.started
            rate = self.done / elapsed if elapsed > 0 else 0.0
            self.say(f"progress: {self.done}/{self.total} rows ({100 * self.done // max(self.total, 1)} %), "
                     f"{rate:.0f} rows/s")


def open_source(path: str | Path) -> sqlite3.Connection:
    """The SQLite archive at ``path``, read-only (URI ``mode=ro``); :class:`ConfigError` when it is
    missing or not a current monitor archive."""
    from firmware_py.station.archive.sqlite import Archive

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--from {path}: no such file")
    try:
        return Archive(path, read_only=True).db.conn
    except StoreError as exc:
        raise ConfigError(f"--from {_one_line(str(exc))}") from None


def open_target(url: str):
    """The PostgreSQL archive at ``url`` (made if empty); :class:`ConfigError` when the URL is not a
    PostgreSQL one, :class:`StoreError` (one line) when it cannot be reached."""
    import psycopg

    from firmware_py.station.archive.pg import PgArchive
    from firmware_py.station.config import check_archive, is_postgres, safe_url

    if not is_postgres(url):
        raise ConfigError("--to: give the PostgreSQL archive as postgresql://USER@HOST:PORT/DATABASE")
    check_archive(url, "--to")
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error as exc:
        reason = _one_line(str(exc).replace(url, safe_url(url)))  # never echo a password
        raise ConfigError(f"--to: not a valid PostgreSQL URL: {reason}") from None
    if "connect_timeout" not in params:
        url = psycopg.conninfo.make_conninfo(url, connect_timeout=CONNECT_TIMEOUT_S)
    try:
        return PgArchive(url)
    except StoreError as exc:
        raise StoreError(_one_line(str(exc))) from None


def migrate(source: sqlite3.Connection, target, *, batch: int = DEFAULT_BATCH, progress_every: int = PROGRESS_EVERY,
            say: Callable[[str], None] = print) -> Summary:
    """Copy every event (every epoch) and every kept conflicting copy of ``source`` into ``target`` (a
    :class:`~firmware_py.station.archive.pg.PgArchive`); ``say`` gets the progress and report lines."""
    if batch < 1:
        raise ConfigError(f"--batch {batch}: give a positive number of events per transaction")
    summary = Summary()
    started = time.monotonic()
    source.execute("BEGIN")  # one read transaction: a consistent snapshot of the file
    try:
        chains = source.execute("SELECT site, door, epoch, count(*) FROM events GROUP BY site, door, epoch"
                                " ORDER BY site, door, epoch").fetchall()
        kept = dict(((s, d, e), n) for s, d, e, n in source.execute(
            "SELECT site, door, epoch, count(*) FROM conflicts GROUP BY site, door, epoch"))
        summary.events = sum(n for *_, n in chains)
        summary.copies = sum(kept.values())
        summary.total = summary.events + summary.copies
        doors = len({(s, d) for s, d, _, _ in chains})
        say(f"migrating {summary.events} events of {doors} door(s) and {summary.copies} conflicting copies")
        progress = _Progress(summary.total, progress_every, say)
        for site, door, epoch, _ in chains:
            kept.pop((site, door, epoch), None)
            _copy_chain(source, target, site, door, epoch, batch, summary, progress, say)
        for (site, door, epoch), copies in kept.items():  # copies of a seq whose event is not in events
            summary.copies_refused += copies
            say(f"refused: {site}/{door} epoch {epoch}: {copies} conflicting copies of events the archive does not "
                "hold")
            progress.add(copies)
    finally:
        source.execute("ROLLBACK")
    summary.seconds = time.monotonic() - started
    return summary


def _copy_chain(source, target, site: str, door: str, epoch: int, batch: int, summary: Summary,
                progress: _Progress, say) -> None:
    """One epoch of a door: its events, then the conflicting copies the SQLite archive kept of them."""
    recorded = _recorded_conflicts(target, site, door, epoch)
    named = [0]

    def copy(rows: Iterator[_Row], events: bool) -> None:
        pending: list = []
        for row in rows:
            item = _incoming(site, door, row)
            if isinstance(item, str):
                _refuse_row(summary, site, door, row.seq, item, events, named, say)
                progress.add(1)
            elif (row.seq, item.event.get("hash", ""), _digest(row.payload)) in recorded:
                if events:
                    summary.conflicts += 1  # kept in PostgreSQL's conflicts by an earlier run
                else:
                    summary.copies_already += 1
                progress.add(1)
            else:
                pending.append(item)
                if len(pending) >= batch:
                    _store(target, pending, epoch, events, summary, named, say)
                    progress.add(len(pending))
                    pending = []
        if pending:
            _store(target, pending, epoch, events, summary, named, say)
            progress.add(len(pending))

    copy(_rows(source, "events", site, door, epoch), True)
    copy(_rows(source, "conflicts", site, door, epoch), False)


def _rows(source: sqlite3.Connection, table: str, site: str, door: str, epoch: int) -> Iterator[_Row]:
    cur = source.execute(f"SELECT seq, topic, payload, received_at FROM {table} WHERE site=? AND door=? AND epoch=?"
                         " ORDER BY seq" + (", id" if table == "conflicts" else ""), (site, door, epoch))
    while chunk := cur.fetchmany(1000):
        for seq, topic, payload, received_at in chunk:
            yield _Row(seq, topic, bytes(payload) if isinstance(payload, bytes | memoryview) else
                       str(payload).encode(), received_at)


def _incoming(site: str, door: str, row: _Row):
    """The row as an :class:`Incoming`, or the reason it is not an event the archive can hold."""
    from firmware_py.station.archive.pg import Incoming

    try:
        event = json.loads(row.payload, parse_constant=_not_json)
    except ValueError as exc:
        return f"its payload is not strict JSON ({exc})" if "NaN" in str(exc) or "Infinity" in str(exc) \
            else "its payload is not JSON"
    if not isinstance(event, dict):
        return "its payload is not a JSON object"
    seq = event.get("seq")
    if seq != row.seq or isinstance(seq, bool) or not isinstance(seq, int):
        return f"its payload's seq {seq!r} is not the row's"
    if not 1 <= seq <= MAX_SEQ:
        return f"its seq {seq} is outside 1..2^53, the seqs an archive takes"
    for name, expected in (("site", site), ("door", door)):
        if name in event and event[name] != expected:
            return f"its payload's {name} {event[name]!r} is not the row's {expected!r}"
    for name in IDENTIFIERS:
        value = event.get(name)
        if isinstance(value, str) and any(ord(c) < 32 or ord(c) == 127 for c in value):
            return f"its {name} {value!r} holds a control character"
    for name, value in (("ts", event.get("ts")), ("received_at", row.received_at)):
        if (why := _time_problem(value)) is not None:
            return f"its {name} {value!r} {why}"
    return Incoming(site, door, row.topic, row.payload, event, row.received_at)


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def _time_problem(value) -> str | None:
    """Why ``value`` is not a time an archive can hold (None when it is)."""
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        return "is not an ISO 8601 time with offset"
    try:
        days = (moment.date(), moment.astimezone(UTC).date())
    except OverflowError:
        days = (date.min,)
    if not all(FIRST_DAY <= d <= LAST_DAY for d in days):
        return f"is outside {FIRST_DAY}..{LAST_DAY}"
    return None


def _refuse_row(summary: Summary, site, door, seq, reason, events: bool, named: list[int], say) -> None:
    if events:
        summary.refused += 1
    else:
        summary.copies_refused += 1
    say(f"refused: {site}/{door} #{seq}{'' if events else ' (a conflicting copy)'}: {reason}")


def _store(target, items: list, epoch: int, events: bool, summary: Summary, named: list[int], say) -> None:
    """Store a batch; one PostgreSQL refuses is split in halves until the refused rows are found and
    named, so one bad row costs its batch a few more transactions, never the rest of the archive."""
    import psycopg

    try:
        done = target.store_events(items)
    except (StoreError, ValueError, OverflowError, psycopg.Error) as exc:
        if target.conn.closed or target.conn.broken:
            raise StoreError(f"lost the PostgreSQL archive while copying: {_one_line(str(exc))}") from None
        if len(items) > 1:
            half = len(items) // 2
            _store(target, items[:half], epoch, events, summary, named, say)
            _store(target, items[half:], epoch, events, summary, named, say)
            return
        reason = _one_line(str(exc)).split(" failed: ", 1)[-1]
        _refuse_row(summary, items[0].site, items[0].door, items[0].event["seq"],
                    f"PostgreSQL refused it: {reason}", events, named, say)
        return
    if events:
        summary.copied += done.stored
        summary.already += done.duplicates
        summary.conflicts += done.conflicts
        summary.after_retention += done.after_retention
    else:  # a kept copy that is new in PostgreSQL becomes its event; one it holds already is "already there"
        summary.copies_carried += done.stored + done.conflicts + done.after_retention
        summary.copies_already += done.duplicates
    if events:
        for item, placed in zip(items, done.epochs, strict=True):
            if placed != epoch:
                summary.misplaced += 1
                _name(f"epoch: {item.site}/{item.door} #{item.event['seq']}: PostgreSQL placed it in epoch {placed}, "
                      f"the SQLite archive in epoch {epoch}", named, say)
    if events and (done.conflicts or done.after_retention):
        _name_conflicts(target, items, epoch, named, say)


def _name_conflicts(target, items: list, epoch: int, named: list[int], say) -> None:
    site, door = items[0].site, items[0].door
    seqs = [i.event["seq"] for i in items]
    with target._lock, target.conn.transaction():
        held = dict(target.conn.execute("SELECT seq, hash FROM event_keys WHERE site=%s AND door=%s AND epoch=%s"
                                        " AND seq BETWEEN %s AND %s",
                                        (site, door, epoch, min(seqs), max(seqs))).fetchall())
    for item in items:
        seq, h = item.event["seq"], str(item.event.get("hash", ""))
        if seq not in held:
            _name(f"conflict: {site}/{door} #{seq}: its month was already exported and dropped in PostgreSQL; this "
                  "copy was kept in conflicts", named, say)
        elif held[seq] != h:
            _name(f"conflict: {site}/{door} #{seq}: PostgreSQL holds hash {held[seq][:12]}…, the SQLite archive "
                  f"{h[:12]}…; the SQLite copy was kept in conflicts", named, say)


def _name(line: str, named: list[int], say) -> None:
    named[0] += 1
    if named[0] <= NAMED_PER_DOOR:
        say(line)
    elif named[0] == NAMED_PER_DOOR + 1:
        say("  … (more for this door: see the summary)")


def _recorded_conflicts(target, site: str, door: str, epoch: int) -> set[tuple[int, str, str]]:
    """(seq, hash, md5 of payload) of every copy of the door's epoch already in PostgreSQL's ``conflicts``."""
    with target._lock, target.conn.transaction():
        rows = target.conn.execute("SELECT seq, hash, md5(payload) FROM conflicts WHERE site=%s AND door=%s"
                                   " AND epoch=%s", (site, door, epoch)).fetchall()
    return {(seq, h, m) for seq, h, m in rows}


def _digest(payload: bytes) -> str:
    return hashlib.md5(payload, usedforsecurity=False).hexdigest()


def _one_line(text: str) -> str:
    return " ".join(text.split())
