"""Each door's archived hash chain, verified as it grows (on the SQLite archive, :class:`ChainChecker`
over the archive; on PostgreSQL, :class:`DoorChain` as each batch is stored, the result kept in
``door_chains`` and read by :mod:`.store_pg`).

A door's events are checked in seq order from the first archived one: each ``hash`` must be the
SHA-256 of the event without it (:func:`firmware_py.core.events.event_hash`) and each ``prev_hash`` the
previous event's ``hash`` (the genesis hash before #1). The check remembers how far it got, so
each call reads only the events archived since; a missing seq pauses it until the replay arrives;
a break is final and shown with its seq.

Each chain epoch of a door (a door whose database was reset starts again at seq 1, see
:mod:`firmware_py.station.archive.sqlite_schema`) is its own chain, checked on its own; the page shows the door's
current epoch.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from firmware_py.core.events import GENESIS_HASH, event_hash

log = logging.getLogger(__name__)


class ChainRows(Protocol):
    """What the checker reads: one door's archived events of an epoch, in seq order (the SQLite store)."""

    def chain_rows(self, site: str, door: str, epoch: int, after_seq: int,
                   limit: int = 5000) -> list[tuple[int, bytes]]: ...


def link_problem(seq: int, hash_ok: bool, prev: str | None, last_hash: str | None) -> str | None:
    """What breaks the chain at ``seq`` (None: it holds): its hash must be the SHA-256 of the event, and
    its ``prev_hash`` the hash of the event before (``last_hash``; None when that one is not archived
    and the link cannot be checked). The one wording of a break, for both archives' chain checks."""
    if not hash_ok:
        return f"#{seq}: its hash is not the SHA-256 of the event (altered)"
    if last_hash is not None and prev != last_hash:
        return f"#{seq}: prev_hash does not match #{seq - 1}" if seq > 1 else "#1: prev_hash is not the genesis hash"
    return None


def copy_score(seq: int, h: str, prev: str, hash_ok: bool, *, before: str | None, after_prev: str | None,
               announced: str | None) -> int:
    """How well one copy of ``seq`` verifies, the same on both archives: its own hash first (without it,
    nothing else counts), then its links both ways to the archived neighbours (``before``: the hash
    of the archived ``seq - 1``; ``after_prev``: the ``prev_hash`` of the archived ``seq + 1``), then
    the door's status naming it as the head (``announced``: the hash the status gives for ``seq``).
    Of two copies of one seq, the one with the higher score stays in ``events``, the other goes to
    ``conflicts``; a tie keeps the copy archived first."""
    if not hash_ok:  # its content is not what its hash says: its links vouch for nothing
        return 0
    score = 4
    if (GENESIS_HASH if seq == 1 else before) == prev:
        score += 2
    if after_prev is not None and after_prev == h:
        score += 2
    if announced is not None and announced == h:
        score += 1
    return score


class EpochLookups(Protocol):
    """What :func:`epoch_for` reads of one door's archive (both archives answer it from their own tables)."""

    def epoch_with(self, seq: int, h: str) -> int | None:
        """The newest epoch whose archived ``seq`` has hash ``h``, or None."""

    def newest(self, epoch: int) -> tuple[int, datetime] | None:
        """(seq, ts) of the highest archived seq of ``epoch``, or None when it has none."""

    def expected(self, epoch: int) -> int:
        """The highest seq known to exist in ``epoch`` (archived, or announced by the door's status)."""


@dataclass(frozen=True)
class EpochChoice:
    """Where an incoming event belongs: ``epoch`` (None: a new epoch, numbered by the archive), and whether
    it makes that epoch the door's current one again (``resumed``)."""

    epoch: int | None
    resumed: bool = False


def epoch_for(current: int, seq: int, ts: datetime, h: str, prev: str, hash_ok: bool,
              look: EpochLookups) -> EpochChoice:
    """The epoch of an incoming event, the same rule on both archives (DESIGN.md: evidence).

    A well-hashed seq 1 linked to the genesis hash is the start of a chain: the epoch that already
    holds it, else a new epoch when it is newer than everything of the current epoch (the door's log
    was reset), else a conflicting copy of the current epoch's seq 1 (an old or forged seq 1 does not
    open an epoch). A later seq goes to the epoch whose archived ``seq - 1`` it links to; when that is an
    older epoch whose chain grows with it, that epoch is the door's again (a forged seq 1 does not divert
    the door's real chain). Anything else belongs to the current epoch.
    """
    if seq == 1 and prev == GENESIS_HASH and hash_ok:
        known = look.epoch_with(1, h)
        if known is not None:
            return EpochChoice(known)
        newest = look.newest(current)
        return EpochChoice(None if newest is not None and ts > newest[1] else current)
    if seq > 1:
        linked = look.epoch_with(seq - 1, prev)
        if linked is not None and linked != current:
            return EpochChoice(linked, resumed=seq > look.expected(linked))
    return EpochChoice(current)


def is_repeat(archived_hash: str, archived_payload: bytes, h: str, event: dict) -> bool:
    """Is an incoming copy of an archived seq the archived event again (a duplicate), rather than a
    conflicting copy? Its hash must be the archived one *and* it must say the same (perhaps formatted
    otherwise): with the same hash and other content one of the two is not what its hash vouches for,
    and both are kept. The rule of both archives (the PostgreSQL archive compares the payloads as
    ``jsonb`` in its batch)."""
    if archived_hash != h:
        return False
    try:
        return json.loads(archived_payload) == event
    except ValueError:
        return False


def new_epoch_detail(epoch: int, current: int, last_seq: int) -> str:
    return (f"#1 starts a new hash chain (epoch {epoch}): the door's log was reset or replaced; epoch {current} "
            f"(up to #{last_seq}) stays in the archive")


def resumed_detail(seq: int, epoch: int, current: int) -> str:
    return (f"#{seq} continues the chain of epoch {epoch} after epoch {current} began: the seq 1 that started "
            f"epoch {current} was not this door's chain; epoch {epoch} is current again")


def status_head(last_seq: int, last_hash: str | None, head_seq: int, head_hash: str | None,
                archived: str | None) -> tuple[str, str] | None:
    """What a door's status says against the archive (None: nothing wrong): ``head_regressed`` when its
    ``last_seq`` is below the head the door already published (its log was cut or reset),
    ``head_mismatch`` when its ``last_hash`` is not the hash of the archived ``last_seq``. The one rule
    and wording of both archives; ``archived`` is the archived copy's hash after the door's word
    settled which copy stays."""
    if last_seq < head_seq:
        return "head_regressed", (f"the door's status says its last event is #{last_seq}, but it published up to "
                                  f"#{head_seq}: its log was cut or its database reset")
    if last_hash and archived and archived != last_hash:
        return "head_mismatch", (f"the door's status says #{last_seq} has hash {last_hash[:12]}…, the archived "
                                 f"#{last_seq} has {archived[:12]}…")
    return None


def event_head_mismatch(seq: int, h: str, announced: str) -> str:
    return f"#{seq} has hash {h[:12]}… but the door's status announced {announced[:12]}… for it"


@dataclass(frozen=True)
class ChainResult:
    ok: bool  # no break found so far
    first: int | None  # first archived seq (None: nothing archived)
    verified_to: int  # every seq from first to here verified
    waiting_for: int | None  # a missing seq the check waits for (a gap), if newer ones are archived
    problem: str | None
    epoch: int = 1

    def text(self) -> str:
        epoch = f" (第 {self.epoch} 段 epoch {self.epoch})" if self.epoch > 1 else ""
        if not self.ok:
            return f"✗ 链断裂 chain broken: {self.problem}{epoch}"
        if self.first is None:
            return "— 无事件 no events" + epoch
        text = f"✓ 已验证 verified #{self.first}–#{self.verified_to}"
        if self.waiting_for is not None:
            text += f"; 缺 missing #{self.waiting_for}"
        return text + epoch


@dataclass
class _Progress:
    first: int | None = None
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    problem: str | None = None
    waiting_for: int | None = None
    last_payload: bytes | None = None  # the archived copy of last_seq that was verified
    broken_payload: bytes | None = None  # the archived copy of the seq that broke the chain


class ChainChecker:
    def __init__(self, store: ChainRows):
        self.store = store
        self._progress: dict[tuple[str, str, int], _Progress] = {}
        self._lock = threading.Lock()

    def check(self, site: str, door: str, epoch: int | None = None) -> ChainResult:
        """The chain of one epoch of the door (default: its current epoch), verified up to now."""
        epoch = epoch or self.store.current_epoch(site, door)
        with self._lock:
            p = self._progress.setdefault((site, door, epoch), _Progress())
            if self._copy_replaced(site, door, epoch, p):  # verify again from the start (rare)
                p = self._progress[(site, door, epoch)] = _Progress()
            while p.problem is None:
                rows = self.store.chain_rows(site, door, epoch, p.last_seq)
                if not rows:
                    p.waiting_for = None
                    break
                if not self._advance(p, rows):
                    break
            return ChainResult(p.problem is None, p.first, p.last_seq, p.waiting_for, p.problem, epoch)

    def _copy_replaced(self, site: str, door: str, epoch: int, p: _Progress) -> bool:
        """Whether the archive now holds another copy of the last seq verified or of the one that broke
        the chain: a conflicting copy that verifies better replaced it (the chain may hold now, or
        break elsewhere)."""
        if p.first is None:
            return False
        rows = dict(self.store.chain_rows(site, door, epoch, max(p.last_seq, p.first) - 1, limit=2))
        if p.last_payload is not None and rows.get(p.last_seq) != p.last_payload:
            return True
        broken = p.last_seq + 1 if p.last_payload is not None else p.first
        return p.broken_payload is not None and rows.get(broken) != p.broken_payload

    @staticmethod
    def _advance(p: _Progress, rows: list[tuple[int, bytes]]) -> bool:
        """Verify ``rows`` onto ``p``; False when the check must stop (a gap or a break)."""
        for seq, payload in rows:
            if p.first is None:
                p.first = seq
                if seq != 1:
                    p.last_hash = None  # archived from a later seq: the first link cannot be checked
            elif seq != p.last_seq + 1:
                p.waiting_for = p.last_seq + 1
                return False
            try:
                event = json.loads(payload)
                h = event.pop("hash")
                computed = event_hash(event)
            except (ValueError, KeyError, TypeError, AttributeError):
                p.problem, p.broken_payload = f"#{seq} is not a readable event", payload
                return False
            p.problem = link_problem(seq, computed == h, event.get("prev_hash"), p.last_hash)
            if p.problem:
                p.broken_payload = payload
                return False
            p.last_seq, p.last_hash, p.waiting_for, p.last_payload = seq, h, None, payload
        return True


@dataclass
class DoorChain:
    """How far one door's hash chain is archived and verified, and what is waiting beyond a gap
    (the PostgreSQL archive's, as its batches are stored)."""

    site: str
    door: str
    epoch: int = 1  # the door's chain this is (a door whose log was reset starts the next one)
    verified_to: int = 0
    last_hash: str = GENESIS_HASH
    problem: str | None = None
    pending: dict[int, tuple[str, str, bool]] = field(default_factory=dict)  # seq -> (hash, prev_hash, hash_ok)
    announced: int = 0  # the last seq the door's status announced with nothing queued
    dirty: bool = False

    def add(self, seq: int, h: str, prev: str, ok: bool) -> None:
        if seq > self.verified_to and seq not in self.pending:  # the first copy counts, as in the archive
            self.pending[seq] = (h, prev, ok)

    def advance(self) -> None:
        """Verify what now follows the verified part without a gap; a break stops the chain for good."""
        while self.problem is None and self.verified_to + 1 in self.pending:
            seq = self.verified_to + 1
            h, prev, ok = self.pending.pop(seq)
            self.problem = link_problem(seq, ok, prev, self.last_hash)
            if self.problem is None:
                self.verified_to, self.last_hash = seq, h
            self.dirty = True
            if self.problem:
                log.error("%s/%s: hash chain broken: %s", self.site, self.door, self.problem)

    @property
    def expected(self) -> int:
        """The last seq known to exist (archived beyond a gap, or announced); the verified part when the
        chain is broken (nothing after a break can be verified, so nothing is missing)."""
        if self.problem is not None:
            return self.verified_to
        return max(self.verified_to, self.announced, max(self.pending, default=0))
