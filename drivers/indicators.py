"""The door's indicators: green and red LEDs outside and inside, one buzzer.

Wiring: each LED (or the LED input of a reader that has one) from its GPIO
through a current-limiting resistor (about 330 Ω for a 3.3 V indicator LED) to
GND; the buzzer is an *active* buzzer (it sounds when powered) switched by a
small NPN transistor or a driver board from its GPIO. All outputs are on when
the pin is high.
"""

from __future__ import annotations

import logging
import threading
import time

from gpiozero import LED, Buzzer

from firmware_py.core.ports import PATTERNS

log = logging.getLogger(__name__)

SIDES = ("outside", "inside")

# Timings of the patterns, in seconds.
BLINK_S = 0.25  # screening_wait: green blinks 0.25 s on, 0.25 s off
BEEP_ON_S = 0.1  # denied: three short beeps
BEEP_OFF_S = 0.1
DENIED_BEEPS = 3

# The LEDs each pattern lights on its side, and what it asks of the shared buzzer.
_LEDS = {
    "idle": {"green": "off", "red": "off"},
    "granted": {"green": "on", "red": "off"},
    "denied": {"green": "off", "red": "on"},
    "alarm": {"green": "off", "red": "on"},
    "screening_wait": {"green": "blinking", "red": "off"},
}
_BUZZER = {"idle": None, "granted": None, "denied": "beeping", "alarm": "on", "screening_wait": None}


class Indicators:
    """Named light-and-sound patterns on the door's two sides (implements ``ports.Indicators``).

    ========================  ====================  ==============================
    pattern                   LEDs on that side     buzzer
    ========================  ====================  ==============================
    ``idle``                  all off               off
    ``granted``               green on              off
    ``denied``                red on                three short beeps
    ``alarm``                 red on                continuous
    ``screening_wait``        green blinking        off
    ========================  ====================  ==============================

    The buzzer is shared by both sides: an alarm on either side keeps it
    sounding until that side leaves ``alarm``; the other side going idle does
    not silence it.

    :param buzzer_pin: GPIO of the buzzer.
    :param green_outside_pin, red_outside_pin, green_inside_pin, red_inside_pin: GPIOs of the LEDs.
    :param pin_factory: a gpiozero pin factory (tests pass a ``MockFactory``).
    """

    def __init__(self, *, buzzer_pin: int, green_outside_pin: int, red_outside_pin: int,
                 green_inside_pin: int, red_inside_pin: int, pin_factory=None):
        self._lock = threading.Lock()
        self._outputs: dict = {}
        try:
            for name, pin in (("green_outside", green_outside_pin), ("red_outside", red_outside_pin),
                              ("green_inside", green_inside_pin), ("red_inside", red_inside_pin)):
                self._outputs[name] = LED(pin, pin_factory=pin_factory)
            self._outputs["buzzer"] = Buzzer(buzzer_pin, pin_factory=pin_factory)
        except Exception:
            self.close()
            raise
        self._modes = {name: "off" for name in self._outputs}
        self._patterns = {side: "idle" for side in SIDES}
        self._beeps_end = 0.0

    # ------------------------------------------------------------------ the port

    def show(self, pattern: str, side: str = "both") -> None:
        """Show a named pattern on one side (``"outside"``/``"inside"``) or ``"both"``."""
        if pattern not in PATTERNS:
            raise ValueError(f"unknown indicator pattern {pattern!r}; known: {', '.join(PATTERNS)}")
        if side not in SIDES + ("both",):
            raise ValueError(f"side {side!r} is not outside, inside or both")
        sides = SIDES if side == "both" else (side,)
        with self._lock:
            for s in sides:
                self._patterns[s] = pattern
                for colour, mode in _LEDS[pattern].items():
                    self._set(f"{colour}_{s}", mode)
            self._update_buzzer(requested=_BUZZER[pattern])
        log.debug("indicators: %s on %s", pattern, side)

    def _update_buzzer(self, requested: str | None) -> None:
        if any(p == "alarm" for p in self._patterns.values()):
            if self._modes["buzzer"] != "on":
                self._set("buzzer", "on")
        elif requested is not None:
            self._set("buzzer", requested)  # a new denial beeps again even if the last one did
        elif self._modes["buzzer"] == "beeping" and "denied" in self._patterns.values():
            pass  # the other side still shows its denial: let its beeps finish
        else:
            self._set("buzzer", "off")

    def _set(self, name: str, mode: str) -> None:
        device = self._outputs[name]
        if mode == "on":
            device.on()
        elif mode == "off":
            device.off()
        elif mode == "blinking":
            if self._modes[name] != "blinking":
                device.blink(on_time=BLINK_S, off_time=BLINK_S)
        elif mode == "beeping":
            device.blink(on_time=BEEP_ON_S, off_time=BEEP_OFF_S, n=DENIED_BEEPS)
            self._beeps_end = time.monotonic() + DENIED_BEEPS * (BEEP_ON_S + BEEP_OFF_S)
        self._modes[name] = mode

    # ------------------------------------------------------------------ for the console and simulator

    @property
    def patterns(self) -> dict[str, str]:
        """The pattern each side shows, e.g. ``{"outside": "granted", "inside": "idle"}``."""
        with self._lock:
            return dict(self._patterns)

    @property
    def state(self) -> dict[str, str]:
        """What each output is doing: ``"on"``, ``"off"``, ``"blinking"`` (LEDs) or ``"beeping"`` (buzzer).

        Keys: ``green_outside``, ``red_outside``, ``green_inside``, ``red_inside``, ``buzzer``.
        Finished beeps read ``"off"``.
        """
        with self._lock:
            state = dict(self._modes)
        if state["buzzer"] == "beeping" and time.monotonic() >= self._beeps_end:
            state["buzzer"] = "off"
        return state

    def close(self) -> None:
        """Turn everything off and release the pins."""
        for device in self._outputs.values():
            try:
                device.off()
            except Exception:  # already closed
                pass
            device.close()

    def __repr__(self) -> str:
        return f"<Indicators {self._patterns}>"
