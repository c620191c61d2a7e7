"""Login throttling: after repeated attempts for one name or from one address, wait.

Every login attempt counts for its keys (the account name, and the client's address) when it
starts, before the password is checked, so simultaneous guesses cannot all pass the check:
``max_failures`` attempts within ``window_s`` lock a key out for ``lockout_s``, and a locked key
is answered 429 with the seconds left, without checking the password. A success takes its own
attempt back (and clears the name's). At most ``max_checks`` passwords are checked at once
(scrypt takes 32 MiB and ~0.1 s each): a login beyond that is answered 503 at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

MAX_KEYS = 10_000  # remembered names and addresses; beyond that the stale ones are forgotten


class LoginThrottle:
    def __init__(self, *, max_failures: int = 5, window_s: float = 300.0, lockout_s: float = 60.0,
                 max_checks: int = 4, monotonic: Callable[[], float] = time.monotonic):
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self.monotonic = monotonic
        self._attempts: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._checks = threading.BoundedSemaphore(max_checks)

    def begin(self, keys: Iterable[str]) -> float:
        """Count an attempt for each of ``keys`` and return 0, or return the seconds until one of them
        may try again (nothing counted)."""
        keys = list(keys)
        now = self.monotonic()
        with self._lock:
            wait = max([self._locked_until.get(k, 0) - now for k in keys] + [0.0])
            if wait > 0:
                return wait
            for k in keys:
                times = self._attempts.setdefault(k, deque())
                times.append(now)
                while times and now - times[0] > self.window_s:
                    times.popleft()
                if len(times) >= self.max_failures:
                    self._locked_until[k] = now + self.lockout_s
                    times.clear()
            self._forget_stale(now)
            return 0.0

    def succeeded(self, name_key: str, address_key: str) -> None:
        """The password was right: the name starts afresh, the address gets its attempt back."""
        with self._lock:
            self._attempts.pop(name_key, None)
            self._locked_until.pop(name_key, None)
            times = self._attempts.get(address_key)
            if times:
                times.pop()

    @contextmanager
    def password_check(self) -> Iterator[bool]:
        """A slot for checking one password: yields False (nothing to release) when all are taken."""
        if not self._checks.acquire(blocking=False):
            yield False
            return
        try:
            yield True
        finally:
            self._checks.release()

    def _forget_stale(self, now: float) -> None:
        if len(self._attempts) + len(self._locked_until) <= MAX_KEYS:
            return
        for k in [k for k, t in self._attempts.items() if not t or now - t[-1] > self.window_s]:
            del self._attempts[k]
        for k in [k for k, until in self._locked_until.items() if until <= now]:
            del self._locked_until[k]
