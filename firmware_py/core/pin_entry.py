"""The door waiting for a PIN after a credential (GB/T 37078 §6.3-6.4): a part of the controller's state machine.

    idle ─credential allowed, PIN required→ pin ─'#'→ right PIN: on to screening as without a PIN
                                                     duress PIN: the same, and a ``duress`` alarm
                                                     any other: ``pin_incorrect``
                                      └─ nothing ended by '#' in ``pin_timeout_s``: ``pin_timeout``

Keys come from the keypad on the side the credential was read (``0``-``9``; ``*``
starts again, ``#`` ends the PIN); keys at any other time or at the other reader
are ignored. A wrong PIN or none in time is a denial at the reader that read the
credential, so it counts toward the repeated-failures lockout like any other.
The PIN is held only while it is typed and never logged, stored or published:
the check runs against the roster's slow hashes (:mod:`firmware_py.core.pin`).

That check is slow (both hashes, always: half a second on a Pi), so it runs off
the controller's loop: ``#`` hands the PIN to the door's
:class:`~firmware_py.core.ports.PinChecker` and the wait goes on until its
verdict comes back as a :class:`~firmware_py.core.inputs.PinChecked` input. The
loop handles every other input meanwhile (the exit button releases at once); a
verdict for a wait that has ended (the exit button, a lockdown, the time limit,
started again at ``#`` to bound the check) changes nothing.

The duress PIN leaves the door exactly as the right one would (the same lights,
sounds, lock moves and access events); only the supervisor hears of it, by the
``duress`` alarm, which the door does not show.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from firmware_py.core.inputs import KeypadKeys, PinChecked
from firmware_py.core.people import Credential, Person
from firmware_py.core.pin import DURESS, MATCH, MAX_LENGTH, WRONG, judge_pin
from firmware_py.core.policy import pin_checked, pin_lapsed


class PinTarget(Protocol):
    """What the PIN entry acts on: the door controller (named by its parts, so this module does not
    import the controller that builds it)."""

    state: str
    passage: Any
    policy: Any
    timers: Any
    indicators: Any
    pin_checker: Any

    def status_changed(self) -> None: ...
    def _emit(self, category: str, type_: str, **fields) -> Any: ...
    def _deny(self, direction: str, person: Any, credential: Any, reason: str, *, side: str = "both",
              detail: dict | None = None) -> None: ...
    def _deny_counted(self, reader: str, direction: str, person: Any, credential: Any, reason: str, *,
                      side: str, detail: dict | None = None) -> None: ...
    def _let_through(self, side: str, reader: str, direction: str, person: Any, credential: Any,
                     notes: tuple[str, ...]) -> None: ...

log = logging.getLogger(__name__)

PIN_WAIT = "pin"  # the controller's state while it waits
TIMER = "pin"


@dataclass
class _Waiting:
    side: str
    reader: str
    direction: str
    person: Person
    credential: Credential
    notes: tuple[str, ...]
    keys: str = ""
    ticket: int | None = None  # the check asked for, once '#' ended the PIN

    def __repr__(self) -> str:  # the keys typed so far are a part of the PIN
        return f"_Waiting(side={self.side!r}, reader={self.reader!r}, person={self.person.person_id!r})"


class PinEntry:
    """Waits for one person's PIN at one reader; the controller holds one and feeds it keypad keys."""

    def __init__(self, door: PinTarget):
        self.door = door
        self.waiting: _Waiting | None = None
        self._tickets = itertools.count(1)

    def wait(self, side: str, reader: str, direction: str, person: Person, credential: Credential,
             notes: tuple[str, ...]) -> None:
        """The policy allowed ``person``; ask for their PIN at the ``side`` keypad."""
        door = self.door
        self.waiting = _Waiting(side, reader, direction, person, credential, notes)
        door.state, door.passage = PIN_WAIT, None
        door.indicators.show("screening_wait", side)
        door.timers.start(TIMER, door.policy.pin_timeout_s, self._timed_out)
        door.status_changed()

    def keys(self, ev: KeypadKeys) -> None:
        w = self.waiting
        if w is None or ev.side != w.side:
            log.info("keys pressed at the %s keypad with no PIN asked for there: ignored", ev.side)
            return
        if w.ticket is not None:
            log.info("keys pressed at the %s keypad while the PIN is checked: ignored", ev.side)
            return
        for key in ev.keys:
            if key == "*":
                w.keys = ""
            elif key == "#":
                self._entered()
                return
            elif key.isascii() and key.isdigit():
                w.keys = (w.keys + key)[: MAX_LENGTH + 1]  # a longer entry stays wrong, and small
            else:
                log.warning("a key the keypad cannot send (%r) at the %s keypad: ignored", key, ev.side)

    def cancel(self, reason: str) -> None:
        """Stop waiting: ``reason`` is the denial recorded (a lockdown, the exit button taking the door)."""
        w = self._end()
        if w is not None:
            self.door._deny(w.direction, w.person, w.credential, reason, side=w.side, detail={"state": PIN_WAIT})

    def _entered(self) -> None:
        """Ask for the check; the wait (and its time limit) goes on until the verdict comes back."""
        w, door = self.waiting, self.door
        w.ticket, pin, w.keys = next(self._tickets), w.keys, ""
        # '#' came in time: the limit starts again as the bound for the check (a checker that never answers).
        door.timers.start(TIMER, door.policy.pin_timeout_s, self._timed_out)
        door.pin_checker.check(w.ticket, pin, w.person.pin_hash, w.person.duress_pin_hash)

    def checked(self, ev: PinChecked) -> None:
        """The verdict on the PIN entered: let the person on, or deny them; for an ended wait, nothing."""
        w = self.waiting
        if w is None or w.ticket is None or ev.ticket != w.ticket:
            log.info("a PIN verdict came after its wait ended: ignored")
            return
        self._end()
        verdict = ev.verdict
        if verdict not in (MATCH, DURESS, WRONG):
            log.error("a PIN check answered %r, not a verdict: counted as a wrong PIN", verdict)
            verdict = WRONG
        decision = pin_checked(verdict)
        door = self.door
        if not decision.allowed:
            door._deny_counted(w.reader, w.direction, w.person, w.credential, decision.reason, side=w.side)
            return
        if verdict == DURESS:
            # For the supervisor only: stored and sent at once, never shown or sounded at the door.
            door._emit("alarm", "duress", direction=w.direction, person=w.person, credential=w.credential,
                       detail={"reader": w.reader})
        door._let_through(w.side, w.reader, w.direction, w.person, w.credential, w.notes)

    def _timed_out(self) -> None:
        w = self._end()
        if w is None:
            return
        detail = {"timeout_s": self.door.policy.pin_timeout_s}
        self.door._deny_counted(w.reader, w.direction, w.person, w.credential, pin_lapsed().reason, side=w.side,
                                detail=detail)

    def _end(self) -> _Waiting | None:
        w, self.waiting = self.waiting, None
        door = self.door
        door.timers.cancel(TIMER)
        if w is not None and door.state == PIN_WAIT:
            door.state = "idle"
        return w


class CheckOnTheLoop:
    """A :class:`~firmware_py.core.ports.PinChecker` that judges at once, on the caller's thread, and hands
    the verdict straight back: for a controller built without a checker (tools, tests). The door's service
    checks on a worker thread instead (:mod:`firmware_py.service.pin_checks`)."""

    def __init__(self, handle):
        self.handle = handle  # the controller's handle(event)

    def check(self, ticket: int, pin: str, pin_hash: str | None, duress_hash: str | None) -> None:
        self.handle(PinChecked(ticket, judge_pin(pin, pin_hash, duress_hash)))
