"""The walk-through metal detector (security gate), read through its dry contacts.

Wiring (for the installer)
--------------------------
Walk-through detectors of the Garrett / CEIA kind have no open serial protocol
that this controller relies on; they do have potential-free relay outputs, set
up in the gate's supervisor menu. Take three of them to the Pi, each contact
between a GPIO pin and GND (``pull_up=True``; keep the runs short, or use an
opto-isolated input board for long cable runs)::

    gate alarm relay    C ──► GND      NC (or NO, see below) ──► GPIO24  alarm_pin
    gate transit output C ──► GND      NO                    ──► GPIO25  passage_pin
    gate tamper/fault   C ──► GND      NC                    ──► GPIO26  tamper_pin (optional)

Alarm relay: wire it **normally closed** (``alarm_contact = "normally_closed"``):
the contact is closed while all is quiet and opens on a metal alarm, so a cut
or unplugged cable reads as an alarm instead of silently letting everyone
through. Gates that let you choose the relay's sense in their menu (Garrett
calls it ``RELAY N/O`` / ``RELAY N/C``) should be set so that the contact
between the terminals you used is *closed when there is no alarm*; if the gate
holds its relay energised while idle, a gate that loses power also reads as an
alarm, which is what you want. ``"normally_open"`` (contact closes on alarm) is
accepted for gates that cannot do otherwise, but a cut wire is then invisible.

Transit output: the gate's infrared transit (people-counting) output gives one
short closing pulse per person walking through. Set the pulse in the gate to
50-500 ms. Without a transit output (``passage_pin`` unset) the controller only
learns of alarms (``count`` is then always 0).

Tamper: the gate's fault or cabinet-tamper contact, closed while all is well;
reported as ``TamperChanged(device="gate")``.

Walk-throughs
-------------
The gate does not say when a walk-through is over: the driver knows it is over
only when nothing more has happened for ``passage_window_s``. Every transit
pulse and every alarm onset therefore (re)starts a timer; when the timer runs
out the driver posts one ``GatePassage(count, metal)`` for everything it saw.
The timer has to be the driver's own (a ``threading.Timer``): gpiozero calls us
only on edges, and the event that closes the window is the *absence* of an edge;
the controller core must receive one finished walk-through, not raw pulses. The
window runs on the machine's real clock, like the gate itself.
"""

from __future__ import annotations

import logging
import threading

from gpiozero import DigitalInputDevice

from firmware_py.core.inputs import GatePassage, Post

from .tamper_contact import TamperContact

log = logging.getLogger(__name__)

ALARM_CONTACTS = ("normally_closed", "normally_open")


class MetalDetectorGate:
    """A walk-through metal detector's alarm relay, transit pulse and tamper contacts.

    :param alarm_pin: GPIO (BCM number) wired to the gate's alarm relay.
    :param post: where to report :class:`GatePassage` (one per walk-through) and
        :class:`TamperChanged` (``device="gate"``).
    :param alarm_contact: ``"normally_closed"`` (contact opens on alarm; a cut wire
        reads as alarm — recommended) or ``"normally_open"`` (contact closes on alarm).
    :param passage_pin: GPIO wired to the transit (people-count) pulse output, or ``None``.
    :param tamper_pin: GPIO wired to the gate's tamper/fault contact (closed when ok), or ``None``.
    :param pull_up: contacts switch to GND with the internal pull-ups (``True``), or
        to 3V3 with the pull-downs (``False``).
    :param passage_window_s: pulses and alarms less than this apart belong to the
        same walk-through; the walk-through is reported this long after the last one.
    :param bounce_s: debounce for the contacts, in seconds; 0 or ``None`` for none.
        Keep it well below the transit pulse length.
    :param pin_factory: a gpiozero pin factory (tests pass a ``MockFactory``).
    """

    def __init__(self, alarm_pin: int, *, post: Post, alarm_contact: str = "normally_closed",
                 passage_pin: int | None = None, tamper_pin: int | None = None, pull_up: bool = True,
                 passage_window_s: float = 1.5, bounce_s: float | None = 0.005, pin_factory=None):
        if alarm_contact not in ALARM_CONTACTS:
            raise ValueError(f"alarm_contact {alarm_contact!r} is not one of {', '.join(ALARM_CONTACTS)}")
        if passage_window_s <= 0:
            raise ValueError(f"passage_window_s must be positive, not {passage_window_s!r}")
        self._post = post
        self.alarm_contact = alarm_contact
        self.passage_window_s = float(passage_window_s)
        bounce = bounce_s if bounce_s else None
        self._lock = threading.Lock()
        self._count = 0
        self._metal = False
        self._open = False  # a walk-through is in progress (its window has not closed)
        self._generation = 0  # which timer is the live one
        self._timer: threading.Timer | None = None
        self._closed = False
        self._devices: list = []
        try:
            self._alarm = DigitalInputDevice(alarm_pin, pull_up=pull_up, bounce_time=bounce,
                                             pin_factory=pin_factory)
            self._devices.append(self._alarm)
            # gpiozero's "active" is the contact closed; which way is the alarm depends on the wiring.
            if alarm_contact == "normally_closed":
                self._alarm.when_deactivated = self._alarm_started
            else:
                self._alarm.when_activated = self._alarm_started
            self._passage = None
            if passage_pin is not None:
                self._passage = DigitalInputDevice(passage_pin, pull_up=pull_up, bounce_time=bounce,
                                                   pin_factory=pin_factory)
                self._devices.append(self._passage)
                self._passage.when_activated = self._person_passed
            self._tamper = None
            if tamper_pin is not None:
                self._tamper = TamperContact(tamper_pin, device="gate", post=post, pull_up=pull_up,
                                             bounce_s=bounce_s, pin_factory=pin_factory)
                self._devices.append(self._tamper)
        except Exception:
            self._close_devices()
            raise
        log.info("metal detector gate: alarm GPIO%s (%s), transit %s, tamper %s, window %.2f s",
                 alarm_pin, alarm_contact, f"GPIO{passage_pin}" if passage_pin is not None else "none",
                 f"GPIO{tamper_pin}" if tamper_pin is not None else "none", self.passage_window_s)
        if self.alarm_active:
            log.warning("gate alarm contact reads ALARM at start-up: cut wire, gate off, or wrong alarm_contact")

    # ------------------------------------------------------------------ state

    @property
    def alarm_active(self) -> bool:
        """Whether the alarm contact is in its alarm state right now (a cut NC wire included)."""
        closed = self._alarm.is_active
        return not closed if self.alarm_contact == "normally_closed" else closed

    @property
    def tamper_active(self) -> bool:
        return self._tamper is not None and self._tamper.is_active

    @property
    def walk_through_in_progress(self) -> bool:
        with self._lock:
            return self._open

    # ------------------------------------------------------------------ edges

    def _person_passed(self) -> None:
        log.debug("gate transit pulse")
        self._extend(person=True, metal=False)

    def _alarm_started(self) -> None:
        log.info("gate alarm")
        self._extend(person=False, metal=True)

    def _extend(self, *, person: bool, metal: bool) -> None:
        with self._lock:
            if self._closed:
                return
            if not self._open:
                self._open = True
                self._count = 0
                # An alarm that is still on (or a cut wire) when someone walks in counts.
                self._metal = self.alarm_active
            self._count += person
            self._metal = self._metal or metal
            if self._timer is not None:
                self._timer.cancel()
            self._generation += 1
            self._timer = threading.Timer(self.passage_window_s, self._window_closed, args=(self._generation,))
            self._timer.daemon = True
            self._timer.name = "gate-passage-window"
            self._timer.start()

    def _window_closed(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation or not self._open:
                return  # a later pulse restarted the window, or it was flushed
            passage = self._take()
        self._report(passage)

    def _take(self) -> GatePassage:
        """End the open walk-through (call with the lock held)."""
        passage = GatePassage(count=self._count, metal=self._metal)
        self._open = False
        self._count = 0
        self._metal = False
        self._timer = None
        return passage

    def _report(self, passage: GatePassage) -> None:
        log.info("gate walk-through: %d person(s), metal %s", passage.count, "YES" if passage.metal else "no")
        self._post(passage)

    # ------------------------------------------------------------------ shutdown

    def flush(self) -> None:
        """Report an open walk-through now instead of waiting for its window to close."""
        with self._lock:
            if not self._open:
                return
            if self._timer is not None:
                self._timer.cancel()
            self._generation += 1
            passage = self._take()
        self._report(passage)

    def close(self) -> None:
        """Report any walk-through still open, then release the pins."""
        if self._closed:
            return
        self.flush()
        with self._lock:
            self._closed = True
        self._close_devices()

    def _close_devices(self) -> None:
        for device in reversed(self._devices):
            device.close()
        self._devices.clear()

    def __repr__(self) -> str:
        if self._closed:
            return "<MetalDetectorGate closed>"
        return f"<MetalDetectorGate {self.alarm_contact} alarm={self.alarm_active}>"
