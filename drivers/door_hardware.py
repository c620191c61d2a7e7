"""Everything on GPIO at the door, built from the ``[hardware]`` config in one call.

The serial ID-card readers and PC/SC badge readers are built elsewhere; only
their enclosures' tamper contacts (which are GPIO inputs) are built here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from firmware_py.config.schema import HardwareConfig
from firmware_py.core.inputs import Post

from .door_contact import DoorContact
from .door_lock import DoorLock
from .exit_button import ExitButton
from .indicators import Indicators
from .metal_detector_gate import MetalDetectorGate
from .tamper_contact import TamperContact

log = logging.getLogger(__name__)


@dataclass
class DoorHardware:
    """The GPIO devices at the door. ``close()`` secures the lock and releases every pin."""

    lock: DoorLock
    door_contact: DoorContact
    exit_button: ExitButton
    indicators: Indicators
    gate: MetalDetectorGate
    tampers: list[TamperContact] = field(default_factory=list)

    def close(self) -> None:
        # The lock first: it is secured whatever fails after it.
        for device in [self.lock, self.gate, self.exit_button, self.door_contact, *self.tampers, self.indicators]:
            try:
                device.close()
            except Exception:
                log.exception("closing %r failed", device)


def reader_tamper_pins(hw: HardwareConfig) -> list[tuple[str, int]]:
    """``(device name, pin)`` for every reader enclosure with a tamper contact."""
    pins = [(f"id_reader.{r.side}", r.tamper_pin) for r in hw.id_readers if r.tamper_pin is not None]
    pins += [(f"badge_reader.{r.side}", r.tamper_pin) for r in hw.badge_readers if r.tamper_pin is not None]
    return pins


def build_door_hardware(hw: HardwareConfig, post: Post, *, pin_factory=None) -> DoorHardware:
    """Build the lock, door contact, exit button, indicators, gate and reader tamper contacts.

    If any device cannot be set up (a pin in use, a fixed pull-up on GPIO2/3
    asked to pull down, ...) the ones already built are closed again and the
    error is raised.
    """
    built: list = []

    def keep(device):
        built.append(device)
        return device

    try:
        lock = keep(DoorLock(hw.lock.pin, lock_type=hw.lock.type, active_high=hw.lock.active_high,
                             pin_factory=pin_factory))
        door_contact = keep(DoorContact(hw.door_contact.pin, post=post, pull_up=hw.door_contact.pull_up,
                                        bounce_s=hw.door_contact.bounce_s, pin_factory=pin_factory))
        exit_button = keep(ExitButton(hw.exit_button.pin, post=post, pull_up=hw.exit_button.pull_up,
                                      bounce_s=hw.exit_button.bounce_s, pin_factory=pin_factory))
        ind = hw.indicators
        indicators = keep(Indicators(buzzer_pin=ind.buzzer_pin, green_outside_pin=ind.green_outside_pin,
                                     red_outside_pin=ind.red_outside_pin, green_inside_pin=ind.green_inside_pin,
                                     red_inside_pin=ind.red_inside_pin, pin_factory=pin_factory))
        g = hw.gate
        gate = keep(MetalDetectorGate(g.alarm_pin, post=post, alarm_contact=g.alarm_contact,
                                      passage_pin=g.passage_pin, tamper_pin=g.tamper_pin, pull_up=g.pull_up,
                                      passage_window_s=g.passage_window_s, pin_factory=pin_factory))
        tampers = [keep(TamperContact(pin, device=name, post=post, pin_factory=pin_factory))
                   for name, pin in reader_tamper_pins(hw)]
    except Exception:
        for device in reversed(built):
            try:
                device.close()
            except Exception:
                log.exception("closing %r after a failed set-up failed", device)
        raise
    return DoorHardware(lock=lock, door_contact=door_contact, exit_button=exit_button, indicators=indicators,
                        gate=gate, tampers=tampers)
