"""The crash-safety child: a real controller on simulated hardware that a parent SIGKILLs at random.

The child builds a :class:`~simulator.door_sim.SimulatedDoor` (real controller, real GPIO
and resident-ID drivers on their emulators, the MQTT link to a real broker) on an
existing database, reports the lock's state before and after start-up, then plays a
random door day until it is killed:

    python -m simulator.crash.door_child '{"database": ..., "journal": ..., "broker": ..., "seed": 7,
                                  "start": "2026-11-23T09:00:00+08:00", ...}'

Every lock release is written to ``journal`` (one JSON line, fsync'd) *after*
``lock.release()`` returned, with the function that released it and the last stored
seq at that moment, so the parent can check that each release has its stored event:
a grant stores ``access_granted`` and the exit button ``exit_button`` before the relay
moves, so the event is at ``last_seq``.

Lines on stdout: ``ready {"before": "secure", "after": "secure", "last_seq": N}`` once the
controller runs; with ``"flush": true`` the child plays nothing, waits until the
broker acknowledged the whole outbox and prints ``flushed {"last_seq": N}``.
``"die_after_release": "_on_exit_button"`` (or ``"_grant"``) makes the child kill
itself right after journaling a release by that function (a kill exactly in the
window between the relay moving and the next event being stored); ``"script":
["exit"]`` or ``["badge_in"]`` plays that first, then the random day, with
``"steps": N`` a bounded one.

The campaign that drives this child is :mod:`simulator.crash.campaign` (the test:
tests/system/test_crash_safety.py; the long mode: ``python -m bench.crash --kills 1000``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from firmware_py.core.clock import SimulatedClock
from firmware_py.core.inputs import BadgeRead, RemoteCommand
from simulator.crash import PEOPLE
from simulator.crash.link_child import link_config
from simulator.door_sim import SimulatedDoor
from simulator.id_card_device import IdCard, synthetic_id_number
from simulator.runner import read_people

BROKER_KEYS = ("broker", "ca_file", "username", "password_file", "cert_file", "key_file")


def child_config(args: dict):
    """The example config on ``args["database"]`` with [mqtt] pointing at the broker account in ``args``."""
    return link_config(Path(args["database"]), status_interval_s=5,
                       **{k: (Path(args[k]) if k.endswith("_file") else args[k]) for k in BROKER_KEYS})


class JournaledLock:
    """The lock driver with a side journal: each release is recorded (fsync) after the relay moved."""

    def __init__(self, lock, store, journal: Path, *, run: int, die_after: str | None = None):
        self._lock = lock
        self._store = store
        self._fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._run = run
        self._die_after = die_after

    def release(self) -> None:
        self._lock.release()
        via = sys._getframe(1).f_code.co_name
        line = json.dumps({"run": self._run, "via": via, "last_seq": self._store.last_seq()}) + "\n"
        os.write(self._fd, line.encode())
        os.fsync(self._fd)
        if via == self._die_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def secure(self) -> None:
        self._lock.secure()

    @property
    def is_released(self) -> bool:
        return self._lock.is_released


class Visitor:
    """Plays people at the door at random: roster members, strangers, forged cards, the exit button."""

    def __init__(self, door: SimulatedDoor, rng: random.Random):
        self.door = door
        self.rng = rng
        self.people = [p for p in read_people(PEOPLE).values()]

    def _someone(self) -> tuple[str, str, str]:
        """(name, id_number, badge uid) of a roster member or, now and then, a stranger."""
        rng = self.rng
        if rng.random() < 0.85:
            p = rng.choice(self.people)
            return p.name, p.id_number, (p.badges[0] if p.badges else "04000000")
        number = synthetic_id_number("430103", datetime(1980 + rng.randrange(20), 1 + rng.randrange(12), 1).date(),
                                     rng.randrange(1, 999))
        if rng.random() < 0.3:  # a forged or misread number: wrong check digit
            number = number[:17] + ("0" if number[17] != "0" else "1")
        return "测试客", number, f"{rng.getrandbits(32):08X}"

    def credential(self, side: str) -> None:
        name, number, uid = self._someone()
        if self.rng.random() < 0.5:
            self.door.present_id_card(IdCard(name=name, id_number=number), side)
        else:  # what the PC/SC badge driver posts (pcscd is one per machine; the driver has its own tests)
            self.door.inputs.put(BadgeRead(side, uid))
            self.door.pump()

    def passage(self) -> None:
        """A credential, the gate, the door: the common case, so that most runs release the lock."""
        side = "outside" if self.rng.random() < 0.6 else "inside"
        self.credential(side)
        if self.door.controller.state == "screening":
            self.door.walk_through(persons=2 if self.rng.random() < 0.05 else 1, metal=self.rng.random() < 0.1)
        if self.door.controller.state == "released":
            self.open()
            self.door.advance(timedelta(seconds=self.rng.uniform(1, 8)))
            self.close()

    def open(self) -> None:
        if not self.door.world.door_open:
            self.door.open_door()

    def close(self) -> None:
        if self.door.world.door_open:
            self.door.close_door()

    def command(self, action: str) -> None:
        """A supervisor command, as the MQTT link posts it."""
        self.door.inputs.put(RemoteCommand(f"crash-{self.rng.getrandbits(32):08x}", action, {}, "crash-test"))
        self.door.pump()

    def step(self) -> None:
        rng, door = self.rng, self.door
        if door.controller.lockdown and rng.random() < 0.3:
            self.command("release_lockdown")
        roll = rng.random()
        if roll < 0.45:
            self.close()
            self.passage()
        elif roll < 0.55:
            self.credential(rng.choice(("outside", "inside")))
        elif roll < 0.65:
            door.walk_through(persons=rng.choice((1, 1, 2)), metal=rng.random() < 0.2)
        elif roll < 0.75:
            if door.world.door_open:
                self.close()
            else:
                self.open()
        elif roll < 0.85:
            door.press_exit()
            if rng.random() < 0.7:
                self.open()
                self.close()
        elif roll < 0.86:
            self.command("lockdown")
        else:
            door.advance(timedelta(seconds=rng.choice((1, 5, 20, 60, 300))))


def _badge_in(visitor: Visitor) -> None:
    """P001 shows the badge outside and walks through the gate clean: a grant."""
    person = next(p for p in visitor.people if p.person_id == "P001")
    visitor.door.inputs.put(BadgeRead("outside", person.badges[0]))
    visitor.door.pump()
    visitor.door.walk_through()


def _die(visitor: Visitor) -> None:
    """SIGKILL this process where the script stands (a power cut): nothing runs at the end."""
    os.kill(os.getpid(), signal.SIGKILL)


SCRIPT = {"badge_in": _badge_in, "exit": lambda visitor: visitor.door.press_exit(),
          "open": lambda visitor: visitor.door.open_door(), "die": _die}


def main(args: dict) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    cfg = child_config(args)
    clock = SimulatedClock(datetime.fromisoformat(args["start"]))
    door = SimulatedDoor(cfg, clock=clock, badges=False)
    before = door.lock_released
    controller = door.controller
    controller.lock = JournaledLock(controller.lock, door.store, Path(args["journal"]), run=args.get("run", 0),
                                    die_after=args.get("die_after_release"))
    door.start()
    state = lambda released: "released" if released else "secure"  # noqa: E731
    print("ready", json.dumps({"before": state(before), "after": state(door.lock_released),
                               "last_seq": door.store.last_seq()}), flush=True)
    if args.get("flush"):
        link = door.service.link
        while not (link.connected and door.store.queued() == 0):
            door.pump()
            time.sleep(0.02)
        print("flushed", json.dumps({"last_seq": door.store.last_seq()}), flush=True)
        while True:  # the parent checks the subscriber, then ends this process
            door.pump()
            time.sleep(0.05)
    visitor = Visitor(door, random.Random(args["seed"]))
    for action in args.get("script", ()):
        SCRIPT[action](visitor)
    steps = args.get("steps")
    while steps is None or steps > 0:
        visitor.step()
        steps = None if steps is None else steps - 1
    door.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
