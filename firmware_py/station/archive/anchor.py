"""A door's event log checked against what the door published (``accessctl log verify --against``).

The hash chain alone proves nothing to someone with write access to the door's database: an
edited event re-hashed onward, or the tail cut with ``head_seq`` fixed, verifies. What the door
published is outside the door: the monitor's archive keeps its events and, per chain epoch,
the head it announced (``last_seq``/``last_hash`` of its status, or its latest linked event).

A door's log *extends what was published* when every archived event of its epoch has the
same hash in the log, the log reaches the published head (with the same hash there), and the
door published no newer chain since. The epoch is the latest one whose first archived event is
in the log with the same hash: after a legitimate database reset the new log is checked
against the new epoch, not against the old chain it no longer holds.

A new epoch is only a claim, though: anyone holding the door's account can publish a #1 that
opens one. An epoch counts as the door's chain only when

- every event of it follows the head of the door's previous chain in time (a log restarted
  after the reset cannot hold what happened before it), and
- the previous chain does not go on after the epoch began (a door that really lost its log
  cannot publish new seqs of the old chain; late copies of seqs already seen are not going on).

An epoch that fails either is *not this door's chain*: a log holding it does not pass, a newer
one does not make the door's real log fail, and the report says which rule it broke. A log
checked against a later epoch must itself follow the previous chain's head in time. The check
reads the archive's ``epochs`` and ``events`` tables only, read-only, whatever the ingest that
wrote them concluded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import sqlite_utils

from firmware_py.errors import StoreError
from firmware_py.station.archive.sqlite import Archive

SHOWN = 3  # differing seqs named in the message; the rest are counted


@dataclass(frozen=True)
class AnchorCheck:
    """The outcome: ``ok`` and what it says (one line, then a line per epoch that is not the door's),
    naming the epoch compared (if any)."""

    ok: bool
    message: str
    epoch: int | None = None

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class _Epoch:
    """One chain epoch of the door as the archive's ``epochs`` table holds it."""

    epoch: int
    head_seq: int
    head_hash: str | None
    started_at: str


@dataclass(frozen=True)
class _Head:
    """The head of an epoch (its highest archived seq, as the next epoch began) and its time."""

    seq: int
    ts: str
    instant: datetime


def check_against(db: sqlite_utils.Database, archive: Archive, site: str, door: str) -> AnchorCheck:
    """Does the door log in ``db`` still extend what ``site``/``door`` published into ``archive``?

    :class:`StoreError` when the archive holds nothing of that door (nothing to check against).
    """
    adb = archive.db
    epochs = [_Epoch(*r) for r in adb.execute(
        "SELECT epoch, head_seq, head_hash, started_at FROM epochs WHERE site=? AND door=? ORDER BY epoch",
        (site, door)).fetchall()]
    if not epochs:
        raise StoreError(f"{archive.path}: the archive holds nothing of {site}/{door}: nothing to check against "
                         "(is it the monitor's archive of this site, and has the monitor seen the door?)")
    judged = _judge(adb, site, door, epochs)
    accepted = [e for e in epochs if e.epoch not in judged.refused]
    notes = [f"epoch {n} is not this door's chain: {why}" for n, why in judged.refused.items()]

    def outcome(ok: bool, line: str, epoch: int | None) -> AnchorCheck:
        return AnchorCheck(ok, "\n".join([line, *notes]), epoch)

    local_head = db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    chosen = _matching_epoch(db, adb, site, door, accepted) or _matching_epoch(db, adb, site, door, epochs)
    if chosen is None:
        current = accepted[-1]
        if _first(adb, site, door, current.epoch) is not None or len(epochs) > 1:
            return outcome(False, f"does not extend what {site}/{door} published: this log shares no event with "
                                  f"the archive (log head #{local_head}, published head #{current.head_seq} in "
                                  f"epoch {current.epoch}): it was replaced or rewritten from its first event", None)
        chosen = current  # only a status head was ever seen: compare the head alone
    if chosen.epoch in judged.refused:
        n = chosen.epoch
        return outcome(False, f"does not extend what {site}/{door} published: this log holds epoch {n} of the "
                              f"archive, and epoch {n} is not this door's chain (below)", n)
    problems = _differences(db, _hashes(adb, site, door, chosen.epoch))
    if chosen.head_seq > local_head:
        problems.append(f"the log ends at #{local_head} but the door published up to #{chosen.head_seq}: "
                        "events were cut from the end")
    elif chosen.head_hash:
        row = db.execute("SELECT hash FROM events WHERE seq = ?", (chosen.head_seq,)).fetchone()
        if row and row[0] != chosen.head_hash and not any(f"#{chosen.head_seq} " in p for p in problems):
            problems.append(f"#{chosen.head_seq} differs from the head the door announced "
                            f"(local {row[0][:12]}…, published {chosen.head_hash[:12]}…)")
    if chosen.epoch in judged.before:
        previous, head = judged.before[chosen.epoch]
        early = _not_after(db.execute("SELECT seq, ts FROM events ORDER BY seq"), head)
        if early:
            problems.append(f"the log's {early} not follow the head of epoch {previous} (#{head.seq} at "
                            f"{head.ts}) in time: a chain that began after epoch {previous} cannot hold it")
    newer = [e for e in accepted if e.epoch > chosen.epoch]
    if newer:
        problems.append(f"the door published a newer chain (epoch {newer[-1].epoch}, archived from "
                        f"{newer[-1].started_at}) that this log does not hold")
    if problems:
        return outcome(False, f"does not extend what {site}/{door} published (epoch {chosen.epoch}): "
                              + "; ".join(problems), chosen.epoch)
    return outcome(True, f"extends what {site}/{door} published (epoch {chosen.epoch}, published head "
                         f"#{chosen.head_seq}, log head #{local_head})", chosen.epoch)


@dataclass
class _Judgement:
    refused: dict[int, str]  # epoch → why it is not the door's chain
    before: dict[int, tuple[int, _Head]]  # epoch → (the door's chain before it, that chain's head when it began)


def _judge(adb, site: str, door: str, epochs: list[_Epoch]) -> _Judgement:
    """Which epochs after the first are the door's chain: each is judged against the last one that is."""
    judged = _Judgement({}, {})
    previous = epochs[0]
    for e in epochs[1:]:
        reasons = []
        head, went_on = _previous_chain(adb, site, door, previous.epoch, e.started_at)
        if head is not None:
            judged.before[e.epoch] = (previous.epoch, head)
            early = _not_after(adb.execute("SELECT seq, ts FROM events WHERE site=? AND door=? AND epoch=?"
                                           " ORDER BY seq", (site, door, e.epoch)), head)
            if early:
                reasons.append(f"its {early} not follow the head of epoch {previous.epoch} "
                               f"(#{head.seq} at {head.ts}) in time")
        if went_on:
            reasons.append(f"the chain of epoch {previous.epoch} went on after epoch {e.epoch} began ({went_on}): "
                           f"the #1 that opened epoch {e.epoch} was not the door's new chain")
        if reasons:
            judged.refused[e.epoch] = "; and ".join(reasons)
        else:
            previous = e
    return judged


def _previous_chain(adb, site: str, door: str, epoch: int, began: str) -> tuple[_Head | None, str | None]:
    """The head of ``epoch`` when the next epoch began (its highest seq received by then, else its
    highest seq), and how it went on afterwards: the first seq received after ``began`` that is newer
    than every seq received before (the old chain growing; late copies of older seqs are not)."""
    start = _instant(began)
    newest = before = None
    later = []
    for seq, ts, received_at in adb.execute("SELECT seq, ts, received_at FROM events WHERE site=? AND door=?"
                                            " AND epoch=?", (site, door, epoch)):
        newest = max(newest or (seq, ts), (seq, ts))
        at = _instant(received_at)
        if start is None or at is None:
            continue
        if at <= start:
            before = max(before or (seq, ts), (seq, ts))
        else:
            later.append((seq, received_at))
    head = before or newest
    seen = before[0] if before else 0
    grown = sorted(x for x in later if x[0] > seen)
    went_on = None
    if grown:
        went_on = (f"#{grown[0][0]} received {grown[0][1]}, after #{seen}"
                   + (f", and {len(grown) - 1} more" if len(grown) > 1 else ""))
    if head is None or (instant := _instant(head[1])) is None:
        return None, went_on
    return _Head(head[0], head[1], instant), went_on


def _not_after(rows, head: _Head) -> str | None:
    """``#seq (ts) does``/``… and N more do`` for the rows (seq, ts) not later than ``head``."""
    first, more = None, 0
    for seq, ts in rows:
        instant = _instant(ts)
        if instant is None or instant <= head.instant:
            if first is None:
                first = f"#{seq} ({ts})" if instant is not None else f"#{seq} (time {ts!r} unreadable)"
            else:
                more += 1
    if first is None:
        return None
    return first + (f" and {more} more do" if more else " does")


def _instant(text) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo is not None else None


def _first(adb, site: str, door: str, epoch: int) -> tuple[int, str] | None:
    return adb.execute("SELECT seq, hash FROM events WHERE site=? AND door=? AND epoch=? ORDER BY seq LIMIT 1",
                       (site, door, epoch)).fetchone()


def _hashes(adb, site: str, door: str, epoch: int) -> Iterator[tuple[int, str]]:
    """``(seq, hash)`` of every archived event of one epoch, in seq order (what the door published)."""
    return iter(adb.execute("SELECT seq, hash FROM events WHERE site=? AND door=? AND epoch=? ORDER BY seq",
                            (site, door, epoch)))


def _matching_epoch(db, adb, site: str, door: str, epochs: list[_Epoch]) -> _Epoch | None:
    for epoch in reversed(epochs):
        first = _first(adb, site, door, epoch.epoch)
        if first is None:
            continue
        row = db.execute("SELECT hash FROM events WHERE seq = ?", (first[0],)).fetchone()
        if row and row[0] == first[1]:
            return epoch
    return None


def _differences(db, published: Iterator[tuple[int, str]]) -> list[str]:
    """Archived seqs whose hash in the log differs, merged in seq order with the log."""
    local = db.execute("SELECT seq, hash FROM events ORDER BY seq")
    mine = next(local, None)
    differing: list[tuple[int, str, str]] = []
    for seq, h in published:
        while mine is not None and mine[0] < seq:
            mine = next(local, None)
        if mine is not None and mine[0] == seq and mine[1] != h:
            differing.append((seq, mine[1], h))
    shown = [f"#{s} differs from the published copy (local {a[:12]}…, published {b[:12]}…)"
             for s, a, b in differing[:SHOWN]]
    if len(differing) > SHOWN:
        shown.append(f"{len(differing) - SHOWN} more differ, up to #{differing[-1][0]}")
    return shown
