"""Repeated failed attempts at one reader (GB 50396-2007 5.1.5-1).

After ``max_failures`` consecutive denials at the same reader within
``window_s``, the reader is held for ``lockout_s``: reads there are refused
with ``reader_locked`` until the cool-down ends. A grant at that reader
resets its count. Times are the controller's monotonic seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

    def granted(self, reader: str) -> None:
        self._readers.pop(reader, None)
