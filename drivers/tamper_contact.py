"""Tamper contacts: the switch inside a reader's (or the gate's) enclosure."""

from __future__ import annotations

import logging

from gpiozero import DigitalInputDevice

from firmware_py.core.inputs import Post, TamperChanged

from .door_contact import bounce_time

log = logging.getLogger(__name__)


class TamperContact:
    """A tamper switch that is closed while the enclosure is shut and in place.

    Reader housings have a small switch pressed by the lid or the wall plate:
    closed when all is well, open when the housing is opened or pulled off the
    wall. Wire that closed-when-secure contact between the GPIO pin and GND with
    ``pull_up=True``: opening the housing *or cutting the wire* lets the pull-up
    take the pin high, and both read as tamper.

    :param pin: GPIO (BCM number).
    :param device: the name reported in :class:`TamperChanged`, e.g.
        ``"id_reader.outside"``, ``"badge_reader.inside"``, ``"gate"``.
    :param post: where to report :class:`TamperChanged` on every change.
    :param pull_up: ``False`` to wire the contact to 3V3 instead (internal pull-down).
    :param bounce_s: debounce time in seconds; 0 or ``None`` for none.
    :param pin_factory: a gpiozero pin factory (tests pass a ``MockFactory``).

    A contact already open at start-up is reported at once
    (``TamperChanged(device, active=True)``): a housing opened while the
    controller was off must not go unnoticed.
    """

    def __init__(self, pin: int, *, device: str, post: Post, pull_up: bool = True,
                 bounce_s: float | None = 0.05, pin_factory=None):
        self.device = device
        self._post = post
        self._input = DigitalInputDevice(pin, pull_up=pull_up, bounce_time=bounce_time(bounce_s),
                                         pin_factory=pin_factory)
        # gpiozero's "active" is the contact being closed, i.e. the enclosure secure.
        self._input.when_activated = self._secured
        self._input.when_deactivated = self._tampered
        log.info("tamper contact %s on GPIO%s: %s", device, pin, "TAMPER" if self.is_active else "ok")
        if self.is_active:
            log.warning("tamper contact %s is open at start-up", device)
            self._post(TamperChanged(device=device, active=True))

    def _tampered(self) -> None:
        log.warning("tamper contact %s opened", self.device)
        self._post(TamperChanged(device=self.device, active=True))

    def _secured(self) -> None:
        log.info("tamper contact %s closed again", self.device)
        self._post(TamperChanged(device=self.device, active=False))

    @property
    def is_active(self) -> bool:
        """``True`` while the enclosure is open or the wire is cut."""
        return not self._input.is_active

    def close(self) -> None:
        self._input.close()

    def __repr__(self) -> str:
        if self._input.closed:
            return f"<TamperContact {self.device} closed>"
        return f"<TamperContact {self.device} {'TAMPER' if self.is_active else 'ok'}>"
