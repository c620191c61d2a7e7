"""The controller service: wires config, storage, drivers and the core into one event loop.

This is the imperative shell. Drivers run in their own threads and only post
input events into ``inputs`` (a ``queue.Queue``); this loop is the one thread
that touches controller state. It sleeps until the next input or timer, at
most a second, so calendar checks and watchdog pings keep their pace.

The loop never ends on an error: storage trouble (a database locked by another
process, a full disk, a read-only file) is reported once in plain words and the
door keeps deciding, fail-secure; events the database refused are stored as
soon as it allows. It ends on SIGTERM or SIGINT, and records why it stopped.
One service per database: the second is refused (:func:`~firmware_py.storage.db.hold_database`).
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
from firmware_py.core.clock import Clock, SystemClock
from firmware_py.core.controller import DoorController
from firmware_py.core.inputs import LinkChanged
from firmware_py.errors import StoreError
from firmware_py.storage import local_commands, roster
from firmware_py.storage.db import hold_database, open_db
from firmware_py.storage.door_log import SqliteEventLog
from firmware_py.storage.eventstore import ChainAnchor, EventStore
from firmware_py.storage.secret import load_or_create_secret

log = logging.getLogger(__name__)

MAX_SLEEP_S = 1.0
# How long the loop's writes wait for another connection's write lock: free egress never waits longer.
STORE_WAIT_S = 0.05
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
            self.db.conn.execute(f"PRAGMA busy_timeout = {int(FINAL_STORE_WAIT_S * 1000)}")
            self.controller.store_backlog()
        except Exception as exc:  # the journal below keeps them
            log.debug("last try to store the backlog: %s", exc)
        for item in backlog:
            # The events carry masked numbers only (checked when they were made): safe for the journal.
            log.error("event not stored (the database refused it): %s", json.dumps(item, ensure_ascii=False))
        backlog.clear()


def build_service(cfg: Config, *, clock: Clock | None = None, hardware=None) -> Service:
    """Build the service on real hardware, or on ``hardware`` (a callable ``post -> (lock, indicators, closers)``)."""
    clock = clock or SystemClock(cfg.site.timezone)
    inputs: queue.Queue = queue.Queue()
    release = hold_database(cfg.storage.database)
    try:
        db = open_db(cfg.storage.database, busy_timeout_s=STORE_WAIT_S)
        store = EventStore(db, site=cfg.site.site, door=cfg.site.door, clock=clock)
        secret = load_or_create_secret(cfg.storage.secret, roster_hashes=roster.id_hash_count(db))
        lock, indicators, closers = (hardware or real_hardware(cfg))(inputs.put)
    except BaseException:
        release()
        raise
    event_log = SqliteEventLog(store, anchor=ChainAnchor.beside(cfg.storage.secret))
    controller = DoorController(cfg, roster=roster.SqliteRoster(db, store), event_log=event_log, lock=lock,
                                indicators=indicators, clock=clock, secret=secret)
    service = Service(cfg, controller, inputs, db, event_log, closers)
    if cfg.mqtt.enabled:
        from firmware_py.link.door_link import MqttLink

        service.link = MqttLink(cfg, post=inputs.put, clock=clock)
        connect_link(controller, service.link)
        # Until the broker answers the link counts as down, so a broker that is never
        # reached raises link_down like one that went away.
        inputs.put(LinkChanged(False, "not connected yet"))
        closers.insert(0, service.link.close)  # closed last: controller_stopped goes out first
    closers.insert(0, release)  # the database is free for another service only when all is closed
    return service


def connect_link(controller: DoorController, link) -> None:
    """Carry the controller's events, status and command answers to the MQTT link."""
    controller.listeners.append(lambda event: link.notify())
    controller.status_listeners.append(lambda: (link.publish_status(controller.status()),
                                                link.publish_occupancy(controller.occupancy())))
    controller.command_results.append(link.command_result)
    controller.replay_requests.append(link.replay)


def real_hardware(cfg: Config):
    """The Pi's own devices: gpiozero's default pin factory, serial ports, PC/SC."""

    def build(post):
        from drivers.badge_reader import BadgeReader
        from drivers.door_hardware import build_door_hardware
        from drivers.resident_id_reader import ResidentIdReader

        hw = build_door_hardware(cfg.hardware, post)
        closers: list = [hw.close]
        try:
            for r in cfg.hardware.id_readers:
                reader = ResidentIdReader(r.port, side=r.side, post=post, baudrate=r.baudrate,
                                          poll_interval=r.poll_interval_s, response_timeout=r.response_timeout_s)
                reader.start()
                closers.append(reader.close)
            for r in cfg.hardware.badge_readers:
                badge = BadgeReader(r.reader_name, side=r.side, post=post)
                badge.start()
                closers.append(badge.close)
        except Exception:
            for close in reversed(closers):
                close()
            raise
        return hw.lock, hw.indicators, closers

    return build


def install_signal_handlers(service: Service) -> None:
    signal.signal(signal.SIGTERM, service.request_stop)
    signal.signal(signal.SIGINT, service.request_stop)
