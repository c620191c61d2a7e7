"""Is the wall clock trustworthy? The Pi has no real-time clock.

The clock is unsynchronised when it reads earlier than a configured floor
(a Pi that booted without network believes it is 1970 or its last shutdown),
or when it has stepped back by more than the allowed amount against the
monotonic clock. After a backward step it stays unsynchronised until wall
time catches up with the latest time it had shown, or until a trusted source
(the supervisor's time beacon) confirms it, so a grant is never stamped with
a time that might lie.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .clock import Clock


@dataclass(frozen=True)
class ClockVerdict:
    sane: bool
    changed: bool  # the verdict differs from the previous check
    detail: dict


class ClockGuard:
    def __init__(self, clock: Clock, *, floor: datetime, max_backstep_s: float):
        self.clock = clock
        self.floor = floor
        self.max_backstep = timedelta(seconds=max_backstep_s)
        self._high_water: datetime | None = None
        self._last: tuple[datetime, float] | None = None
        self.sane = True
        self._why: dict = {}
        self._distrust: dict | None = None  # a trusted source disagrees grossly
        self.drifting = False  # the last trusted reading differed by more than the drift bound

    def check(self) -> ClockVerdict:
        now, mono = self.clock.now(), self.clock.monotonic()
        why: dict = {}
        if self._distrust is not None:
            why = self._distrust
        elif now < self.floor:
            why = {"cause": "before_floor", "floor": self.floor.isoformat()}
        elif self._last is not None:
            last_wall, last_mono = self._last
            expected = last_wall + timedelta(seconds=mono - last_mono)
            if now < expected - self.max_backstep:
                why = {"cause": "stepped_back", "step_s": round((expected - now).total_seconds(), 3)}
        if not why and self._high_water is not None and now < self._high_water - self.max_backstep and not self.sane:
            why = self._why  # still behind the latest time shown before the step
        self._last = (now, mono)
        if now >= self.floor and (self._high_water is None or now > self._high_water) and not why:
            self._high_water = now
        was = self.sane
        self.sane = not why
        self._why = why
        return ClockVerdict(self.sane, was != self.sane, why)

    def compare(self, beacon: datetime, *, drift_s: float, gross_s: float) -> dict | None:
        """Compare our clock with a trusted reading (GB 50396 5.1.3).

        Returns the ``clock_drift`` detail when a drift beyond ``drift_s`` begins
        (once per episode); beyond ``gross_s`` the clock is also distrusted until a
        reading agrees. An agreeing reading confirms the clock.
        """
        offset = (self.clock.now() - beacon).total_seconds()
        detail = {"offset_s": round(offset, 3), "beacon": beacon.isoformat(timespec="milliseconds")}
        if abs(offset) <= drift_s:
            self.drifting = False
            self.confirm()
            return None
        if abs(offset) > gross_s:
            self.distrust({"cause": "beacon_disagrees", **detail})
        if self.drifting:
            return None
        self.drifting = True
        return {**detail, "bound_s": drift_s}

    def distrust(self, detail: dict) -> None:
        """A trusted source (the supervisor's beacon) disagrees grossly: unsynchronised until it agrees."""
        self._distrust = detail

    def confirm(self) -> None:
        """A trusted source agrees with the wall clock now: forget the old high-water mark."""
        self._distrust = None
        self._high_water = self.clock.now()
        self._last = (self._high_water, self.clock.monotonic())
