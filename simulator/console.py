"""`accessctl-sim console`: drive the simulated door by hand.

Type ``help`` at the prompt. Each command acts on the emulated hardware (a
card on the reader, a walk through the gate, the door moving) and the real
drivers and controller respond; the console then shows the new events and
the state of the lock, the door and the lights.
"""

from __future__ import annotations

import cmd
import re
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from firmware_py.config.schema import load_config, with_overrides
from firmware_py.core.clock import SimulatedClock
from firmware_py.core.event_line import printable, render

from .door_sim import SimulatedDoor, SimulationError
from .id_card_device import IdCard
from .pcsc_stack import badge_stack
from .runner import prepare_database, read_people, simulation_broker, wait_for_link
from .scenario import Scenario

FLUSH_TIMEOUT_S = 10.0  # at quit, how long the door may take to publish what it still holds
_DURATION = re.compile(r"^(\d+)([smh])$")


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration like 30s, 10m or 2h")
    return timedelta(seconds=int(m[1]) * {"s": 1, "m": 60, "h": 3600}[m[2]])


class DoorConsole(cmd.Cmd):
    intro = ("Simulated door of the scan room. Type help for the commands, quit to leave.\n"
             "People on the roster: {people}")
    prompt = "door> "

    def __init__(self, door: SimulatedDoor, people: dict, *, stdout=None, colour: bool = False):
        super().__init__(stdout=stdout)
        self.door = door
        self.people = people
        self.colour = colour
        self.printed = 0
        self.intro = self.intro.format(people=printable(", ".join(f"{p.person_id} {p.name}" for p in people.values())))

    # ------------------------------------------------------------------ commands

    def do_card(self, arg):
        """card PERSON [inside]      present PERSON's resident ID card (outside = entry)"""
        person, side = self._person_side(arg)
        self.door.present_id_card(IdCard(name=person.name, id_number=person.id_number), side)

    def do_badge(self, arg):
        """badge PERSON|UID [inside]  present a staff badge"""
        words = shlex.split(arg)
        if not words:
            raise SimulationError("badge needs a person id or a badge UID")
        side = "inside" if "inside" in words[1:] else "outside"
        person = self.people.get(words[0])
        uid = person.badges[0] if person and person.badges else words[0]
        self.door.present_badge(uid, side)

    def do_keys(self, arg):
        """keys 2580# [inside]       type at the keypad reader (# ends a PIN, * starts again)"""
        from firmware_py.core.inputs import KeypadKeys

        words = shlex.split(arg)
        if not words or not set(words[0]) <= set("0123456789*#"):
            raise SimulationError("keys needs the keys to type: digits, * and #, e.g. keys 2580#")
        self.door.inputs.put(KeypadKeys("inside" if "inside" in words[1:] else "outside", words[0]))
        self.door.pump(until=KeypadKeys)

    def do_pin(self, arg):
        """pin PERSON 2580 [duress]  set PERSON's PIN (or duress PIN), as `accessctl roster pin set` does"""
        from firmware_py.errors import RosterError
        from firmware_py.storage import roster

        words = shlex.split(arg)
        if len(words) < 2 or words[0] not in self.people:
            raise SimulationError(f"pin PERSON DIGITS [duress]; people: {', '.join(self.people)}")
        duress = "duress" in words[2:]
        try:
            roster.set_pin(self.door.db, self.door.store, words[0], words[1], duress=duress)
        except RosterError as exc:
            raise SimulationError(str(exc)) from None
        print(f"  {'duress PIN' if duress else 'PIN'} of {words[0]} set", file=self.stdout)

    def do_walk(self, arg):
        """walk [metal] [N]          walk through the metal detector gate (N people at once)"""
        words = shlex.split(arg)
        persons = next((int(w) for w in words if w.isdigit()), 1)
        self.door.walk_through(persons=persons, metal="metal" in words)

    def do_open(self, arg):
        """open                      open the door"""
        self.door.open_door()

    def do_close(self, arg):
        """close                     close the door"""
        self.door.close_door()

    def do_exit(self, arg):
        """exit                      press the exit button inside"""
        self.door.press_exit()

    def do_wait(self, arg):
        """wait 30s|10m|2h           let simulated time pass (timers fire on the way)"""
        self.door.advance(parse_duration(arg.strip()))

    def do_lockdown(self, arg):
        """lockdown on|off           the supervisor's lockdown"""
        if arg.strip() not in ("on", "off"):
            raise SimulationError("lockdown on or lockdown off")
        self.door.controller.set_lockdown(arg.strip() == "on", "console")

    def do_status(self, arg):
        """status                    who is inside, faults, the outbox"""
        c = self.door.controller
        inside = ", ".join(f"{pid} {info['name']}" for pid, info in c.inside.items()) or "nobody"
        print(f"  inside: {printable(inside)}", file=self.stdout)
        print(f"  {printable(c.status())}", file=self.stdout)

    def do_quit(self, arg):
        """quit                      stop the controller and leave"""
        return True

    do_EOF = do_quit

    # ------------------------------------------------------------------ plumbing

    def _person_side(self, arg):
        words = shlex.split(arg)
        if not words or words[0] not in self.people:
            raise SimulationError(f"name a person on the roster: {', '.join(self.people)}")
        return self.people[words[0]], ("inside" if "inside" in words[1:] else "outside")

    def onecmd(self, line):
        try:
            return super().onecmd(line)
        except (SimulationError, ValueError) as exc:
            print(f"  !! {printable(exc)}", file=self.stdout)
            return False

    def preloop(self):
        if self.intro:
            print(self.intro, file=self.stdout)
            self.intro = None
        self.show()

    def postcmd(self, stop, line):
        self.show()
        return stop

    def emptyline(self):
        return False

    def default(self, line):
        print(f"  !! unknown command {printable(repr(line.split()[0]))}; type help", file=self.stdout)

    def show(self):
        for event in self.door.events(self.printed + 1):
            print("  " + render(event, colour=self.colour), file=self.stdout)
            self.printed = event["seq"]
        w, c = self.door.world, self.door.controller
        leds = self.door.hardware.indicators.state
        lights = " ".join(f"{k}={v}" for k, v in leds.items() if v != "off") or "all off"
        print(f"  [{self.door.clock.now():%Y-%m-%d %H:%M:%S}] lock {'RELEASED' if w.lock_released else 'locked'}, "
              f"door {'OPEN' if w.door_open else 'closed'}, {c.state}, inside {len(c.inside)}"
              f"{', LOCKDOWN' if c.lockdown else ''}; lights: {lights}", file=self.stdout)


def run_console(args) -> int:
    """The console on a fresh simulated door; with ``args.broker`` the door publishes there (its
    events, status and occupancy), so a station or monitor watching that broker archives them."""
    tz_cfg = load_config(args.config)
    if args.start:
        start = datetime.fromisoformat(args.start)
    else:
        start = datetime.now(tz_cfg.site.timezone).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="accessctl-console-") as tmp:
        cfg = with_overrides(tz_cfg, database=args.db or Path(tmp) / "events.db")
        cfg = replace(cfg, storage=replace(cfg.storage, secret=Path(tmp) / "device.key"))
        cfg = simulation_broker(cfg, args.broker)
        clock = SimulatedClock(start)
        roster = Path(args.roster)
        prepare_database(cfg, Scenario(Path("console"), "console", start, cfg.path, roster, ()), clock)
        with badge_stack() as badges:
            if not badges.available:
                print(f"note: badges are not simulated here: {badges.why}", file=sys.stderr)
            # On simulated time: a station's wall-clock beacons would only make the door report drift.
            with SimulatedDoor(cfg, clock=clock, badges=badges.available, broker_beacons=False) as door:
                if args.broker and not wait_for_link(door):
                    print(f"note: the door is not connected to {args.broker} yet; its events stay queued "
                          "and go out once it is", file=sys.stderr)
                console = DoorConsole(door, read_people(roster), colour=sys.stdout.isatty())
                if not sys.stdin.isatty():
                    console.prompt = ""
                console.cmdloop()
                if args.broker:
                    flush_outbox(door)
    return 0


def flush_outbox(door: SimulatedDoor, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
    """Before the door stops: give its link up to ``timeout_s`` (real time) to publish what is queued,
    and say what is left (it is lost with the console's temporary database)."""
    deadline = time.monotonic() + timeout_s
    while door.store.queued() and time.monotonic() < deadline:
        door.pump()
        time.sleep(0.05)
    if door.store.queued():
        print(f"note: {door.store.queued()} event(s) were not published within {timeout_s:.0f} s",
              file=sys.stderr)
