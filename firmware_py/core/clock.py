"""Clocks the controller can run on: the real one, or a simulated one that jumps.

The core asks ``clock.now()`` for the wall-clock time (timezone-aware) and
``clock.monotonic()`` for durations and timers, so the simulator can
fast-forward a whole working day without sleeping.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, tzinfo
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The wall-clock time, timezone-aware in the site's zone."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""


class SystemClock:
    """The machine's own clocks."""

    def __init__(self, tz: tzinfo):
        self._tz = tz

    def now(self) -> datetime:
        return datetime.now(self._tz)

    def monotonic(self) -> float:
        return time.monotonic()


class SimulatedClock:
    """A clock that stands still until it is told to move.

    ``set_wall`` moves only the wall clock (to simulate an NTP step or a Pi
    booting without RTC); ``advance`` moves both.
    """

    def __init__(self, start: datetime):
        if start.tzinfo is None:
            raise ValueError("SimulatedClock needs a timezone-aware start time")
        self._wall = start
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, delta: timedelta | float) -> None:
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        if seconds < 0:
            raise ValueError("a simulated clock only moves forward; use set_wall for a wall-clock step")
        self._wall += timedelta(seconds=seconds)
        self._mono += seconds

    def set_wall(self, wall: datetime) -> None:
        if wall.tzinfo is None:
            raise ValueError("wall time must be timezone-aware")
        self._wall = wall
