"""Login throttling: after repeated failures for one name or from one address, wait.

``max_failures`` failures within ``window_s`` for a key (the account name, or the client's
address) lock that key out for ``lockout_s``: a login attempt is then answered 429 with the
seconds left, without checking the password. A success clears the name's failures.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable


class LoginThrottle:
    def __init__(self, *, max_failures: int = 5, window_s: float = 300.0, lockout_s: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic):
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self.monotonic = monotonic
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def retry_after(self, keys: Iterable[str]) -> float:
        """Seconds until any of ``keys`` may try again (0: now)."""
        now = self.monotonic()
        with self._lock:
            return max([self._locked_until.get(k, 0) - now for k in keys] + [0.0])

    def failed(self, keys: Iterable[str]) -> None:
        now = self.monotonic()
        with self._lock:
            for k in keys:
                times = self._failures.setdefault(k, deque())
                times.append(now)
                while times and now - times[0] > self.window_s:
                    times.popleft()
                if len(times) >= self.max_failures:
                    self._locked_until[k] = now + self.lockout_s
                    times.clear()
            if len(self._failures) > 10000:  # many addresses: forget the old ones
                for k in [k for k, t in self._failures.items() if not t or now - t[-1] > self.window_s]:
                    del self._failures[k]

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
