"""The physical world behind the door's GPIO pins, on gpiozero's ``MockFactory``.

The world owns the wires, not the drivers: it moves the door, presses the exit
button, walks people through the gate and opens enclosures by driving the input
pins from below (``MockPin.drive_high`` / ``drive_low``), and it reads the
output pins (lock relay, LEDs, buzzer) as the hardware on them would. It never
calls a driver.

Every input is a contact between its pin and a rail: to GND when the pin uses
its pull-up, to 3V3 when it uses its pull-down. A closed contact holds the pin
at that rail; an open one lets the pull resistor decide. So the world needs the
same ``pull_up`` settings as the drivers, which it takes from the config.

Order of construction: build the world *before* the drivers. It then wires its
pins so that a closed contact keeps holding the line while a driver sets up its
pull resistor, and the drivers start on a closed door and a quiet gate without
posting anything. Built after the drivers, the world still works, but settling
its contacts shows up as events (a ``DoorClosed`` for the door it closes).
"""

from __future__ import annotations

import logging
import time

from gpiozero.exc import PinFixedPull, PinInvalidPull
from gpiozero.pins.mock import MockFactory, MockPin

from drivers.door_hardware import reader_tamper_pins
from firmware_py.config.schema import HardwareConfig

log = logging.getLogger(__name__)


class WiredPin(MockPin):
    """A mock input pin with a contact wired to it.

    While ``wired_level`` is set, the contact holds the line at that level:
    configuring the pin (function, pull resistor) does not move it, as on a
    real board where a closed switch to GND beats the internal pull-up.
    """

    def __init__(self, factory, info):
        self.wired_level: bool | None = None
        super().__init__(factory, info)

    def _set_pull(self, value):
        if self.wired_level is None:
            return super()._set_pull(value)
        if self.function != "input":
            raise PinFixedPull(f"cannot set pull on non-input pin {self!r}")
        if self.info.pull and value != self.info.pull:
            raise PinFixedPull(f"{self!r} has a fixed pull resistor")
        if value not in ("floating", "up", "down"):
            raise PinInvalidPull("pull must be floating, up, or down")
        self._pull = value


class _Contact:
    """One dry contact between a pin and the rail opposite its pull resistor."""

    def __init__(self, factory: MockFactory, pin: int, pull_up: bool, closed: bool):
        self.number = pin
        self.pull_up = pull_up
        self.pin = factory.pin(pin, pin_class=WiredPin)
        self.closed = closed

    def apply(self) -> None:
        # Closed: the rail it is wired to (GND for a pull-up). Open: the pull resistor's level.
        level = self.pull_up != self.closed
        if isinstance(self.pin, WiredPin):
            self.pin.wired_level = level
        if self.pin.function != "input":
            log.warning("GPIO%s is an output; the world cannot drive it", self.number)
            return
        if level:
            self.pin.drive_high()
        else:
            self.pin.drive_low()

    def set(self, closed: bool) -> None:
        self.closed = closed
        self.apply()


class GpioWorld:
    """The door, the exit button, the gate and the enclosures, wired to mock pins.

    :param hw: the ``[hardware]`` config (pins, pulls, contact types, lock type).
    :param factory: the ``MockFactory`` the drivers use.

    At rest the door is closed, the button released, the gate quiet (its NC
    alarm contact closed) and every enclosure shut.
    """

    def __init__(self, hw: HardwareConfig, factory: MockFactory):
        self.hw = hw
        self.factory = factory
        self._door = _Contact(factory, hw.door_contact.pin, hw.door_contact.pull_up, closed=True)
        self._button = _Contact(factory, hw.exit_button.pin, hw.exit_button.pull_up, closed=False)
        gate = hw.gate
        self._alarm_nc = gate.alarm_contact == "normally_closed"
        self._alarm = _Contact(factory, gate.alarm_pin, gate.pull_up, closed=self._alarm_nc)
        self._alarm_on = False
        self._alarm_wire_cut = False
        self._passage = (_Contact(factory, gate.passage_pin, gate.pull_up, closed=False)
                         if gate.passage_pin is not None else None)
        self._tampers: dict[str, _Contact] = {}
        if gate.tamper_pin is not None:
            self._tampers["gate"] = _Contact(factory, gate.tamper_pin, gate.pull_up, closed=True)
        for name, pin in reader_tamper_pins(hw):
            self._tampers[name] = _Contact(factory, pin, True, closed=True)  # reader tampers use pull-ups
        self.settle()

    def settle(self) -> None:
        """Drive every input to the world's present state (again)."""
        for contact in self._contacts():
            contact.apply()

    def _contacts(self) -> list[_Contact]:
        contacts = [self._door, self._button, self._alarm, *self._tampers.values()]
        return contacts + ([self._passage] if self._passage else [])

    # ------------------------------------------------------------------ the door

    def open_door(self) -> None:
        """Open the door: the magnet leaves the reed switch."""
        log.debug("world: door opened")
        self._door.set(False)

    def close_door(self) -> None:
        log.debug("world: door closed")
        self._door.set(True)

    @property
    def door_open(self) -> bool:
        return not self._door.closed

    def press_exit(self, hold_s: float = 0.05) -> None:
        """Press the exit button for ``hold_s`` seconds and let go."""
        log.debug("world: exit button pressed")
        self._button.set(True)
        if hold_s:
            time.sleep(hold_s)
        self._button.set(False)

    # ------------------------------------------------------------------ the gate

    def walk_through(self, persons: int = 1, metal: bool = False, *, pulse_s: float = 0.05,
                     interval_s: float | None = None, alarm_s: float | None = None) -> None:
        """Walk ``persons`` people through the gate, one transit pulse each.

        With ``metal`` the gate's alarm relay trips as the first person passes
        and drops out ``alarm_s`` later. People follow each other every
        ``interval_s`` seconds (by default a third of the gate's passage window,
        at most 0.3 s: close enough to be one walk-through). Returns when the
        last pulse has ended; the driver reports the walk-through
        ``passage_window_s`` after that.
        """
        if persons < 0:
            raise ValueError("persons cannot be negative")
        window = self.hw.gate.passage_window_s
        interval_s = min(0.3, window / 3) if interval_s is None else interval_s
        alarm_s = min(0.5, window / 3) if alarm_s is None else alarm_s
        pulse_s = min(pulse_s, interval_s) if persons > 1 else pulse_s
        log.debug("world: %d person(s) walk through the gate%s", persons, " with metal" if metal else "")
        alarm_until = None
        if metal:
            self._set_alarm(True)
            alarm_until = time.monotonic() + alarm_s
        for i in range(persons):
            if i:
                time.sleep(max(0.0, interval_s - pulse_s))
            if self._passage is not None:
                self._passage.set(True)
                time.sleep(pulse_s)
                self._passage.set(False)
        if alarm_until is not None:
            time.sleep(max(0.0, alarm_until - time.monotonic()))
            self._set_alarm(False)

    def _set_alarm(self, on: bool) -> None:
        self._alarm_on = on
        self._apply_alarm()

    def _apply_alarm(self) -> None:
        # NC: the contact opens on alarm. NO: it closes on alarm. A cut wire is an open contact.
        closed = (not self._alarm_on) if self._alarm_nc else self._alarm_on
        self._alarm.set(closed and not self._alarm_wire_cut)

    def cut_alarm_wire(self, cut: bool = True) -> None:
        """Cut (or mend) the cable from the gate's alarm relay: the contact reads open."""
        log.debug("world: gate alarm wire %s", "cut" if cut else "mended")
        self._alarm_wire_cut = cut
        self._apply_alarm()

    @property
    def gate_alarm(self) -> bool:
        """Whether the gate's alarm relay is tripped (the wire aside)."""
        return self._alarm_on

    # ------------------------------------------------------------------ tamper contacts

    def set_tamper(self, pin_or_device: int | str, active: bool) -> None:
        """Open (``active=True``) or shut an enclosure, by its device name or GPIO number.

        Names: ``"gate"``, ``"id_reader.outside"``, ``"badge_reader.inside"``, ...
        """
        contact = self._tamper_contact(pin_or_device)
        log.debug("world: tamper %s %s", pin_or_device, "open" if active else "shut")
        contact.set(not active)

    def _tamper_contact(self, pin_or_device: int | str) -> _Contact:
        if isinstance(pin_or_device, str):
            try:
                return self._tampers[pin_or_device]
            except KeyError:
                raise KeyError(f"no tamper contact named {pin_or_device!r}; "
                               f"configured: {', '.join(self._tampers) or 'none'}") from None
        for contact in self._tampers.values():
            if contact.number == pin_or_device:
                return contact
        raise KeyError(f"GPIO{pin_or_device} is not a configured tamper contact")

    @property
    def tampers(self) -> dict[str, bool]:
        """Each enclosure: ``True`` while open."""
        return {name: not contact.closed for name, contact in self._tampers.items()}

    # ------------------------------------------------------------------ the outputs, as the hardware sees them

    def _driven_high(self, pin: int) -> bool | None:
        """The output's level, or ``None`` if nothing drives the pin (it is an input)."""
        p = self.factory.pin(pin)
        return bool(p.state) if p.function == "output" else None

    @property
    def lock_energised(self) -> bool:
        """Whether the lock relay is pulled in. An undriven pin leaves the relay off."""
        level = self._driven_high(self.hw.lock.pin)
        return level is not None and level == self.hw.lock.active_high

    @property
    def lock_released(self) -> bool:
        """Whether the lock lets the door open: a powered strike, or an unpowered maglock."""
        energised = self.lock_energised
        return energised if self.hw.lock.type == "fail_secure" else not energised

    @property
    def leds(self) -> dict[str, bool]:
        """Which LEDs are lit right now: ``green_outside``, ``red_outside``, ``green_inside``, ``red_inside``."""
        ind = self.hw.indicators
        pins = {"green_outside": ind.green_outside_pin, "red_outside": ind.red_outside_pin,
                "green_inside": ind.green_inside_pin, "red_inside": ind.red_inside_pin}
        return {name: bool(self._driven_high(pin)) for name, pin in pins.items()}

    @property
    def buzzer(self) -> bool:
        """Whether the buzzer sounds right now."""
        return bool(self._driven_high(self.hw.indicators.buzzer_pin))

    def __repr__(self) -> str:
        return (f"<GpioWorld door {'open' if self.door_open else 'closed'}, "
                f"lock {'released' if self.lock_released else 'secure'}>")
