"""Repeated failed attempts at one reader (GB 50396-2007 5.1.5-1).

After ``max_failures`` consecutive denials at the same reader within
``window_s``, the reader is held for ``lockout_s``: reads there are refused
with ``reader_locked`` until the cool-down ends. A grant at that reader
resets its count. Times are the controller's monotonic seconds while it runs.

A restart must not lift a hold (cutting the power would be a way round it):
:meth:`ReaderGuard.kept` gives the holds and runs as wall-clock times for the
store, and :meth:`ReaderGuard.restore` takes them back at the next start,
checked against the clock guard: on a trusted clock a hold ends at its
deadline (never later than ``lockout_s`` from the start), on a clock that
cannot be trusted it lasts its whole ``lockout_s`` again from the start, and
a kept failure counts as if it had just happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class _Reader:
    failures: list[tuple[float, str]] = field(default_factory=list)  # (time, masked credential)
    locked_until: float | None = None


class ReaderGuard:
    def __init__(self, *, max_failures: int, window_s: float, lockout_s: float):
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self._readers: dict[str, _Reader] = {}

    def locked(self, reader: str, now: float) -> bool:
        r = self._readers.get(reader)
        if r is None or r.locked_until is None:
            return False
        if now >= r.locked_until:
            r.locked_until = None
            return False
        return True

    def denied(self, reader: str, masked: str, now: float) -> list[str] | None:
        """Record a denial; return the masked credentials of the run when it reaches the limit."""
        r = self._readers.setdefault(reader, _Reader())
        r.failures = [(t, m) for t, m in r.failures if now - t <= self.window_s] + [(now, masked)]
        if len(r.failures) < self.max_failures:
            return None
        credentials = [m for _, m in r.failures]
        r.failures = []
        r.locked_until = now + self.lockout_s
        return credentials

    def granted(self, reader: str) -> bool:
        """A grant at ``reader`` resets it; True when there was a run or a hold to forget."""
        return self._readers.pop(reader, None) is not None

    # ------------------------------------------------------------------ across a restart

    def kept(self, now: float, wall: datetime) -> dict:
        """The holds and runs as wall-clock times (``wall`` is the wall clock at monotonic ``now``), for the store."""
        def at(t: float) -> str:
            return (wall + timedelta(seconds=t - now)).isoformat(timespec="milliseconds")

        out = {}
        for name, r in self._readers.items():
            failures = [[at(t), m] for t, m in r.failures if now - t <= self.window_s]
            held = r.locked_until is not None and r.locked_until > now
            if failures or held:
                out[name] = {"failures": failures, "locked_until": at(r.locked_until) if held else None}
        return out

    def restore(self, kept: dict, now: float, wall: datetime, *, clock_trusted: bool) -> None:
        """Take back what :meth:`kept` gave before a restart; a malformed entry is skipped."""
        for name, entry in (kept or {}).items():
            try:
                r = _Reader()
                until = entry.get("locked_until")
                if until is not None:
                    remaining = self.lockout_s
                    if clock_trusted:
                        remaining = min(self.lockout_s, (datetime.fromisoformat(until) - wall).total_seconds())
                    if remaining > 0:
                        r.locked_until = now + remaining
                for t, masked in entry.get("failures") or []:
                    age = max(0.0, (wall - datetime.fromisoformat(t)).total_seconds()) if clock_trusted else 0.0
                    if age <= self.window_s:
                        r.failures.append((now - age, str(masked)))
            except (AttributeError, TypeError, ValueError):
                continue
            if r.failures or r.locked_until is not None:
                self._readers[name] = r
