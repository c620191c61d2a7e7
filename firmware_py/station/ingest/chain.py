"""Each door's hash chain verified as its events are archived, backend-neutral (the PostgreSQL ingest
keeps the result in ``door_chains``; the SQLite archive's page runs its own check over the archive,
:mod:`firmware_py.station.archive.chain`). Both word a break with
:func:`~firmware_py.station.archive.chain.link_problem`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from firmware_py.core.events import GENESIS_HASH
from firmware_py.station.archive.chain import link_problem

log = logging.getLogger(__name__)


@dataclass
class DoorChain:
    """How far one door's hash chain is archived and verified, and what is waiting beyond a gap."""

    site: str
    door: str
    epoch: int = 1  # the door's chain this is (a door whose log was reset starts the next one)
    verified_to: int = 0
    last_hash: str = GENESIS_HASH
    problem: str | None = None
    pending: dict[int, tuple[str, str, bool]] = field(default_factory=dict)  # seq -> (hash, prev_hash, hash_ok)
    advanced_at: float = field(default_factory=time.monotonic)
    status_last_seq: int = 0
    status_queued: int | None = None
    status_online: bool | None = None
    hole: int | None = None  # the first missing seq being asked for
    requests: int = 0
    requested_at: float = 0.0
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
                self.advanced_at = time.monotonic()
            self.dirty = True
            if self.problem:
                log.error("%s/%s: hash chain broken: %s", self.site, self.door, self.problem)

    @property
    def missing_from(self) -> int | None:
        """The first seq the archive lacks while later ones exist (or are announced), else None."""
        if self.problem is not None:
            return None
        if self.pending or (self.status_last_seq > self.verified_to and self.status_queued == 0):
            return self.verified_to + 1
        return None
