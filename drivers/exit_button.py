"""The request-to-exit button on the inside of the door."""

from __future__ import annotations

import logging

from gpiozero import DigitalInputDevice

from firmware_py.core.inputs import ExitButtonPressed, Post

from .door_contact import bounce_time

log = logging.getLogger(__name__)


class ExitButton:
    """A normally-open push button inside the room ("press to exit").

    Wire it between the GPIO pin and GND with ``pull_up=True`` (pressing pulls
    the pin low), or to 3V3 with ``pull_up=False``. The button only asks the
    controller to release the lock; it is not the fire-egress path (see
    :mod:`drivers.door_lock`). Buttons with a second, normally-closed contact
    that cuts a maglock's power directly are a good idea for fail-safe doors.

    :param pin: GPIO (BCM number).
    :param post: where to report :class:`ExitButtonPressed`, once per press.
    :param pull_up: which internal resistor to use (see above).
    :param bounce_s: debounce time in seconds; 0 or ``None`` for none.
    :param pin_factory: a gpiozero pin factory (tests pass a ``MockFactory``).

    Built on ``DigitalInputDevice`` rather than gpiozero's ``Button``: ``Button``
    runs a hold-detection thread that wakes every 0.1 s (and makes ``close()``
    wait for it), and a held exit button means nothing more than a pressed one.
    """

    def __init__(self, pin: int, *, post: Post, pull_up: bool = True, bounce_s: float | None = 0.02,
                 pin_factory=None):
        self._post = post
        self._button = DigitalInputDevice(pin, pull_up=pull_up, bounce_time=bounce_time(bounce_s),
                                          pin_factory=pin_factory)
        self._button.when_activated = self._pressed
        log.info("exit button on GPIO%s", pin)

    def _pressed(self) -> None:
        log.debug("exit button pressed")
        self._post(ExitButtonPressed())

    @property
    def is_pressed(self) -> bool:
        return self._button.is_active

    def close(self) -> None:
        self._button.close()

    def __repr__(self) -> str:
        return "<ExitButton closed>" if self._button.closed else f"<ExitButton pressed={self.is_pressed}>"
