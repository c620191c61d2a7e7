"""Running a scenario: the real controller and drivers on simulated hardware, a simulated clock.

The clock jumps between steps (timers fire at their own times on the way),
each action waits until the controller has handled what it caused, and an
``expect`` step checks the events stored since the previous ``expect``.
"""

from __future__ import annotations

import csv
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from firmware_py.config.schema import Config, load_config, with_overrides
from firmware_py.core.clock import SimulatedClock
from firmware_py.core.event_line import render
from firmware_py.core.inputs import LinkChanged, RemoteCommand
from firmware_py.errors import RosterError
from firmware_py.storage import roster
from firmware_py.storage.door_database import open_store
from firmware_py.storage.secret import load_or_create_secret

from .door_sim import SimulatedDoor, SimulationError
from .id_card_device import IdCard
from .scenario import Scenario, Step, parse_offset

LINK_UP_TIMEOUT_S = 10.0


@dataclass
class RunResult:
    scenario: Scenario
    failures: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class RosterPerson:
    """What the simulated world knows of a roster row: the card and badges the person carries."""

    person_id: str
    name: str
    id_number: str
    badges: tuple[str, ...]


def read_people(path: Path | None) -> dict[str, RosterPerson]:
    if path is None:
        return {}
    people = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            badges = tuple(b for b in (row.get("badge_uids") or "").replace(";", " ").split() if b)
            people[row["person_id"]] = RosterPerson(row["person_id"], row["name"], row.get("id_number") or "", badges)
    return people


def prepare_database(cfg: Config, scenario: Scenario, clock: SimulatedClock) -> None:
    """Import the scenario's roster into the door's database, as a technician would."""
    if scenario.roster is None:
        return
    store = open_store(cfg, clock=clock)
    db = store.db
    roster.import_csv(db, store, scenario.roster, secret=load_or_create_secret(cfg.storage.secret),
                      schedule_groups=set(cfg.calendar.schedules), tz=cfg.site.timezone)
    db.conn.close()


def simulation_broker(cfg: Config, broker: str | None, *, keep_mqtt: bool = False) -> Config:
    """The door's MQTT in a simulation.

    ``broker`` (the command line's ``--broker``) replaces the file's broker, by the rule every
    ``--broker`` follows (:func:`firmware_py.config.schema.broker_override`: a plain ``mqtt://``
    broker is reached anonymously without TLS). Without ``broker``, MQTT stays as the file says
    when ``keep_mqtt`` (a config given with ``--config``) and is off otherwise: a scenario's own
    config names the venue's broker, which a simulation must not reach.
    """
    from dataclasses import replace

    if broker is not None:
        cfg = with_overrides(cfg, broker=broker)
    elif not keep_mqtt:
        cfg = replace(cfg, mqtt=replace(cfg.mqtt, enabled=False))
    return cfg


def wait_for_link(door: SimulatedDoor, timeout_s: float = LINK_UP_TIMEOUT_S) -> bool:
    """After ``door.start()``: wait (real time) for its MQTT link to come up; False when the door has no
    link or the link is not up within ``timeout_s``."""
    if door.service.link is None:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(isinstance(i, LinkChanged) and i.up for i in door.pump()):
            return True
        time.sleep(0.01)
    return False


class ScenarioRunner:
    """Runs one scenario; see :func:`simulation_broker` for ``broker`` and ``keep_mqtt``."""

    def __init__(self, scenario: Scenario, *, workdir: Path | None = None, db: Path | None = None,
                 broker: str | None = None, keep_mqtt: bool = False, badges=True,
                 out: Callable[[str], None] = print, colour: bool = False):
        self.scenario = scenario
        self.out = out
        self.colour = colour
        self.badges = badges
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="accessctl-sim-")
            workdir = Path(self._tmp.name)
        cfg = load_config(scenario.config)
        cfg = with_overrides(cfg, database=db or workdir / "events.db")
        from dataclasses import replace

        # The device secret lives beside the database it belongs to: a kept database (--db)
        # keeps its secret, or its roster's ID hashes would stop matching on the next run.
        secret = db.with_name(db.name + ".key") if db else workdir / "device.key"
        cfg = replace(cfg, storage=replace(cfg.storage, secret=secret))
        self.cfg = simulation_broker(cfg, broker, keep_mqtt=keep_mqtt)
        self.clock = SimulatedClock(scenario.start)
        self.people = read_people(scenario.roster)
        self.door: SimulatedDoor | None = None
        self.printed_seq = 0
        self.mark_seq = 0

    def run(self) -> RunResult:
        result = RunResult(self.scenario)
        self.out(f"scenario: {self.scenario.name} ({self.scenario.path})")
        prepare_database(self.cfg, self.scenario, self.clock)
        self._start_door()
        self.mark_seq = 0
        try:
            for step in self.scenario.steps:
                try:
                    self._run_step(step, result)
                except SimulationError as exc:
                    result.failures.append(f"{self.scenario.path}: {step.describe()}: {exc}")
                    self.out(f"  !! {exc}")
                    break
                self._print_new()
        finally:
            self.door.close()
            self._print_new()
            result.events = self.door.events()
            self.door.db.conn.close()
            if self._tmp is not None:
                self._tmp.cleanup()
        verdict = "ok" if result.ok else f"FAILED ({len(result.failures)} expectation(s))"
        self.out(f"scenario {self.scenario.name}: {verdict}")
        return result

    # ------------------------------------------------------------------ steps

    def _run_step(self, step: Step, result: RunResult) -> None:
        if step.at is not None:
            delta = step.at - self.clock.now()
            if delta > timedelta(0):
                self.door.advance(delta)
        if step.expect is not None:
            self._print_new()
            self._check(step, result)
            return
        self.out(f"  -- {step.describe()}")
        getattr(self, f"_do_{step.do}")(**step.params)

    def _do_present_id_card(self, person, id_number, name, side):
        if person is not None:
            p = self._person(person)
            id_number, name = p.id_number, p.name
        self.door.present_id_card(IdCard(name=name, id_number=id_number), side)

    def _do_present_badge(self, person, uid, side):
        if person is not None:
            p = self._person(person)
            if not p.badges:
                raise SimulationError(f"{person} has no badge in the roster")
            uid = p.badges[0]
        self.door.present_badge(uid, side)

    def _do_walk_through(self, metal, persons):
        self.door.walk_through(persons=persons, metal=metal)

    def _do_open_door(self):
        self.door.open_door()

    def _do_close_door(self):
        self.door.close_door()

    def _do_press_exit(self):
        self.door.press_exit()

    def _do_advance(self, by):
        self.door.advance(parse_offset(by))

    def _do_restart_controller(self):
        self.door.close()
        self.door.db.conn.close()
        self._start_door()

    def _start_door(self) -> None:
        """Start the door; with a broker, let its link come up first (up to LINK_UP_TIMEOUT_S of real time).

        The link connects in real time, which the simulated clock does not see: the first step's jump
        of the clock would otherwise outlast ``link_down_after_s`` and raise a ``link_down`` that
        the scenario never played. A broker that does not answer in time is left to the scenario.
        """
        self.door = SimulatedDoor(self.cfg, clock=self.clock, badges=self.badges, broker_beacons=False)
        self.door.start()
        wait_for_link(self.door)

    def _do_broker_down(self):
        self._link().suspend()
        self.door.pump(until=LinkChanged, timeout=10)

    def _do_broker_up(self):
        self._link().resume()
        self.door.pump(until=LinkChanged, timeout=20)

    def _link(self):
        if self.door.service.link is None:
            raise SimulationError("broker steps need the MQTT link: run with --broker mqtt[s]://host:port")
        return self.door.service.link

    def _do_command(self, action, **args):
        args = {k: v for k, v in args.items() if v is not None}
        # A fresh id each time: the door runs an id at most once, and a scenario may be run
        # again on the same database (--db).
        command_id = f"scenario-{uuid.uuid4().hex[:12]}"
        self.door.inputs.put(RemoteCommand(command_id, action, args, "scenario"))
        self.door.pump(until=RemoteCommand)

    def _do_set_clock(self, to):
        from datetime import datetime

        self.door.set_wall_clock(datetime.fromisoformat(to))

    def _do_time_beacon(self, offset_s):
        self.door.time_beacon(offset_s)

    def _do_tamper(self, device, active):
        self.door.world.set_tamper(device, active)
        from firmware_py.core.inputs import TamperChanged

        self.door.pump(until=TamperChanged)

    def _do_reader_silent(self, side, silent):
        from firmware_py.core.inputs import DeviceFault, DeviceRecovered

        device = self.door.id_devices[side]
        if silent:
            device.go_silent()
            self.door.pump(until=DeviceFault, timeout=10)
        else:
            device.resume()
            self.door.pump(until=DeviceRecovered, timeout=10)

    def _do_set_pin(self, person, pin, duress):
        self._person(person)
        roster.set_pin(self.door.db, self.door.store, person, pin, duress=duress)

    def _do_enter_pin(self, pin, side, end):
        """The keys reach the controller as the keypad reader's driver posts them."""
        from firmware_py.core.inputs import KeypadKeys

        self.door.inputs.put(KeypadKeys(side, pin + ("#" if end else "")))
        self.door.pump(until=KeypadKeys)

    def _do_roster_bundle(self, roster, schedules, holidays, working_days, adjusted_day_schedule):
        """The station signs the rows and hours; the door's own receiver checks and applies them."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from firmware_py.link.roster_bundle import calendar_header
        from firmware_py.link.roster_keys import DoorKeys
        from firmware_py.link.roster_receiver import RosterReceiver
        from firmware_py.station.roster.bundle import make_bundle, read_roster
        from firmware_py.storage.roster_bundle import applied_version

        path = Path(roster) if roster else self.scenario.roster
        if path is None:
            raise SimulationError("roster_bundle needs a roster: give roster = FILE.csv or the scenario's roster")
        configured, calendar = calendar_header(self.cfg.calendar)
        schedules = schedules if schedules is not None else configured
        calendar.update({k: v for k, v in (("holidays", holidays), ("working_days", working_days),
                                            ("adjusted_day_schedule", adjusted_day_schedule)) if v is not None})
        site_key = self.door.controller.secret  # the key the door matches ID numbers with
        now = self.clock.now()
        try:
            rows = read_roster(path, site_key=site_key, schedule_groups=schedules, today=now.date())
        except RosterError as exc:
            raise SimulationError(str(exc)) from None
        key = Ed25519PrivateKey.generate()
        bundle = make_bundle(rows, site=self.cfg.site.site, version=applied_version(self.door.db) + 1, made_at=now,
                             valid_for=timedelta(days=30), signing_key=key, site_key=site_key,
                             schedules=schedules, calendar=calendar)
        receiver = RosterReceiver(self.cfg, DoorKeys(key.public_key(), site_key), clock=self.clock)
        try:
            for message in (*bundle.chunks, bundle.manifest):
                receiver.handle(message)
        finally:
            receiver.close()
        self.people.update(read_people(path))

    def _person(self, person_id: str):
        try:
            return self.people[person_id]
        except KeyError:
            raise SimulationError(f"{person_id} is not in the scenario's roster {self.scenario.roster}") from None

    # ------------------------------------------------------------------ expectations and output

    def _check(self, step: Step, result: RunResult) -> None:
        since = self.door.events(self.mark_seq + 1)
        position = 0
        for wanted in step.expect:
            for i in range(position, len(since)):
                if _matches(since[i], wanted):
                    position = i + 1
                    break
            else:
                happened = "\n      ".join(render(e) for e in since) or "(no events)"
                message = (f"{self.scenario.path}: step {step.number}: expected {_describe(wanted)}"
                           f" (in order) but since the previous expect these happened:\n      {happened}")
                result.failures.append(message)
                self.out(f"  !! {message}")
                break
        else:
            self.out(f"  ok step {step.number}: " + "; ".join(_describe(w) for w in step.expect))
        self.mark_seq = self.door.store.last_seq()

    def _print_new(self) -> None:
        if self.door is None:
            return
        for event in self.door.events(self.printed_seq + 1):
            self.out("  " + render(event, colour=self.colour))
            self.printed_seq = event["seq"]


def _matches(event: dict, wanted: dict) -> bool:
    for key, value in wanted.items():
        if key == "person":
            if (event.get("person") or {}).get("person_id") != value:
                return False
        elif event.get(key) != value:
            return False
    return True


def _describe(wanted: dict) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in wanted.items()) + "}"
