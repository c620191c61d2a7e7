"""The composition root: config, storage, drivers and the core wired into one :class:`Service`.

The one place of the door service that imports the drivers (``drivers/``) and
chooses the storage adapters behind the core's ports; the loop itself is
:mod:`firmware_py.service.loop`. One service per database: the second is
refused (:func:`~firmware_py.storage.db.hold_database`).
"""

from __future__ import annotations

import logging
import queue
import signal

from firmware_py.config.schema import Config
from firmware_py.core.clock import Clock, SystemClock
from firmware_py.core.controller import DoorController
from firmware_py.core.inputs import LinkChanged
from firmware_py.link.roster_keys import door_keys
from firmware_py.service.keypads import IndicatorsWithKeypads, build_keypad_readers
from firmware_py.service.loop import Service
from firmware_py.service.pin_checks import PinWorker
from firmware_py.storage import roster
from firmware_py.storage.db import hold_database
from firmware_py.storage.door_database import open_store
from firmware_py.storage.door_log import SqliteEventLog
from firmware_py.storage.eventstore import ChainAnchor
from firmware_py.storage.secret import load_or_create_secret

log = logging.getLogger(__name__)

# How long the loop's writes wait for another connection's write lock: free egress never waits longer.
STORE_WAIT_S = 0.05


def build_service(cfg: Config, *, clock: Clock | None = None, hardware=None,
                  pin_checks_on_loop: bool = False) -> Service:
    """Build the service on real hardware, or on ``hardware`` (a callable ``post -> (lock, indicators, closers)``).

    PINs are checked on a worker thread (:mod:`firmware_py.service.pin_checks`); ``pin_checks_on_loop``
    judges them at once on the loop instead, for a simulation that steps the loop itself and must not race.
    """
    clock = clock or SystemClock(cfg.site.timezone)
    inputs: queue.Queue = queue.Queue()
    release = hold_database(cfg.storage.database)
    try:
        roster_keys = door_keys(cfg)  # the station's roster keys, checked before anything starts
        store = open_store(cfg, clock=clock, busy_timeout_s=STORE_WAIT_S)
        db = store.db
        # ID cards are matched under the site roster key when the station signs the roster, as its rows are hashed
        secret = roster_keys.site_key if roster_keys else load_or_create_secret(
            cfg.storage.secret, roster_hashes=roster.id_hash_count(db))
        lock, indicators, closers = (hardware or real_hardware(cfg))(inputs.put)
    except BaseException:
        release()
        raise
    event_log = SqliteEventLog(store, anchor=ChainAnchor.beside(cfg.storage.secret))
    pin_checker = None if pin_checks_on_loop else PinWorker(inputs.put)
    if pin_checker is not None:
        closers.append(pin_checker.close)
    controller = DoorController(cfg, roster=roster.SqliteRoster(db, store), event_log=event_log, lock=lock,
                                indicators=indicators, clock=clock, secret=secret, pin_checker=pin_checker)
    service = Service(cfg, controller, inputs, db, event_log, closers)
    if cfg.mqtt.enabled:
        from firmware_py.link.door_link import MqttLink

        service.link = MqttLink(cfg, post=inputs.put, clock=clock, roster_keys=roster_keys)
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
            keypads = build_keypad_readers(cfg.hardware.keypad_readers, post)
            closers.extend(k.close for k in keypads)
        except Exception:
            for close in reversed(closers):
                close()
            raise
        indicators = IndicatorsWithKeypads(hw.indicators, keypads) if keypads else hw.indicators
        return hw.lock, indicators, closers

    return build


def install_signal_handlers(service: Service) -> None:
    signal.signal(signal.SIGTERM, service.request_stop)
    signal.signal(signal.SIGINT, service.request_stop)
