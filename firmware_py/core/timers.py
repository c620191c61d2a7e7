"""Named one-shot timers on the controller's injected clock.

The event loop asks :meth:`Timers.next_due` how long it may sleep and calls
:meth:`Timers.run_due` when it wakes; the simulator advances its clock to each
due time in turn, so a timer fires with the time stamp it would have had.
Starting a timer under a name that is running replaces it.
"""

from __future__ import annotations

from collections.abc import Callable

from firmware_py.core.clock import Clock


class Timers:
    def __init__(self, clock: Clock):
        self.clock = clock
        self._due: dict[str, tuple[float, Callable[[], None]]] = {}

    def start(self, name: str, seconds: float, callback: Callable[[], None]) -> None:
        self._due[name] = (self.clock.monotonic() + seconds, callback)

    def cancel(self, name: str) -> None:
        self._due.pop(name, None)

    def cancel_all(self) -> None:
        self._due.clear()

    def running(self, name: str) -> bool:
        return name in self._due

    def next_due(self) -> float | None:
        """The monotonic time of the earliest timer, or None."""
        return min((t for t, _ in self._due.values()), default=None)

    def run_due(self) -> int:
        """Run every timer whose time has come, earliest first; return how many ran."""
        ran = 0
        while True:
            now = self.clock.monotonic()
            due = [(t, name) for name, (t, _) in self._due.items() if t <= now]
            if not due:
                return ran
            _, name = min(due)
            _, callback = self._due.pop(name)
            callback()
            ran += 1
