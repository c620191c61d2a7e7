"""The door contact: a reed switch in the frame, a magnet in the door leaf."""

from __future__ import annotations

import logging

from gpiozero import DigitalInputDevice

from firmware_py.core.inputs import DoorClosed, DoorOpened, Post

log = logging.getLogger(__name__)


def bounce_time(bounce_s: float | None) -> float | None:
    """gpiozero's ``bounce_time``: ``None`` switches debouncing off (so does 0)."""
    return bounce_s if bounce_s else None


class DoorContact:
    """A reed switch that is closed while the door is closed.

    Wire the reed switch (normally open: it closes when the magnet is near)
    between the GPIO pin and GND and keep ``pull_up=True``: a closed door pulls
    the pin low, an open door lets the pull-up take it high. A cut or unplugged
    wire therefore reads as an open door, never as a closed one. With
    ``pull_up=False`` wire the switch to 3V3 instead (the internal pull-down
    holds the pin low while the door is open).

    :param pin: GPIO (BCM number).
    :param post: where to report :class:`DoorOpened` / :class:`DoorClosed`
        (usually the controller queue's ``put``); called on gpiozero's thread,
        or on the caller's thread for mock pins.
    :param pull_up: which internal resistor to use (see above).
    :param bounce_s: debounce time in seconds; 0 or ``None`` for none. A reed
        switch chatters for a few milliseconds when the door slams.
    :param pin_factory: a gpiozero pin factory (tests pass a ``MockFactory``).

    The state at start-up is not posted: read :attr:`is_open`.
    """

    def __init__(self, pin: int, *, post: Post, pull_up: bool = True, bounce_s: float | None = 0.02,
                 pin_factory=None):
        self._post = post
        self._input = DigitalInputDevice(pin, pull_up=pull_up, bounce_time=bounce_time(bounce_s),
                                         pin_factory=pin_factory)
        # gpiozero's "active" is the contact being closed, i.e. the door closed.
        self._input.when_activated = self._closed
        self._input.when_deactivated = self._opened
        log.info("door contact on GPIO%s: door %s", pin, "open" if self.is_open else "closed")

    def _opened(self) -> None:
        log.debug("door opened")
        self._post(DoorOpened())

    def _closed(self) -> None:
        log.debug("door closed")
        self._post(DoorClosed())

    @property
    def is_open(self) -> bool:
        return not self._input.is_active

    def close(self) -> None:
        self._input.close()

    def __repr__(self) -> str:
        if self._input.closed:
            return "<DoorContact closed>"
        return f"<DoorContact door {'open' if self.is_open else 'closed'}>"
