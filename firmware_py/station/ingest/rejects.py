"""How much of a refused message the station keeps, door by door, for both ingests.

Every refused message gets its row in ``ingest_rejects`` (when, where from, why). Its payload, up
to a little more than 64 KiB each (:func:`~firmware_py.station.ingest.judge.kept_payload`), is kept
for the first :data:`PAYLOADS_PER_MINUTE` refusals of a door in a minute; beyond that the row says
so instead: a stolen door's account publishing 4 MB messages as fast as the broker takes them then
adds a few hundred bytes a message, not 64 KiB, and cannot fill the archive's disk for every door.
"""

from __future__ import annotations

from collections.abc import Callable

from firmware_py.station.ingest.judge import kept_payload

PAYLOADS_PER_MINUTE = 60
WINDOW_S = 60.0
NOT_KEPT = " (payload not kept: over {limit} refused messages of this door within a minute)"


class RejectBudget:
    """Per door (site, door): whether a refused message's payload is still kept this minute.

    ``clock``: monotonic seconds (the ingest's ``time.monotonic``; a test's own).
    """

    def __init__(self, clock: Callable[[], float], *, per_minute: int = PAYLOADS_PER_MINUTE):
        self.clock = clock
        self.per_minute = per_minute
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}  # door -> (window start, payloads kept)

    def keep(self, site: str, door: str, reason: str, payload: bytes) -> tuple[str, bytes]:
        """(reason, payload) to store for one refused message of the door."""
        now = self.clock()
        start, kept = self._windows.get((site, door), (now, 0))
        if now - start >= WINDOW_S:
            start, kept = now, 0
        if kept >= self.per_minute:
            self._windows[(site, door)] = (start, kept)
            return reason + NOT_KEPT.format(limit=self.per_minute), b""
        if len(self._windows) > 100_000:  # forged site and door names cannot grow this for ever
            self._windows.clear()
        self._windows[(site, door)] = (start, kept + 1)
        return reason, kept_payload(payload)
