"""The door lock: one relay on a GPIO output, driving an electric strike or a maglock.

Wiring (for the installer)
--------------------------
The Pi never powers the lock. A GPIO pin drives the input of a relay module; the
relay's contacts switch the lock's own supply (12 or 24 V DC from a separate
access-control power supply)::

    Pi GPIO17 ──► relay module IN        lock PSU + ──► relay COM
    Pi GND    ──► relay module GND       relay NO   ──► lock +
    (module VCC from the Pi's 5 V, or     lock PSU − ──► lock −
     JD-VCC from its own supply)

Wire the lock through the relay's COM and **NO** terminals for both lock types:
the lock is then powered only while the relay is energised, and ``lock_type``
tells this driver whether energising releases or holds the door. Fit a flyback
diode across a DC strike's coil (most maglocks have one built in). Many cheap
relay modules switch on when their input is *low*: set ``active_high = false``.

Lock types
----------
``fail_secure`` — an electric strike (or motor lock) that unlocks while powered.
    The door stays locked when power fails. Choose it for the archive room's
    door when the door has mechanical free egress from inside (a lever handle
    that always retracts the latch), which fire regulations require anyway:
    people inside can always leave, nobody can enter during a power cut.
``fail_safe`` — a maglock that holds while powered. The door opens when power
    fails. Choose it where the fire authority asks that the door be free on
    power loss or fire alarm, and where the door has no lever that releases a
    maglock mechanically. Then the fire alarm panel and an emergency break-glass
    unit must cut the maglock's power *in hardware*, in series with this relay.

Free egress never depends on this software: a strike door has its lever, a
maglock its break-glass and fire-alarm cut-out. The controller also releases the
lock for the exit button, but that is convenience and logging, not the safety.

Shutdown behaviour
------------------
The lock starts secure (the relay's first state is written together with the
pin's switch to output, so no glitch releases it) and :meth:`DoorLock.close`
secures it and leaves the pin driven in that state. When the process exits,
gpiozero's pin factory turns every pin back into an input; the relay then drops
out on most modules, and the lock falls into its power-loss state: a strike stays
locked, a maglock lets go — which is what its type promises anyway.
"""

from __future__ import annotations

import logging

from gpiozero import DigitalOutputDevice

log = logging.getLogger(__name__)

LOCK_TYPES = ("fail_secure", "fail_safe")


class _Relay(DigitalOutputDevice):
    """A relay output that can let go of its pin without switching it to an input."""

    def detach(self) -> None:
        """Release the pin's reservation but keep driving its present level.

        gpiozero's ``close()`` makes the pin an input, which drops the relay: for a
        maglock that would open the door. Here the pin stays an output.
        """
        self._stop_blink()
        pin = getattr(self, "_pin", None)
        if pin is not None:
            self.pin_factory.release_pins(self, pin.info.name)
            self._pin = None


class DoorLock:
    """The door's lock relay (implements ``firmware_py.core.ports.Lock``).

    :param pin: GPIO (BCM number) driving the relay module's input.
    :param lock_type: ``"fail_secure"`` (strike: energise to release) or
        ``"fail_safe"`` (maglock: energise to hold).
    :param active_high: ``True`` if the relay switches on when the pin is high;
        ``False`` for modules that switch on a low input.
    :param pin_factory: a gpiozero pin factory (tests pass a ``MockFactory``).
    """

    def __init__(self, pin: int, *, lock_type: str = "fail_secure", active_high: bool = True, pin_factory=None):
        if lock_type not in LOCK_TYPES:
            raise ValueError(f"lock_type {lock_type!r} is not one of {', '.join(LOCK_TYPES)}")
        self.lock_type = lock_type
        self._energise_to_release = lock_type == "fail_secure"
        self._relay = _Relay(pin, active_high=active_high, initial_value=self._secure_energised,
                             pin_factory=pin_factory)
        self._closed = False
        log.info("door lock on GPIO%s: %s, relay active %s, secure", pin, lock_type,
                 "high" if active_high else "low")

    @property
    def _secure_energised(self) -> bool:
        return not self._energise_to_release

    def release(self) -> None:
        """Let the door open: power the strike, or cut the maglock."""
        self._relay.value = self._energise_to_release

    def secure(self) -> None:
        """Hold the door: unpower the strike, or power the maglock."""
        self._relay.value = self._secure_energised

    @property
    def is_released(self) -> bool:
        """Whether the relay is in the releasing state (read back from the pin)."""
        return bool(self._relay.value) == self._energise_to_release

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Secure the lock and give up the pin, still driving it in the secure state."""
        if self._closed:
            return
        self.secure()
        self._relay.detach()
        self._closed = True

    def __enter__(self) -> DoorLock:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("released" if self.is_released else "secure")
        return f"<DoorLock {self.lock_type} {state}>"
