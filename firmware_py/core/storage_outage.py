"""The door going on while its database refuses writes (locked, disk full, read-only).

:class:`StorageOutage` stores each event through the
:class:`~firmware_py.core.ports.EventLog` port. When the database refuses, an
event the door acts on only once stored (a grant) raises
:class:`~firmware_py.errors.StoreError`, so the lock stays secured; any other
is kept in memory with its own time and state (the log's backlog) and stored,
in order, as soon as the database allows. The outage is a ``hardware_fault``
of device ``storage``: raised when it begins, and ``recovered`` (with
``fault_s`` and the grants it ``refused``) once the backlog is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from firmware_py.core.clock import Clock
from firmware_py.core.ports import EventLog
from firmware_py.errors import StoreError

log = logging.getLogger(__name__)

DEVICE = "storage"


class StorageOutage:
    """Records events for one door, and its database's outages.

    :param event_log: the door's log.
    :param clock: for how long the outage lasted.
    :param faults: the door's devices in fault (``storage`` is added and removed here).
    :param announce: called with the events just stored.
    :param status_changed: called when the fault begins or ends.
    """

    def __init__(self, event_log: EventLog, *, clock: Clock, faults: dict[str, str],
                 announce: Callable[[list[dict]], None], status_changed: Callable[[], None]):
        self.event_log = event_log
        self.clock = clock
        self.faults = faults
        self.announce = announce
        self.status_changed = status_changed
        self._trouble: dict | None = None  # since when the database refuses, and the grants it cost

    def record(self, category: str, type_: str, fields: dict, *, before_acting: bool) -> dict:
        """Store the event (after the backlog) and return it; deferred when refused, unless ``before_acting``."""
        try:
            stored = self.event_log.record(category, type_, **fields)
        except StoreError as exc:
            self._failed(exc, before_acting)
            if before_acting:
                raise
            return self.event_log.defer(category, type_, **fields)
        self.announce(stored)
        self._recovered()
        return stored[-1]

    def store_backlog(self) -> None:
        """Store the events kept in memory while the database refused them (the service loop retries)."""
        if not self.event_log.backlog:
            return
        try:
            stored = self.event_log.store_backlog()
        except StoreError:
            return  # still refused; reported when it first failed
        self.announce(stored)
        self._recovered()

    def _failed(self, exc: StoreError, before_acting: bool) -> None:
        if DEVICE not in self.faults:
            self.faults[DEVICE] = str(exc)
            self._trouble = {"since": self.clock.monotonic(), "refused": 0}
            log.error("storage: %s. The door keeps running: the exit button releases, credentials are "
                      "refused until they can be recorded, and the events are kept until they can be stored", exc)
            self.event_log.defer("alarm", "hardware_fault",
                                 detail={"device": DEVICE, "state": "fault", "fault": str(exc)})
            self.status_changed()
        if before_acting and self._trouble is not None:
            self._trouble["refused"] += 1

    def _recovered(self) -> None:
        if DEVICE not in self.faults or self.event_log.backlog:
            return
        trouble = self._trouble or {"since": self.clock.monotonic(), "refused": 0}
        detail = {"device": DEVICE, "state": "recovered",
                  "fault_s": round(self.clock.monotonic() - trouble["since"], 3), "refused": trouble["refused"]}
        try:
            stored = self.event_log.record("alarm", "hardware_fault", detail=detail)
        except StoreError:
            return  # refused again: the fault stands, the next write tries again
        self.faults.pop(DEVICE)
        self._trouble = None
        log.info("storage: the database takes writes again")
        self.announce(stored)
        self.status_changed()
