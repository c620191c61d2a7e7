"""One door of the simulated fleet: the real controller, event store, outbox and MQTT link.

The door is built by the service's composition root (:func:`firmware_py.service.bootstrap.build_service`)
with a lock relay and indicators that only remember their state (the ports of
:mod:`firmware_py.core.ports`), so no pins or serial devices are needed. What people do at the door
is posted into the service's input queue, exactly as the drivers post it on the Pi, and handled
by whichever fleet worker thread owns the door; the door's clock is simulated and jumps between
actions (timers fire at their own times on the way), so a working day fits in a short run.
"""

from __future__ import annotations

import logging
import queue
import random
import sqlite3
from dataclasses import replace
from datetime import datetime, time, timedelta
from pathlib import Path

from firmware_py.config.schema import Config, RosterKeysConfig
from firmware_py.core.clock import SimulatedClock
from firmware_py.core.controller import RELEASED, SCREENING
from firmware_py.core.inputs import DoorClosed, DoorOpened, ExitButtonPressed, GatePassage, IdCardRead, TimeBeacon
from firmware_py.service.bootstrap import build_service
from firmware_py.storage import roster as roster_store

from .door_sim import advance_through_timers
from .fleet_day import Roster, choose_action

log = logging.getLogger(__name__)

SITE = "fleet"
STATION_PUBLIC_KEY = "roster-signing.pub"  # the file names of docs/commissioning.md, "Roster keys"
SITE_ROSTER_KEY = "site-roster.key"
LUNCH = (time(12, 0), time(14, 0))  # between the office windows of config/venue.example.toml
RESUME_AFTER_S = 60.0  # a door started again on a kept database resumes this long after its last event


class RelayLock:
    """The lock relay as the controller sees it (:class:`firmware_py.core.ports.Lock`): released or secure."""

    def __init__(self):
        self._released = False

    def release(self) -> None:
        self._released = True

    def secure(self) -> None:
        self._released = False

    @property
    def is_released(self) -> bool:
        return self._released


class DarkIndicators:
    """Buzzer and LEDs (:class:`firmware_py.core.ports.Indicators`) that nobody watches in a fleet run."""

    def show(self, pattern: str, side: str = "both") -> None:
        pass


def door_name(index: int) -> str:
    return f"fleet-{index:02d}"


def door_config(base: Config, index: int, *, db_dir: Path, broker: str, protocol: int, username: str = "",
                password_file: Path | None = None, roster_keys: Path | None = None) -> Config:
    """The config of door ``index`` of the fleet: its own database and key in ``db_dir``, its broker.

    A plain ``mqtt://`` broker is reached without TLS (the lab); ``username`` and ``password_file``
    log in where the broker asks for an account (the RabbitMQ lab refuses anonymous clients).
    ``roster_keys``: a directory holding the station's public key and the site roster key
    (``roster-signing.pub``, ``site-roster.key``): the door's ``[roster]``, so it takes the
    station's signed roster bundles for site ``fleet``.
    """
    name = door_name(index)
    tls = broker.startswith("mqtts://")
    mqtt = replace(base.mqtt, enabled=True, broker=broker, protocol=protocol, client_id=f"accessctl-{SITE}-{name}",
                   username=username, password_file=password_file if username else None,
                   ca_file=base.mqtt.ca_file if tls else None, cert_file=base.mqtt.cert_file if tls else None,
                   key_file=base.mqtt.key_file if tls else None)
    roster = base.roster
    if roster_keys is not None:
        roster = RosterKeysConfig(roster_keys / STATION_PUBLIC_KEY, roster_keys / SITE_ROSTER_KEY)
    return replace(base, site=replace(base.site, site=SITE, door=name),
                   storage=replace(base.storage, database=db_dir / f"{name}.db", secret=db_dir / f"{name}.key"),
                   mqtt=mqtt, roster=roster)


def resume_time(database: Path, start: datetime) -> datetime:
    """Where a door's clock starts: ``start``, or just after the last event of a kept database."""
    if not database.exists():
        return start
    conn = sqlite3.connect(database)
    try:
        row = conn.execute("SELECT ts FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    except sqlite3.Error:
        row = None
    finally:
        conn.close()
    if row is None:
        return start
    return max(start, datetime.fromisoformat(row[0]) + timedelta(seconds=RESUME_AFTER_S))


class FleetDoor:
    """One simulated door; every method but :attr:`queued` runs on the worker thread that owns it.

    :param cfg: the door's config (:func:`door_config`).
    :param start: the simulated start of its day.
    :param roster: imported into a new database as a technician would.
    :param rng: the door's own random source (its day).
    :param counter: an object whose ``events`` attribute is incremented for every event stored.
    :param trace: called with ``(door, seq)`` right after each event is stored (latency measurement).
    """

    def __init__(self, cfg: Config, *, start: datetime, roster: Roster, rng: random.Random, counter,
                 trace=None):
        self.cfg = cfg
        self.name = cfg.site.door
        self.roster = roster
        self.people = {p.person_id: p for p in roster.staff}
        self.rng = rng
        self.counter = counter
        self.clock = SimulatedClock(resume_time(cfg.storage.database, start))
        self.service = build_service(cfg, clock=self.clock, hardware=lambda post: (RelayLock(), DarkIndicators(), []))
        self.controller = self.service.controller
        self.link = self.service.link
        self.inputs: queue.Queue = self.service.inputs
        self.beacons_dropped = 0
        self.queued = 0  # the outbox's size when the owner last looked
        self.controller.listeners.append(self._stored)
        self._trace = trace
        self.db = self.service.db  # the door's database and event store (the controller sees only ports)
        self.store = self.service.event_log.store
        if not roster_store.list_persons(self.db):
            roster_store.import_csv(self.db, self.store, roster.path,
                                    secret=self.controller.secret, schedule_groups=set(cfg.calendar.schedules),
                                    tz=cfg.site.timezone)
            self.counter.events += 1  # roster_changed, stored before the listener could see it
            if trace:
                trace(self.name, self.store.last_seq())

    def _stored(self, event: dict) -> None:
        self.counter.events += 1
        if self._trace:
            self._trace(self.name, event["seq"])

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        self.service.start()

    def stop(self) -> None:
        """The clean stop of a door: ``controller_stopped`` is stored and queued for the broker."""
        self.controller.stop()
        self.pump()

    def close(self) -> None:
        """Close the link and devices (after :meth:`stop` and, normally, an empty outbox)."""
        for close in reversed(self.service.closers):
            try:
                close()
            except Exception:
                log.exception("%s: closing failed", self.name)
        self.service.closers.clear()
        self.service.shut_down = True
        self.db.conn.close()

    def refresh(self) -> None:
        self.queued = self.store.queued()

    # ------------------------------------------------------------------ the loop, run by the owner

    def pump(self) -> None:
        """Handle every queued input (link changes, commands such as replay requests), run timers."""
        while True:
            try:
                item = self.inputs.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, TimeBeacon):
                # The door lives on simulated time: the station's wall-clock beacon would read as
                # clock drift and lock everyone out (see simulator.door_sim.SimulatedDoor).
                self.beacons_dropped += 1
                continue
            self.controller.handle(item)
        self.controller.tick()

    def post(self, event) -> None:
        self.inputs.put(event)
        self.pump()

    def advance(self, seconds: float) -> None:
        """Move the simulated clock, firing each timer at its own time on the way."""
        self.pump()
        advance_through_timers(self.controller, self.clock, seconds, self.pump)

    # ------------------------------------------------------------------ what people do

    def play(self, gap_s: float) -> str:
        """Play one action of the day's mix, then let about ``gap_s`` of simulated time pass."""
        action = choose_action(self.rng)
        getattr(self, f"_{action}")()
        self.advance(gap_s * self.rng.uniform(0.5, 1.5))
        now = self.clock.now()
        if LUNCH[0] <= now.time() < LUNCH[1]:  # the office closes for lunch: the day goes on at 14:00
            self.advance((datetime.combine(now.date(), LUNCH[1], now.tzinfo) - now).total_seconds())
        return action

    def _outside(self):
        out = [p for p in self.roster.staff if p.person_id not in self.controller.inside]
        return self.rng.choice(out) if out else None

    def _card(self, side: str, number: str, name: str = "") -> None:
        self.post(IdCardRead(side, number, name=name))

    def _through(self, persons: int = 1, metal: bool = False) -> None:
        """After a card: walk through the gate, open the door, walk in, close it."""
        if self.controller.state != SCREENING:
            return
        self.advance(self.rng.uniform(2, 6))
        self.post(GatePassage(persons, metal))
        if self.controller.state != RELEASED:
            return
        self.advance(self.rng.uniform(1, 3))
        self.post(DoorOpened())
        self.advance(self.rng.uniform(2, 5))
        self.post(DoorClosed())

    def _visit(self) -> None:
        inside = sorted(self.controller.inside)
        person = self._outside()
        if inside and (person is None or self.rng.random() < 0.5):
            person, side = self.people.get(self.rng.choice(inside)), "inside"
            if person is None:  # someone the roster no longer has: let them out by the button
                return self._exit_button()
        else:
            side = "outside"
        self._card(side, person.id_number, person.name)
        self._through()

    def _exit_button(self) -> None:
        self.post(ExitButtonPressed())
        self.advance(self.rng.uniform(0.5, 2))
        self.post(DoorOpened())
        self.advance(self.rng.uniform(2, 5))
        self.post(DoorClosed())

    def _held_open(self) -> None:
        self.post(ExitButtonPressed())
        self.advance(1)
        self.post(DoorOpened())
        self.advance(self.controller.policy.door_held_open_s + self.rng.uniform(5, 30))
        self.post(DoorClosed())

    def _door_forced(self) -> None:
        self.post(DoorOpened())
        self.advance(self.rng.uniform(3, 8))
        self.post(DoorClosed())

    def _unknown_card(self) -> None:
        self._card("outside", self.rng.choice(self.roster.strangers))

    def _invalid_card(self) -> None:
        self._card("outside", self.rng.choice(self.roster.invalid))

    def _expired(self) -> None:
        self._card("outside", self.roster.expired.id_number, self.roster.expired.name)

    def _untrained(self) -> None:
        self._card("outside", self.roster.untrained.id_number, self.roster.untrained.name)

    def _metal(self) -> None:
        self._screened(persons=1, metal=True)

    def _tailgating(self) -> None:
        self._screened(persons=2, metal=False)

    def _screened(self, *, persons: int, metal: bool) -> None:
        person = self._outside()
        if person is None:
            return self._visit()
        self._card("outside", person.id_number, person.name)
        self._through(persons, metal)
