"""How long has the supervisor been out of reach? (GB 50396-2007 5.1.5-5)

An outage longer than the bound is a ``link_down`` alarm, stored while the
door is offline, and ``link_up`` with the outage's length when the link is
back; both reach the supervisor from the outbox once it is. A short outage
is only logged. The door works on regardless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from firmware_py.core.clock import Clock
from firmware_py.core.timers import Timers

log = logging.getLogger(__name__)


class LinkWatch:
    def __init__(self, *, clock: Clock, timers: Timers, bound_s: float, emit: Callable[..., dict]):
        self.clock = clock
        self.timers = timers
        self.bound_s = bound_s
        self.emit = emit
        self.down_since: datetime | None = None
        self.alarmed = False

    def changed(self, up: bool, detail: str = "") -> None:
        log.info("MQTT link %s %s", "up" if up else "down", detail)
        if not up:
            if self.down_since is None:
                self.down_since = self.clock.now()
                self.timers.start("link_down", self.bound_s, self._too_long)
            return
        self.timers.cancel("link_down")
        if self.alarmed and self.down_since is not None:
            outage = (self.clock.now() - self.down_since).total_seconds()
            self.emit("system", "link_up", detail={"down_since": self.down_since.isoformat(timespec="seconds"),
                                                   "outage_s": round(outage, 1)})
        self.down_since, self.alarmed = None, False

    def _too_long(self) -> None:
        self.alarmed = True
        self.emit("alarm", "link_down", detail={"down_since": self.down_since.isoformat(timespec="seconds"),
                                                "bound_s": self.bound_s})
