"""Plain input events that drivers post into the controller's queue.

Drivers call a ``post(event)`` callable (thread-safe: it is ``queue.Queue.put``)
from whatever thread their library uses; the controller core handles the events
one at a time on its own loop. No event carries a decision: drivers report what
the hardware saw, nothing more.

``side`` is where a reader is mounted: ``"outside"`` (entry) or ``"inside"`` (exit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

Side = Literal["outside", "inside"]
SIDES: tuple[str, ...] = ("outside", "inside")


@dataclass(frozen=True)
class IdCardRead:
    """A resident ID card was read completely by the SAM reader on ``side``.

    ``id_number`` is the full 18-character number: it must never be logged or
    published; the controller hashes and masks it at once.
    """

    side: Side
    id_number: str
    name: str = ""
    sex: str = ""
    nation: str = ""
    birth_date: date | None = None
    address: str = ""
    issuer: str = ""
    valid_from: date | None = None
    valid_to: date | None = None  # None = long-term ("长期")

    def __repr__(self) -> str:  # keep the number out of tracebacks and logs
        return f"IdCardRead(side={self.side!r}, id_number=<redacted>)"


@dataclass(frozen=True)
class BadgeRead:
    """A staff badge (ISO 14443) was presented; ``uid`` is upper-case hex without spaces."""

    side: Side
    uid: str


@dataclass(frozen=True)
class KeypadKeys:
    """Keys pressed on the keypad of the reader on ``side``, in order: ``0``-``9``, ``*``, ``#``.

    One report may hold a few keys or one; the controller gathers them into a PIN
    (``#`` ends it, ``*`` starts it again). The keys may be a PIN: never log or
    publish them (``repr`` hides them).
    """

    side: Side
    keys: str

    def __repr__(self) -> str:
        return f"KeypadKeys(side={self.side!r}, keys=<{len(self.keys)} redacted>)"


@dataclass(frozen=True)
class DoorOpened:
    """The door contact reports the door open."""


@dataclass(frozen=True)
class DoorClosed:
    """The door contact reports the door closed."""


@dataclass(frozen=True)
class ExitButtonPressed:
    """The request-to-exit button inside was pressed."""


@dataclass(frozen=True)
class GatePassage:
    """One walk-through of the metal-detector gate.

    ``count`` is the number of people the gate counted in this passage window
    (0 when only the alarm relay fired), ``metal`` whether its alarm relay fired.
    """

    count: int
    metal: bool


@dataclass(frozen=True)
class DeviceFault:
    """A device stopped answering or reports a fault (``device`` names it, e.g. ``id_reader.outside``)."""

    device: str
    detail: str


@dataclass(frozen=True)
class DeviceRecovered:
    """A device that was faulty answers again."""

    device: str


@dataclass(frozen=True)
class TamperChanged:
    """A tamper contact changed: ``active`` True when the enclosure is open or the wire cut."""

    device: str
    active: bool


@dataclass(frozen=True)
class RemoteCommand:
    """A supervisor command received on the door's ``cmd`` topic.

    The MQTT link parses and validates the payload; a command it could not
    accept still arrives here with ``error`` set, so the controller audits
    every command, good or bad, as a ``command`` event and answers it.
    ``claimed_by`` is who the sender *says* it is (the MQTT 5 user property
    ``client``, or ``local:USER`` from the door's command line): a claim,
    recorded as such, never an authenticated identity.
    """

    id: str | None
    action: str | None
    args: dict = field(default_factory=dict)
    claimed_by: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class LinkChanged:
    """The connection to the MQTT broker went up or down."""

    up: bool
    detail: str = ""


@dataclass(frozen=True)
class TimeBeacon:
    """The supervisor's time beacon (GB 50396 5.1.3): its clock's reading.

    ``retained`` is True for the broker's stored copy delivered on subscribing:
    it may be up to a beacon interval old, so it says nothing about drift.
    """

    ts: datetime
    retained: bool = False


@dataclass(frozen=True)
class PinChecked:
    """The verdict on a PIN the controller asked its :class:`~firmware_py.core.ports.PinChecker` to judge:
    :data:`~firmware_py.core.pin.MATCH`, ``DURESS`` or ``WRONG`` for the check numbered ``ticket``."""

    ticket: int
    verdict: str


InputEvent = (
    IdCardRead
    | BadgeRead
    | KeypadKeys
    | DoorOpened
    | DoorClosed
    | ExitButtonPressed
    | GatePassage
    | DeviceFault
    | DeviceRecovered
    | TamperChanged
    | RemoteCommand
    | LinkChanged
    | TimeBeacon
    | PinChecked
)

Post = Callable[[InputEvent], None]
"""What a driver is given to report events: usually ``queue.Queue.put``."""
