"""The real controller and the real drivers, running on emulated hardware.

:class:`SimulatedDoor` builds the whole door from a config: gpiozero's
``MockFactory`` pins with :class:`~simulator.gpio_world.GpioWorld` behind them,
a pseudo-terminal per resident ID reader with
:class:`~simulator.id_card_device.IdCardDevice` on the far end, and virtual
badges behind the real ``pcscd`` where that stack runs. The drivers post into
the service's input queue exactly as on the Pi; here the caller is the event
loop: each action waits until the input it causes has been handled, so a
scenario runs deterministically while the clock is simulated.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from gpiozero.pins.mock import MockFactory

from drivers.badge_reader import BadgeReader
from drivers.door_hardware import build_door_hardware
from drivers.resident_id_reader import ResidentIdReader
from firmware_py.config.schema import Config
from firmware_py.core import inputs as ev
from firmware_py.core.clock import SimulatedClock
from firmware_py.service.bootstrap import build_service
from firmware_py.service.loop import Service

from .gpio_world import GpioWorld
from .id_card_device import IdCard, IdCardDevice
from .pcsc_stack import BadgeStack, active_pcscd, wait_until_empty
from .virtual_badge import VirtualBadge

log = logging.getLogger(__name__)

VPCD_READERS = {"outside": "Virtual PCD 00 00", "inside": "Virtual PCD 00 01"}
INPUT_TIMEOUT_S = 5.0


class SimulationError(Exception):
    """An action did not have its effect on the controller in time."""


def simulation_config(cfg: Config) -> Config:
    """The config with the emulators' quick timings: fast polling, no debounce, a short gate window."""
    hw = cfg.hardware
    hw = replace(
        hw,
        door_contact=replace(hw.door_contact, bounce_s=0),
        exit_button=replace(hw.exit_button, bounce_s=0),
        gate=replace(hw.gate, passage_window_s=0.1),
        id_readers=tuple(replace(r, poll_interval_s=0.05, response_timeout_s=0.5) for r in hw.id_readers),
        badge_readers=tuple(replace(r, reader_name=VPCD_READERS[r.side]) for r in hw.badge_readers),
    )
    return replace(cfg, hardware=hw)


class SimulatedDoor:
    """One door on simulated hardware.

    :param cfg: the door's config (ports and reader names are replaced by the emulators').
    :param clock: the controller's clock; a :class:`SimulatedClock` lets :meth:`advance` jump.
    :param badges: run the badge readers through pcscd + vpcd: a :class:`BadgeStack`, or True
        for this process's own pcscd (:func:`~simulator.pcsc_stack.badge_stack`; without one,
        a pcscd with Debian's vpcd configuration must be running).
    :param broker_beacons: hand the supervisor's time beacons arriving over MQTT to the
        controller. A door on simulated time (a scenario) must not take them: a monitor or
        station beside it publishes its wall clock, which the door would rightly report as
        ``clock_drift`` and then deny everyone ``clock_unsynchronised``. Such beacons are
        dropped (said once in the log); :meth:`time_beacon` gives the door a beacon on its
        own simulated time.
    """

    def __init__(self, cfg: Config, *, clock, badges: bool | BadgeStack = True, broker_beacons: bool = True):
        self.cfg = simulation_config(cfg)
        self.clock = clock
        self.broker_beacons = broker_beacons
        self.broker_beacons_dropped = 0
        self.factory = MockFactory()
        self.world = GpioWorld(self.cfg.hardware, self.factory)  # before the drivers: see GpioWorld
        self.id_devices: dict[str, IdCardDevice] = {}
        if isinstance(badges, BadgeStack):
            card_ports, badges = badges.card_ports, badges.available
        else:
            own = active_pcscd()
            card_ports = dict(own.card_ports) if own is not None else BadgeStack(True).card_ports
        self.card_ports = {side: card_ports[reader] for side, reader in VPCD_READERS.items()}
        self.badge_sides = {r.side for r in self.cfg.hardware.badge_readers} if badges else set()
        self.hardware = None
        self.service: Service = build_service(self.cfg, clock=clock, hardware=self._build_hardware,
                                              pin_checks_on_loop=True)  # pump() steps the loop: no race
        self.controller = self.service.controller
        self.db = self.service.db  # the door's SQLite database, and its event store, for checks and tests
        self.store = self.service.event_log.store
        self.inputs: queue.Queue = self.service.inputs
        self.handled: list = []  # every input handled, for tests and the console

    def _build_hardware(self, post):
        closers: list[Callable[[], None]] = []
        hw = build_door_hardware(self.cfg.hardware, post, pin_factory=self.factory)
        self.hardware = hw
        closers.append(hw.close)
        for r in self.cfg.hardware.id_readers:
            device = IdCardDevice(baudrate=r.baudrate, time_scale=0.05)
            self.id_devices[r.side] = device
            reader = ResidentIdReader(device.port, side=r.side, post=post, baudrate=r.baudrate,
                                      poll_interval=r.poll_interval_s, response_timeout=r.response_timeout_s)
            reader.start()
            closers += [device.close, reader.close]
        for r in self.cfg.hardware.badge_readers:
            if r.side not in self.badge_sides:
                continue
            reader = BadgeReader(r.reader_name, side=r.side, post=post, poll_interval=0.05)
            reader.start()
            if not reader.wait_ready(5):
                log.warning("badge reader %r did not come up: is pcscd with vpcd running?", r.reader_name)
            closers.append(reader.close)
        return hw.lock, hw.indicators, closers

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        self.service.start()

    def close(self) -> None:
        self.service.shutdown()

    def __enter__(self) -> SimulatedDoor:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the loop, run by the caller

    def pump(self, until: type | tuple[type, ...] | None = None, timeout: float = INPUT_TIMEOUT_S) -> list:
        """Handle queued inputs; with ``until``, wait (real time) for an input of that type first."""
        handled = []
        deadline = time.monotonic() + timeout
        waiting = until is not None
        while True:
            try:
                item = self.inputs.get(timeout=max(0.0, deadline - time.monotonic()) if waiting else 0)
            except queue.Empty:
                if waiting:
                    raise SimulationError(f"no {_names(until)} reached the controller within {timeout} s") from None
                break
            if isinstance(item, ev.TimeBeacon) and not self.broker_beacons:
                self._drop_broker_beacon(item)
                continue
            self.controller.handle(item)
            self.handled.append(item)
            handled.append(item)
            if waiting and isinstance(item, until):
                waiting = False
        self.controller.tick()
        self.service.event_log.write_due_anchor()
        return handled

    def advance(self, delta: timedelta) -> None:
        """Move the simulated clock forward, firing each timer at its own time on the way."""
        if not isinstance(self.clock, SimulatedClock):
            raise SimulationError("time can only be advanced on a simulated clock")
        self.pump()
        advance_through_timers(self.controller, self.clock, delta.total_seconds(), self.pump)

    # ------------------------------------------------------------------ what people do at the door

    def present_id_card(self, card: IdCard, side: str = "outside") -> None:
        device = self.id_devices.get(side)
        if device is None:
            raise SimulationError(f"no resident ID reader on the {side} side in this config")
        done = device.tap(card)
        if not done.wait(INPUT_TIMEOUT_S):
            raise SimulationError(f"the ID reader on the {side} side did not read the card")
        self.pump(until=ev.IdCardRead)
        # The card is gone once read; wait for two more polls so the driver has seen the empty
        # reader (the second poll is only sent after the first answer was handled). Otherwise a
        # card presented at once would count as the same presentation and not be reported.
        polls = device.requests["FIND_CARD"]
        device.wait_for_requests("FIND_CARD", polls + 2, INPUT_TIMEOUT_S)

    def present_badge(self, uid: str, side: str = "outside") -> None:
        if side not in self.badge_sides:
            raise SimulationError(f"no badge reader on the {side} side (or pcscd with vpcd is not running)")
        # pcscd notices cards only at its 400 ms presence poll: a badge put down before it saw
        # the previous one leave would look like the same card still lying there.
        wait_until_empty(VPCD_READERS[side])
        with VirtualBadge(uid, port=self.card_ports[side]) as badge:
            if not badge.wait_uid_request(INPUT_TIMEOUT_S):
                raise SimulationError(f"the badge reader on the {side} side did not read the badge")
            self.pump(until=ev.BadgeRead)
        wait_until_empty(VPCD_READERS[side])

    def walk_through(self, persons: int = 1, metal: bool = False) -> None:
        self.world.walk_through(persons=persons, metal=metal, pulse_s=0.005)
        self.pump(until=ev.GatePassage)

    def open_door(self) -> None:
        self.world.open_door()
        self.pump(until=ev.DoorOpened)

    def close_door(self) -> None:
        self.world.close_door()
        self.pump(until=ev.DoorClosed)

    def press_exit(self) -> None:
        self.world.press_exit(hold_s=0.005)
        self.pump(until=ev.ExitButtonPressed)

    def _drop_broker_beacon(self, beacon: ev.TimeBeacon) -> None:
        self.broker_beacons_dropped += 1
        if self.broker_beacons_dropped == 1:
            log.warning("the simulated door lives on simulated time: time beacons from the broker (%s, from a "
                        "monitor or station on wall-clock time) are not given to it, or it would report clock "
                        "drift and deny everyone; a scenario tests the beacon with do = \"time_beacon\"",
                        beacon.ts.isoformat(timespec="seconds"))

    def time_beacon(self, offset_s: float = 0.0) -> None:
        """The supervisor's time beacon on the door's own (simulated) time, ``offset_s`` ahead of it."""
        beacon = ev.TimeBeacon(self.clock.now() + timedelta(seconds=offset_s))
        self.pump()
        self.controller.handle(beacon)
        self.handled.append(beacon)
        self.pump()

    def set_wall_clock(self, wall: datetime) -> None:
        """Step the wall clock only (an NTP step, or a Pi that booted without its time)."""
        self.clock.set_wall(wall)
        self.pump()

    # ------------------------------------------------------------------ what can be seen

    @property
    def lock_released(self) -> bool:
        return self.world.lock_released

    def events(self, from_seq: int = 1) -> list[dict]:
        return list(self.store.events(from_seq))


def _names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in types)


def advance_through_timers(controller, clock, seconds: float, pump) -> None:
    """Move a simulated ``clock`` by ``seconds``, stopping at each timer and calendar check on the
    way so that each fires at its own time; ``pump`` hands queued inputs to the controller."""
    target = clock.monotonic() + seconds
    while True:
        steps = [target]
        wake = controller.next_wakeup()
        if wake is not None:
            steps.append(wake)
        check = controller.next_calendar_check()
        if check is not None:
            steps.append(clock.monotonic() + max(0.0, (check - clock.now()).total_seconds()))
        step = min(steps)
        if step > clock.monotonic():
            clock.advance(step - clock.monotonic())
        pump()
        if clock.monotonic() >= target:
            break
