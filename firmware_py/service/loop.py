"""The door's event loop: one thread that hands inputs and timers to the controller.

Drivers run in their own threads and only post input events into ``inputs``
(a ``queue.Queue``); this loop is the one thread that touches controller
state. It sleeps until the next input or timer, at most a second, so calendar
checks and watchdog pings keep their pace.

The loop never ends on an error: storage trouble (a database locked by another
process, a full disk, a read-only file) is reported once in plain words and the
door keeps deciding, fail-secure; events the database refused are stored as
soon as it allows. It ends on SIGTERM or SIGINT, and records why it stopped.
:mod:`firmware_py.service.bootstrap` builds it.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlite_utils

from firmware_py.config.schema import Config
from firmware_py.core.controller import DoorController
from firmware_py.errors import StoreError
from firmware_py.storage import local_commands
from firmware_py.storage.door_log import SqliteEventLog
from firmware_py.storage.inspection import set_busy_timeout

log = logging.getLogger(__name__)

MAX_SLEEP_S = 1.0
# At shutdown, how long the last attempt to store what the database refused may wait.
FINAL_STORE_WAIT_S = 2.0


@dataclass
class Service:
    """Everything a running door needs, and the order to stop it in."""

    cfg: Config
    controller: DoorController
    inputs: queue.Queue
    db: sqlite_utils.Database  # the door's database (local commands are queued there)
    event_log: SqliteEventLog
    closers: list[Callable[[], None]] = field(default_factory=list)  # run in reverse on stop
    stop_requested: threading.Event = field(default_factory=threading.Event)
    shut_down: bool = False
    link: object | None = None  # the MqttLink, when [mqtt] is enabled
    stop_reason: str | None = None  # "SIGTERM", "SIGINT", "fatal: …": recorded in controller_stopped
    _last_trouble: str | None = None

    def run(self, notifier=None) -> None:
        """Handle inputs and timers until :meth:`request_stop`; then stop cleanly."""
        clock = self.controller.clock
        self.start()
        if notifier is not None:
            notifier.ready()
        log.info("door %s/%s ready", self.cfg.site.site, self.cfg.site.door)
        next_local_poll = clock.monotonic()
        try:
            while not self.stop_requested.is_set():
                if clock.monotonic() >= next_local_poll:
                    next_local_poll = clock.monotonic() + local_commands.POLL_INTERVAL_S
                    self._guarded(self._take_local_commands)
                wake = self.controller.next_wakeup()
                timeout = MAX_SLEEP_S if wake is None else min(MAX_SLEEP_S, max(0.0, wake - clock.monotonic()))
                try:
                    event = self.inputs.get(timeout=timeout)
                except queue.Empty:
                    event = None
                if event is not None:
                    self._guarded(self.controller.handle, event)
                self._guarded(self.controller.store_backlog)
                self._guarded(self.controller.tick)
                self._guarded(self.event_log.write_due_anchor)
                if notifier is not None:
                    # Pinged from the loop itself: a hung loop stops pinging and systemd restarts it.
                    notifier.watchdog()
        except BaseException as exc:
            self.stop_reason = self.stop_reason or f"fatal: {type(exc).__name__}: {exc}"[:200]
            raise
        finally:
            if notifier is not None:
                notifier.stopping()
            self.shutdown()

    def _take_local_commands(self) -> None:
        for command in local_commands.take(self.db):
            self._guarded(self.controller.handle, command)

    def _guarded(self, step: Callable, *args) -> None:
        """One step of the loop; an error is reported (once while it repeats) and the loop goes on."""
        try:
            step(*args)
        except StoreError as exc:
            # Already a plain message (locked, disk full, read-only): no traceback.
            self._report(f"{exc}; the door keeps running (credentials are refused until they can be recorded)")
        except Exception as exc:
            what = f"{getattr(step, '__name__', step)}: {type(exc).__name__}: {exc}"
            if what != self._last_trouble:
                log.exception("the door's loop met an error and goes on (%s)", what)
            self._last_trouble = what

    def _report(self, message: str) -> None:
        if message != self._last_trouble:
            log.error("%s", message)
        self._last_trouble = message

    def start(self) -> None:
        self.controller.start()
        if self.link is not None:
            self.link.start()

    def request_stop(self, signum: int | None = None, _frame=None) -> None:
        if self.stop_reason is None:
            self.stop_reason = signal.Signals(signum).name if signum else "requested"
        self.stop_requested.set()

    def shutdown(self) -> None:
        """Stop the controller and close every device; a second call does nothing."""
        if self.shut_down:
            return
        self.shut_down = True
        try:
            try:
                self.controller.stop(self.stop_reason or "shutdown")
            finally:
                self._store_what_is_left()
        finally:
            for close in reversed(self.closers):
                try:
                    close()
                except Exception:
                    log.exception("closing a device failed")
            self.closers.clear()


    def _store_what_is_left(self) -> None:
        """A last, longer try to store what the database refused; what still cannot be goes to the journal."""
        backlog = self.event_log.backlog
        if not backlog:
            return
        try:
            set_busy_timeout(self.db, FINAL_STORE_WAIT_S)
            self.controller.store_backlog()
        except Exception as exc:  # the journal below keeps them
            log.debug("last try to store the backlog: %s", exc)
        for item in backlog:
            # The events carry masked numbers only (checked when they were made): safe for the journal.
            log.error("event not stored (the database refused it): %s", json.dumps(item, ensure_ascii=False))
        backlog.clear()
