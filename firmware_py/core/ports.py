"""The interfaces the controller core drives; drivers and storage implement them.

The core never imports gpiozero, serial, smartcard or SQLite: it holds objects
with these methods, so the same core runs with real pins, mock pins, a SQLite
file (:mod:`firmware_py.storage.door_log`, :class:`firmware_py.storage.roster.SqliteRoster`)
or the in-memory ports of the unit tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, Protocol

from firmware_py.config.schema import CalendarConfig
from firmware_py.core.people import Person

Pattern = Literal["idle", "granted", "denied", "alarm", "screening_wait"]
PATTERNS: tuple[str, ...] = ("idle", "granted", "denied", "alarm", "screening_wait")


class Lock(Protocol):
    """The door lock relay."""

    def release(self) -> None:
        """Let the door open (strike unlocked / maglock de-energised)."""

    def secure(self) -> None:
        """Hold the door (the lock type's secure state)."""

    @property
    def is_released(self) -> bool: ...


class Indicators(Protocol):
    """Buzzer and green/red LEDs outside and inside."""

    def show(self, pattern: Pattern, side: Literal["outside", "inside", "both"] = "both") -> None:
        """Show a named pattern; ``idle`` turns everything off."""


class Roster(Protocol):
    """The authorised personnel, as the door reads them (the storage room keeps them)."""

    def get(self, person_id: str) -> Person | None:
        """The person with this id, revoked or not."""

    def by_id_hash(self, id_hash: str) -> Person | None:
        """The person whose ID number has this keyed hash (:func:`~firmware_py.core.idnumber.id_hash`)."""

    def by_badge(self, uid: str) -> Person | None:
        """The person holding this badge (any case and separators), revoked or not."""

    def revoke(self, person_id: str, reason: str, at: datetime) -> Person:
        """Revoke from ``at`` and record ``roster_changed``; :class:`~firmware_py.errors.RosterError` when refused."""

    def calendar(self) -> CalendarConfig | None:
        """The working hours the station's roster bundle set with the rows (None: the config's ``[calendar]``).

        Asked at every decision; the same object until a bundle changes the hours."""


class PinChecker(Protocol):
    """Judges a PIN against a person's two slow hashes away from the controller's loop.

    A check takes up to half a second on a Pi; the loop must handle inputs meanwhile (the
    exit button releases at once). :meth:`check` returns at once; the verdict comes back
    later as a :class:`~firmware_py.core.inputs.PinChecked` input in the controller's queue.
    """

    def check(self, ticket: int, pin: str, pin_hash: str | None, duress_hash: str | None) -> None:
        """Judge ``pin`` with :func:`~firmware_py.core.pin.judge_pin` (both checks, always); post the verdict."""


class EventLog(Protocol):
    """The door's durable, hash-chained event log, and the small state stored with its events.

    :meth:`record` stores an event together with the state it changes (``state``:
    occupancy, lockdown; ``command_key``: a command id that ran) in one
    transaction, after any :attr:`backlog`, or raises
    :class:`~firmware_py.errors.StoreError` when the database refuses. What the
    door need not store before acting it may :meth:`defer` instead: kept in
    memory with its own time (and its state) and stored, in order, by the next
    :meth:`record` or :meth:`store_backlog`.
    """

    backlog: list[dict]  # deferred events, oldest first

    def record(self, category: str, type: str, *, direction: str | None = None, person: dict | None = None,
               credential: dict | None = None, reason: str | None = None, detail: dict | None = None,
               state: Mapping[str, Any] | None = None, command_key: str | None = None) -> list[dict]:
        """Store the backlog, then this event; return the events stored, this one last."""

    def defer(self, category: str, type: str, *, direction: str | None = None, person: dict | None = None,
              credential: dict | None = None, reason: str | None = None, detail: dict | None = None,
              state: Mapping[str, Any] | None = None, command_key: str | None = None) -> dict:
        """Keep the event for later; return it as it will be stored, without ``seq`` and ``hash``.

        Raises ValueError at once for what could never be stored (not strict JSON, a full ID number).
        """

    def store_backlog(self) -> list[dict]:
        """Store the deferred events in order; return them. StoreError (backlog kept) when still refused."""

    def head(self) -> tuple[int, str]:
        """The last ``seq`` and its ``hash`` (0 and the genesis hash when empty); kept in memory, no query."""

    def hash_at(self, seq: int) -> str | None: ...

    def queued(self) -> int:
        """How many stored events the broker has not acknowledged yet."""

    def anchor(self) -> tuple[int, str] | None:
        """The head this door last wrote outside its log (None: a new door), to notice a removed or swapped log."""

    def state(self, key: str, default: Any = None) -> Any:
        """A piece of door state stored with the events (``occupancy``, ``lockdown``)."""

    def keep_state(self, key: str, value: Any, *, durable: bool = True) -> None:
        """Store a piece of state alone (the passage in the doorway, for a start after a crash);
        StoreError when the database refuses. ``durable=False``: without waiting for the disk, so it
        survives the process being killed, and a power cut once anything durable is stored after it."""

    def was_executed(self, command_key: str) -> bool:
        """Whether a command with this key already ran (stored or deferred)."""
