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
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sqlite_utils

from firmware_py.errors import StoreError
from firmware_py.station.archive.sqlite import Archive, Epoch

SHOWN = 3  # differing seqs named in the message; the rest are counted


@dataclass(frozen=True)
class AnchorCheck:
    """The outcome: ``ok`` and one line saying why, naming the epoch compared (if any)."""

    ok: bool
    message: str
    epoch: int | None = None

    def __str__(self) -> str:
        return self.message


def check_against(db: sqlite_utils.Database, archive: Archive, site: str, door: str) -> AnchorCheck:
    """Does the door log in ``db`` still extend what ``site``/``door`` published into ``archive``?

    :class:`StoreError` when the archive holds nothing of that door (nothing to check against).
    """
    epochs = archive.epochs(site, door)
    if not epochs:
        raise StoreError(f"{archive.path}: the archive holds nothing of {site}/{door}: nothing to check against "
                         "(is it the monitor's archive of this site, and has the monitor seen the door?)")
    local_head = db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    chosen = _matching_epoch(db, archive, site, door, epochs)
    if chosen is None:
        current = epochs[-1]
        if any(True for _ in archive.hashes(site, door, current.epoch)) or len(epochs) > 1:
            return AnchorCheck(False, f"does not extend what {site}/{door} published: this log shares no event with "
                                      f"the archive (log head #{local_head}, published head #{current.head_seq} in "
                                      f"epoch {current.epoch}): it was replaced or rewritten from its first event")
        chosen = current  # only a status head was ever seen: compare the head alone
    problems = _differences(db, archive.hashes(site, door, chosen.epoch))
    if chosen.head_seq > local_head:
        problems.append(f"the log ends at #{local_head} but the door published up to #{chosen.head_seq}: "
                        "events were cut from the end")
    elif chosen.head_hash:
        row = db.execute("SELECT hash FROM events WHERE seq = ?", (chosen.head_seq,)).fetchone()
        if row and row[0] != chosen.head_hash and not any(f"#{chosen.head_seq} " in p for p in problems):
            problems.append(f"#{chosen.head_seq} differs from the head the door announced "
                            f"(local {row[0][:12]}…, published {chosen.head_hash[:12]}…)")
    newer = [e for e in epochs if e.epoch > chosen.epoch]
    if newer:
        problems.append(f"the door published a newer chain (epoch {newer[-1].epoch}, archived from "
                        f"{newer[-1].started_at}) that this log does not hold")
    if problems:
        return AnchorCheck(False, f"does not extend what {site}/{door} published (epoch {chosen.epoch}): "
                                  + "; ".join(problems), chosen.epoch)
    return AnchorCheck(True, f"extends what {site}/{door} published (epoch {chosen.epoch}, published head "
                             f"#{chosen.head_seq}, log head #{local_head})", chosen.epoch)


def _matching_epoch(db, archive: Archive, site: str, door: str, epochs: list[Epoch]) -> Epoch | None:
    for epoch in reversed(epochs):
        first = next(archive.hashes(site, door, epoch.epoch), None)
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
