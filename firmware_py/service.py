"""The controller service: wires config, storage, drivers and the core into one event loop.

This is the imperative shell. Drivers run in their own threads and only post
input events into ``inputs`` (a ``queue.Queue``); this loop is the one thread
that touches controller state. It sleeps until the next input or timer, at
most a second, so calendar checks and watchdog pings keep their pace.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from dataclasses import dataclass, field
from typing import Callable

from . import local_commands
from .clock import Clock, SystemClock
from .config import Config
from .controller import DoorController
from .db import open_db
from .eventstore import EventStore
from .idnumber import load_or_create_secret
from .inputs import LinkChanged

log = logging.getLogger(__name__)

MAX_SLEEP_S = 1.0


@dataclass
class Service:
    """Everything a running door needs, and the order to stop it in."""

    cfg: Config
    controller: DoorController
    inputs: queue.Queue
    closers: list[Callable[[], None]] = field(default_factory=list)  # run in reverse on stop
    stop_requested: threading.Event = field(default_factory=threading.Event)
    shut_down: bool = False
    link: object | None = None  # the MqttLink, when [mqtt] is enabled

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
                    for command in local_commands.take(self.controller.db):
                        self.controller.handle(command)
                    next_local_poll = clock.monotonic() + local_commands.POLL_INTERVAL_S
                wake = self.controller.next_wakeup()
                timeout = MAX_SLEEP_S if wake is None else min(MAX_SLEEP_S, max(0.0, wake - clock.monotonic()))
                try:
                    event = self.inputs.get(timeout=timeout)
                except queue.Empty:
                    event = None
                if event is not None:
                    self.controller.handle(event)
                self.controller.tick()
                if notifier is not None:
                    # Pinged from the loop itself: a hung loop stops pinging and systemd restarts it.
                    notifier.watchdog()
        finally:
            if notifier is not None:
                notifier.stopping()
            self.shutdown()

    def start(self) -> None:
        self.controller.start()
        if self.link is not None:
            self.link.start()

    def request_stop(self, *_args) -> None:
        self.stop_requested.set()

    def shutdown(self) -> None:
        """Stop the controller and close every device; a second call does nothing."""
        if self.shut_down:
            return
        self.shut_down = True
        try:
            self.controller.stop()
        finally:
            for close in reversed(self.closers):
                try:
                    close()
                except Exception:
                    log.exception("closing a device failed")
            self.closers.clear()


def build_service(cfg: Config, *, clock: Clock | None = None, hardware=None) -> Service:
    """Build the service on real hardware, or on ``hardware`` (a callable ``post -> (lock, indicators, closers)``)."""
    clock = clock or SystemClock(cfg.site.timezone)
    inputs: queue.Queue = queue.Queue()
    db = open_db(cfg.storage.database)
    store = EventStore(db, site=cfg.site.site, door=cfg.site.door, clock=clock)
    secret = load_or_create_secret(cfg.storage.secret)
    lock, indicators, closers = (hardware or real_hardware(cfg))(inputs.put)
    controller = DoorController(cfg, store, lock=lock, indicators=indicators, clock=clock, secret=secret)
    service = Service(cfg, controller, inputs, closers)
    if cfg.mqtt.enabled:
        from .mqtt_link import MqttLink

        service.link = MqttLink(cfg, post=inputs.put, clock=clock)
        connect_link(controller, service.link)
        # Until the broker answers the link counts as down, so a broker that is never
        # reached raises link_down like one that went away.
        inputs.put(LinkChanged(False, "not connected yet"))
        closers.insert(0, service.link.close)  # closed last: controller_stopped goes out first
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
