"""Is the wall clock trustworthy? The Pi has no real-time clock.

The clock is unsynchronised when it reads earlier than a configured floor (a
Pi that booted without network believes it is 1970 or its last shutdown), or
when it has stepped, either way, by more than the allowed amount against the
monotonic clock: wall-clock time and monotonic time advance together, so a
difference between the two advances since the previous reading is a step. The
monotonic clock does not jump; a Pi does not suspend, so nothing else makes
them part.

After a step the clock stays unsynchronised until one of these:

- it agrees again with the last trusted reading carried forward on the
  monotonic clock (NTP or an operator put it right: a forward step corrected
  back is sane at once, instead of locking everyone out until the wrong time
  has been caught up);
- a trusted source (the supervisor's time beacon, within the drift bound)
  confirms it (:meth:`ClockGuard.confirm`);
- after a backward step only: wall time catches up with the latest time it had
  shown, so no event is ever stamped earlier than one stored before.

A forward step from a clock never trusted (before the floor, e.g. at boot) is
the clock being set, not a step. So a grant is never stamped with a time that
might lie, and a step ahead cannot open the door "tomorrow morning" tonight.

Steps each under the bound can still add up (740 steps of 59 s move the clock
12 hours in 12 minutes), so the guard also follows the difference between
the wall clock and the monotonic clock over time:

- over a sliding window (:data:`CREEP_WINDOW_S`), a change of that difference
  beyond ``drift_s`` is reported once as ``clock_drift`` (cause ``crept``);
- since the last confirmation by a trusted source (or since the clock was
  first trusted), a change beyond ``max_divergence_s`` makes the clock
  unsynchronised (cause ``crept``) until a beacon confirms it or the clock
  comes back within the ceiling.

A step beyond the bound is reported as a step, not counted as creep.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from firmware_py.core.clock import Clock

CREEP_WINDOW_S = 3600.0  # the sliding window over which steps under the bound are summed
CREEP_SAMPLE_S = 60.0  # how often the difference between the clocks is sampled into the window


@dataclass(frozen=True)
class ClockVerdict:
    sane: bool
    changed: bool  # the verdict differs from the previous check
    detail: dict
    drift: dict | None = None  # a creep beyond the drift bound began: the clock_drift detail


class ClockGuard:
    """Watches the wall clock against the monotonic clock.

    :param floor: a wall-clock reading earlier than this is never trusted.
    :param max_backstep_s: a backward step larger than this makes the clock unsynchronised.
    :param max_forward_step_s: likewise forward; by default the same bound as backward.
    :param drift_s: the clocks parting by more than this within :data:`CREEP_WINDOW_S` is reported
        as ``clock_drift``; None: not watched.
    :param max_divergence_s: the clocks parting by more than this since the last confirmation makes
        the clock unsynchronised; None: not watched.
    """

    def __init__(self, clock: Clock, *, floor: datetime, max_backstep_s: float,
                 max_forward_step_s: float | None = None, drift_s: float | None = None,
                 max_divergence_s: float | None = None):
        self.clock = clock
        self.floor = floor
        self.max_backstep = timedelta(seconds=max_backstep_s)
        self.max_forward_step = timedelta(seconds=max_backstep_s if max_forward_step_s is None
                                          else max_forward_step_s)
        self._high_water: datetime | None = None
        self._last: tuple[datetime, float] | None = None  # the previous reading (wall, monotonic)
        self._trusted: tuple[datetime, float] | None = None  # the latest reading judged sane
        self._step: dict | None = None  # a step seen and not yet resolved
        self.sane = True
        self._distrust: dict | None = None  # a trusted source disagrees grossly
        self.drifting = False  # the last trusted reading differed by more than the drift bound
        self.drift_s = drift_s
        self.max_divergence_s = max_divergence_s
        self._baseline: float | None = None  # wall minus monotonic at the last confirmation or first trust
        self._samples: deque[tuple[float, float]] = deque()  # (monotonic, wall minus monotonic) in the window
        self.creeping = False  # a creep beyond drift_s was reported and has not ended
        self._range = (0.0, 0.0)  # the lowest and highest difference in the window

    def check(self) -> ClockVerdict:
        now, mono = self.clock.now(), self.clock.monotonic()
        offset = now.timestamp() - mono
        step = self._stepped(now, mono)
        if step is not None:
            self._step = step
            self._samples.clear()  # reported as a step; the creep is summed from here on
        elif self._step is not None and self._step["cause"] == "stepped_back" and self._high_water is not None \
                and now >= self._high_water - self.max_backstep:
            self._step = None  # caught up with the latest time shown before the step
            self._baseline = offset  # the time stepped back to is taken: the creep counts from it
        if self._step is not None and self._agrees_with_trusted(now, mono):
            self._step = None  # put right again
        drift = None
        if self._distrust is not None:
            why = self._distrust
        elif now < self.floor:
            why = {"cause": "before_floor", "floor": self.floor.isoformat()}
        else:
            why = self._step or self._crept(offset) or {}
            if step is None:
                drift = self._window_drift(mono, offset)
        self._last = (now, mono)
        if not why:
            self._trusted = (now, mono)
            if self._high_water is None or now > self._high_water:
                self._high_water = now
            if self._baseline is None:
                self._baseline = offset
        was = self.sane
        self.sane = not why
        return ClockVerdict(self.sane, was != self.sane, why, drift)

    def _crept(self, offset: float) -> dict | None:
        """Beyond the ceiling since the last confirmation: the clock cannot be trusted."""
        if self.max_divergence_s is None or self._baseline is None:
            return None
        divergence = offset - self._baseline
        if abs(divergence) <= self.max_divergence_s:
            return None
        return {"cause": "crept", "divergence_s": round(divergence, 3), "bound_s": self.max_divergence_s}

    def _window_drift(self, mono: float, offset: float) -> dict | None:
        """The ``clock_drift`` detail when the clocks parted beyond ``drift_s`` within the window (once)."""
        if self.drift_s is None:
            return None
        samples = self._samples
        if not samples or mono - samples[-1][0] >= CREEP_SAMPLE_S:
            samples.append((mono, offset))
            while mono - samples[0][0] > CREEP_WINDOW_S:
                samples.popleft()
            offsets = [o for _, o in samples]
            self._range = (min(offsets), max(offsets))
        low, high = self._range  # every reading is compared; the window is sampled every CREEP_SAMPLE_S
        drift = offset - low if abs(offset - low) >= abs(offset - high) else offset - high
        if abs(drift) <= self.drift_s:
            self.creeping = False
            return None
        if self.creeping:
            return None
        self.creeping = True
        return {"cause": "crept", "drift_s": round(drift, 3), "window_s": CREEP_WINDOW_S, "bound_s": self.drift_s}

    def _stepped(self, now: datetime, mono: float) -> dict | None:
        """The step since the previous reading, if it is beyond the bounds."""
        if self._last is None:
            return None
        last_wall, last_mono = self._last
        expected = last_wall + timedelta(seconds=mono - last_mono)
        if now < expected - self.max_backstep:
            return {"cause": "stepped_back", "step_s": round((expected - now).total_seconds(), 3)}
        if now > expected + self.max_forward_step and self._trusted is not None:
            return {"cause": "stepped_forward", "step_s": round((now - expected).total_seconds(), 3)}
        return None

    def _agrees_with_trusted(self, now: datetime, mono: float) -> bool:
        """The wall clock reads what the last trusted reading, carried forward, says it should."""
        if self._trusted is None:
            return False
        wall, at = self._trusted
        expected = wall + timedelta(seconds=mono - at)
        return expected - self.max_backstep <= now <= expected + self.max_forward_step

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
        """A trusted source agrees with the wall clock now: forget any step and the old high-water mark."""
        self._distrust = None
        self._step = None
        now, mono = self.clock.now(), self.clock.monotonic()
        self._high_water = now
        self._last = self._trusted = (now, mono)
        self._baseline = now.timestamp() - mono  # the creep counts again from here
        self._samples.clear()
        self.creeping = False
