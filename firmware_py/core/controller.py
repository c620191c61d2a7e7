"""The door's state machine: one event at a time, timers on an injected clock.

Drivers post input events (:mod:`firmware_py.core.inputs`) into one queue; the
service loop (or the simulator) hands them to :meth:`DoorController.handle`
in order and calls :meth:`DoorController.tick` to run timers. Nothing here
touches a pin or a socket: the lock and indicators are ports, the policy is
a pure function, and every outcome is an event stored durably — the decision
before the lock moves.

A passage, in order (DESIGN.md "Entry and exit"):

    idle ─credential→ decision ─allowed→ [PIN, where asked: core/pin_entry.py] → screening ─clear walk-through→ released
         ─door opens→ open ─door closes→ passage stored → idle

The supervisor's commands are run by :mod:`firmware_py.core.command_runner`,
and a database that refuses writes is handled by
:mod:`firmware_py.core.storage_outage`; every denial reason is decided in
:mod:`firmware_py.core.policy`.

Denials end at "decision" or "screening". The exit button bypasses all of it:
the press is recorded and the lock released whether or not the record could be
written, because free egress must never wait on software.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from firmware_py import __version__
from firmware_py.config.schema import Config
from firmware_py.core import idnumber
from firmware_py.core.clock import Clock
from firmware_py.core.clock_guard import ClockGuard
from firmware_py.core.command_runner import CommandRunner
from firmware_py.core.events import redact
from firmware_py.core.inputs import (
    BadgeRead,
    DeviceFault,
    DeviceRecovered,
    DoorClosed,
    DoorOpened,
    ExitButtonPressed,
    GatePassage,
    IdCardRead,
    InputEvent,
    KeypadKeys,
    LinkChanged,
    PinChecked,
    RemoteCommand,
    TamperChanged,
    TimeBeacon,
)
from firmware_py.core.link_watch import LinkWatch
from firmware_py.core.people import ESCORTING_ROLES, Credential, Person
from firmware_py.core.pin_entry import PIN_WAIT, CheckOnTheLoop, PinEntry
from firmware_py.core.policy import (
    DoorContext,
    Entry,
    decide,
    gate_lost,
    pin_required,
    refused_before,
    screened,
    screening_lapsed,
)
from firmware_py.core.ports import EventLog, Indicators, Lock, PinChecker, Roster
from firmware_py.core.reader_guard import ReaderGuard
from firmware_py.core.storage_outage import StorageOutage
from firmware_py.core.timers import Timers
from firmware_py.core.working_hours import WorkingHours
from firmware_py.errors import StoreError

log = logging.getLogger(__name__)

IDLE, SCREENING, RELEASED, OPEN = "idle", "screening", "released", "open"
GATE_DEVICE = "gate"  # the metal-detector gate's name in TamperChanged and DeviceFault
DENIED_SHOWN_S = 3.0  # red light and beeps after a denial
ALARM_SHOWN_S = 10.0  # red light and buzzer after an alarm; the supervisor has the event
PASSAGE_OPEN_KEY = "passage_open"  # the passage in the doorway, kept for a start after a crash
# Rule state a restart must not change, kept in the store beside the events (DESIGN.md "Events"):
SCREENING_KEY = "passage_screening"  # the passage being screened, with its deadline on the wall clock
ESCORTS_KEY = "escort_entries"  # person id -> passage in, of the escorts inside
READER_HOLDS_KEY = "reader_holds"  # reader -> its run of failures and its hold, as wall-clock times
# Events the door acts on only once they are stored: a release always has its record.
STORED_BEFORE_ACTING = frozenset({"access_granted"})


@dataclass
class Passage:
    """The passage under way: who, which way, and how it was authorised."""

    direction: str  # "in" | "out"
    person: Person | None
    credential: Credential | None
    via: str  # "credential" | "exit_button"
    screening: dict = field(default_factory=dict)


class DoorController:
    """One door's state machine: inputs in, decisions, lock moves and stored events out.

    It holds no pin, socket or SQL: everything outside reaches it through ports.

    :param cfg: the door's config (policy, calendar, timings).
    :param roster: who may pass (:class:`~firmware_py.core.ports.Roster`).
    :param event_log: where every outcome is stored, with the occupancy and
        lockdown it changes (:class:`~firmware_py.core.ports.EventLog`).
    :param lock: the door lock relay.
    :param indicators: the lights and buzzer outside and inside.
    :param clock: wall and monotonic time (simulated in tests and scenarios).
    :param secret: the device secret that keys ID-number hashes and command ids.
    :param pin_checker: judges PINs off the loop (:class:`~firmware_py.core.ports.PinChecker`); without
        one, PINs are judged at once on the caller's thread.

    Feed it with :meth:`handle` (one input at a time) and :meth:`tick`; it
    tells :attr:`listeners` of each stored event, :attr:`status_listeners`
    when :meth:`status` may have changed, :attr:`command_results` of each
    command's answer and :attr:`replay_requests` of a ``replay`` command.
    """

    def __init__(self, cfg: Config, *, roster: Roster, event_log: EventLog, lock: Lock, indicators: Indicators,
                 clock: Clock, secret: bytes, pin_checker: PinChecker | None = None):
        self.cfg = cfg
        self.policy = cfg.policy
        self.roster = roster
        self.event_log = event_log
        self.lock = lock
        self.indicators = indicators
        self.clock = clock
        self.secret = secret
        self.hours = WorkingHours(cfg.calendar, cfg.site.timezone)  # or the roster bundle's: _working_hours()
        self._hours_unreadable = False
        self.timers = Timers(clock)
        self.clock_guard = ClockGuard(clock, floor=cfg.policy.clock_floor,
                                      max_backstep_s=cfg.policy.max_clock_backstep_s,
                                      drift_s=cfg.policy.clock_drift_s,
                                      max_divergence_s=cfg.policy.max_clock_divergence_s)
        self.state = IDLE
        self.passage: Passage | None = None
        self.door_open = False
        self.held_open_alarmed = False
        self.door_opened_at: float | None = None
        self.lockdown = bool(event_log.state("lockdown", False))
        self.inside: dict[str, dict] = event_log.state("occupancy", {})  # person_id -> {name, role, since}
        self.escorts: dict[str, datetime] = _escorts_from(event_log.state(ESCORTS_KEY, {}))
        # Kept state changed by an input: stored with the next event, or by the next tick() if none comes
        # first, so keeping it adds no transaction between a credential and its decision.
        self._due_state: dict = {}
        self.faults: dict[str, str] = {}
        self.tampered: set[str] = set()  # devices whose tamper contact is open
        self.reader_guard = ReaderGuard(max_failures=cfg.policy.max_failures, window_s=cfg.policy.failure_window_s,
                                        lockout_s=cfg.policy.reader_lockout_s)
        self.link_watch = LinkWatch(clock=clock, timers=self.timers, bound_s=cfg.mqtt.link_down_after_s,
                                    emit=self._emit)
        self.listeners: list[Callable[[dict], None]] = []  # called with every stored event
        self.status_listeners: list[Callable[[], None]] = []  # called when status() may have changed
        self.storage = StorageOutage(event_log, clock=clock, faults=self.faults, announce=self._announce,
                                     status_changed=self.status_changed)
        self.commands = CommandRunner(self, secret=secret)
        self.pin_entry = PinEntry(self)
        self.pin_checker = pin_checker or CheckOnTheLoop(self.handle)
        self.command_results = self.commands.results  # called with (id, ok, error) of each command
        self.replay_requests = self.commands.replay_requests  # called with from_seq of each replay command
        self._next_overstay_check: datetime | None = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        self.lock.secure()
        self.indicators.show("idle")
        expected, found = self.event_log.anchor(), self.event_log.head()
        self._emit("system", "controller_started",
                   detail={"version": __version__, "config_digest": self.cfg.digest,
                           "lockdown": self.lockdown, "occupancy": len(self.inside)})
        self._check_anchor(expected, found)
        self._complete_interrupted_passage()
        self._check_clock()
        self.reader_guard.restore(self.event_log.state(READER_HOLDS_KEY, {}), self.clock.monotonic(),
                                  self.clock.now(), clock_trusted=self.clock_guard.sane)
        self._resume_screening()
        self._working_hours()  # the hours the applied roster bundle set, as they were before the restart
        self._plan_overstay_check()
        self.status_changed()

    def _check_anchor(self, expected: tuple[int, str] | None, found: tuple[int, str]) -> None:
        """A log shorter than the anchor beside the secret, or with another event there, was removed or replaced."""
        if expected is None or expected[0] <= 0:
            return
        seq, h = expected
        if found[0] >= seq and self.event_log.hash_at(seq) == h:
            return
        detail = {"device": "event_log", "active": True, "expected_seq": seq, "expected_hash": h,
                  "found_seq": found[0], "found_hash": found[1],
                  "problem": "the log is shorter than it was" if found[0] < seq
                  else f"event {seq} is not the one this door stored"}
        log.error("event log: %s (expected seq %s, found %s); raising a tamper alarm", detail["problem"], seq, found[0])
        self._emit("alarm", "tamper", detail=detail)
        self._signal("alarm", "both", ALARM_SHOWN_S)

    def _complete_interrupted_passage(self) -> None:
        """A passage whose door opened before the process died (a crash, a power cut) is recorded now:
        the person went through, and without it their exit would be refused as anti-passback."""
        kept = self.event_log.state(PASSAGE_OPEN_KEY)
        if not kept:
            return
        passage = _passage_from(kept)
        person = passage.person
        log.warning("the door stopped with a passage under way (%s, %s): recorded now", passage.direction,
                    person.person_id if person else "by the exit button")
        self._record_passage(passage, None, at_restart=True)

    def _resume_screening(self) -> None:
        """A walk-through the door was waiting for when it stopped goes on until its first deadline;
        past it (or on a clock that cannot say), it ends as a ``screening_timeout`` now."""
        kept = self.event_log.state(SCREENING_KEY)
        if not kept:
            return
        passage = _passage_from(kept)
        remaining = 0.0
        if self.clock_guard.sane:
            try:
                deadline = datetime.fromisoformat(kept["deadline"])
                remaining = min(self.policy.screening_window_s, (deadline - self.clock.now()).total_seconds())
            except (KeyError, TypeError, ValueError):
                remaining = 0.0
        if remaining > 0:
            log.warning("the door stopped during a walk-through (%s); screening goes on for %.1f s",
                        passage.direction, remaining)
            self.state, self.passage = SCREENING, passage
            self.indicators.show("screening_wait", kept.get("side") or "both")
            self.timers.start("screening", remaining, self._screening_timed_out)
            return
        self._due_state[SCREENING_KEY] = None
        detail = {"screening": "timeout", "window_s": self.policy.screening_window_s, "at_restart": True}
        self._deny(passage.direction, passage.person, passage.credential, screening_lapsed().reason, detail=detail)
        self._alarm("screening_alarm", passage, detail)

    def stop(self, reason: str = "signal") -> None:
        if self.state == OPEN and self.passage:
            # The person is in the doorway: count the passage now, or their exit would later be
            # refused as anti-passback (or their entry forgotten) for a passage that did happen.
            open_s = round(self.clock.monotonic() - self.door_opened_at, 3) if self.door_opened_at else None
            self._record_passage(self.passage, open_s, at_shutdown=True)
            self.state, self.passage = IDLE, None
        self.timers.cancel_all()
        self.lock.secure()
        self.indicators.show("idle")
        self._emit("system", "controller_stopped", detail={"reason": reason})
        self.status_changed()

    # ------------------------------------------------------------------ the loop's entry points

    def handle(self, event: InputEvent) -> None:
        """Handle one input; an unexpected error is stored as a ``controller`` fault, never raised."""
        try:
            self._check_clock()
        except Exception as exc:  # the input is handled all the same: an exit press must still release
            self._loop_fault("checking the clock", exc)
        try:
            handler = self._handlers.get(type(event))
            if handler is None:
                log.warning("ignored an input the controller does not know: %s", type(event).__name__)
                return
            handler(self, event)
            self.timers.run_due()
        except Exception as exc:  # no input, however malformed, may end the door's loop
            self._loop_fault(f"handling {type(event).__name__}", exc)

    def tick(self) -> None:
        """Run due timers and calendar checks; the loop calls this at least once a second. Never raises."""
        try:
            self._keep_due_state()
            self._check_clock()
            self.timers.run_due()
            self._working_hours()  # a bundle applied since the last tick brings its overstay check
            if self._next_overstay_check is not None and self.clock.now() >= self._next_overstay_check:
                self._check_overstay()
                self._plan_overstay_check()
        except Exception as exc:
            self._loop_fault("running timers", exc)

    def _loop_fault(self, doing: str, exc: Exception) -> None:
        """Store an unexpected error as a ``hardware_fault`` of the ``controller``; if even that fails, log it.

        The text is masked (it may quote outside input) and the same error is stored at
        most once a minute, so an error that recurs on every tick cannot flood the log.
        """
        text = redact(f"{type(exc).__name__}: {exc}")[:300]
        if isinstance(exc, StoreError):
            # Storage trouble is already a fault of its own (reported once the store works
            # again); what the technician needs is the plain reason, not a traceback.
            log.error("%s: not done, the database refused it: %s", doing, redact(str(exc))[:300])
            return
        trace = redact("".join(traceback.format_exception(exc)))
        now = self.clock.monotonic()
        last, at = getattr(self, "_last_loop_fault", (None, 0.0))
        if last == (doing, text) and now - at < 60:
            log.debug("%s failed again: %s", doing, text)
            return
        self._last_loop_fault = ((doing, text), now)
        log.error("%s failed; the door goes on: %s", doing, trace)
        try:
            self._emit("alarm", "hardware_fault", detail={"device": "controller", "state": "fault", "fault": text,
                                                          "while": doing})
        except Exception as again:
            log.error("could not store the controller fault either (%s); the door goes on",
                      redact(f"{type(again).__name__}: {again}")[:300])

    def next_wakeup(self) -> float | None:
        """Monotonic time of the next timer (the simulator advances to it)."""
        return self.timers.next_due()

    def next_calendar_check(self) -> datetime | None:
        return self._next_overstay_check

    # ------------------------------------------------------------------ status for the supervisor

    def status(self) -> dict:
        last_seq, last_hash = self.event_log.head()
        return {
            "door": "open" if self.door_open else "closed",
            "lock": "released" if self.lock.is_released else "locked",
            "lockdown": self.lockdown,
            "occupancy": len(self.inside),
            "last_seq": last_seq,
            "last_hash": last_hash,
            "queued": self.event_log.queued(),
            "version": __version__,
            "state": self.state,
            "faults": sorted(self.faults),
        }

    def occupancy(self) -> dict:
        return {"count": len(self.inside),
                "inside": [{"person_id": pid, **info} for pid, info in sorted(self.inside.items())]}

    # ------------------------------------------------------------------ credentials

    def _on_id_card(self, ev: IdCardRead) -> None:
        valid = idnumber.is_valid(ev.id_number)
        credential = Credential("resident_id", idnumber.mask(ev.id_number), valid)
        person = self.roster.by_id_hash(idnumber.id_hash(self.secret, ev.id_number)) if valid else None
        self._on_credential(ev.side, credential, person)

    def _on_badge(self, ev: BadgeRead) -> None:
        self._on_credential(ev.side, Credential("badge", ev.uid), self.roster.by_badge(ev.uid))

    def _on_credential(self, side: str, credential: Credential, person: Person | None) -> None:
        direction = "in" if side == "outside" else "out"
        reader = f"{'id_reader' if credential.kind == 'resident_id' else 'badge_reader'}.{side}"
        busy = self.state != IDLE
        refusal = refused_before(reader_held=self.reader_guard.locked(reader, self.clock.monotonic()),
                                 busy_with_another=busy and not self._is_passing(person))
        if refusal is not None:
            # One passage at a time through one door: a second person's card is recorded, so the
            # register names everyone at the door; the light tells them to wait.
            detail = {"reader": reader} if refusal.reason == "reader_locked" else {"state": self.state}
            self._deny(direction, person, credential, refusal.reason, side=side, detail=detail)
            return
        if busy:  # the card of the person passing, read again: nothing new to record
            log.info("credential of the person passing read again at the %s reader (%s)", side, self.state)
            return
        ctx = DoorContext(inside=frozenset(self.inside), lockdown=self.lockdown,
                          clock_sane=self.clock_guard.sane, screening_available=self._screening_available(),
                          escort_entries=self._escort_entries())
        try:
            decision = decide(person, credential, direction, self.clock.now(), ctx, self.policy,
                              self._working_hours())
        except KeyError as exc:
            # The roster names a schedule group the config no longer has: deny, never crash the loop.
            log.error("cannot judge %s: %s", person.person_id if person else "?", exc)
            error = f"schedule group {person.schedule_group!r} is not configured" if person else str(exc)
            self._deny(direction, person, credential, "outside_working_hours", side=side, detail={"error": error})
            return
        if not decision.allowed:
            self._deny_counted(reader, direction, person, credential, decision.reason, side=side)
            return
        if pin_required(person, direction, self.policy):
            self.pin_entry.wait(side, reader, direction, person, credential, decision.notes)
            return
        self._let_through(side, reader, direction, person, credential, decision.notes)

    def _deny_counted(self, reader: str, direction: str, person: Person | None, credential: Credential,
                      reason: str, *, side: str, detail: dict | None = None) -> None:
        """A denial that counts toward the reader's repeated failures (GB 50396 5.1.5-1)."""
        run = self.reader_guard.denied(reader, credential.masked, self.clock.monotonic())
        self._due_state[READER_HOLDS_KEY] = self.reader_guard.kept(self.clock.monotonic(), self.clock.now())
        self._deny(direction, person, credential, reason, side=side, detail=detail)
        if run:
            self._alarm("repeated_failures", None, {"reader": reader, "count": len(run), "credentials": run,
                                                     "lockout_s": self.policy.reader_lockout_s})

    def _let_through(self, side: str, reader: str, direction: str, person: Person, credential: Credential,
                     notes: tuple[str, ...]) -> None:
        """The person is allowed (and has entered their PIN where asked): on to screening, or released."""
        if self.reader_guard.granted(reader):
            self._due_state[READER_HOLDS_KEY] = self.reader_guard.kept(self.clock.monotonic(), self.clock.now())
        passage = Passage(direction, person, credential, "credential")
        if notes:
            passage.screening["notes"] = list(notes)
        if direction == "out" and self.policy.screen_on_exit and not self._screening_available():
            passage.screening["screening"] = "unavailable"  # exits stay free; the tamper/fault alarm stands
            self._grant(passage)
        elif direction == "in" or self.policy.screen_on_exit:
            self.state, self.passage = SCREENING, passage
            self.indicators.show("screening_wait", side)
            self.timers.start("screening", self.policy.screening_window_s, self._screening_timed_out)
            deadline = self.clock.now() + timedelta(seconds=self.policy.screening_window_s)
            self._due_state[SCREENING_KEY] = {**_kept_passage(passage), "side": side,
                                              "deadline": deadline.isoformat(timespec="milliseconds")}
            self.status_changed()
        else:
            self._grant(passage)

    def _is_passing(self, person: Person | None) -> bool:
        """``person`` is the one whose passage is under way (their card read again)."""
        waiting = self.pin_entry.waiting
        p = self.passage.person if self.passage is not None else waiting.person if waiting is not None else None
        return person is not None and p is not None and p.person_id == person.person_id

    def _escort_entries(self) -> tuple[Entry, ...]:
        return tuple(Entry(pid, self.inside[pid]["role"], at) for pid, at in self.escorts.items() if pid in self.inside)

    def _deny(self, direction: str, person: Person | None, credential: Credential | None, reason: str,
              *, side: str = "both", detail: dict | None = None) -> None:
        self._emit("access", "access_denied", direction=direction, person=person, credential=credential,
                   reason=reason, detail=detail)
        self._signal("denied", side, DENIED_SHOWN_S)

    def _grant(self, passage: Passage) -> None:
        # Stored durably first: a released lock always has its granted event (articles 19, 21).
        self._emit("access", "access_granted", direction=passage.direction, person=passage.person,
                   credential=passage.credential, detail=passage.screening)
        self.lock.release()
        self.state, self.passage = RELEASED, passage
        self.indicators.show("granted", "outside" if passage.direction == "in" else "inside")
        self.timers.start("unlock", self.policy.unlock_window_s, self._unlock_window_over)
        self.status_changed()

    # ------------------------------------------------------------------ screening

    def _on_gate(self, ev: GatePassage) -> None:
        people = max(ev.count, 1)  # a gate without a transit output reports only its alarm
        if self.state == SCREENING and self.passage:
            p = self._end_screening()
            verdict = screened(metal=ev.metal, persons=people)
            if not verdict.allowed:
                detail = {"screening": verdict.reason, "persons": ev.count, "metal": ev.metal}
                self._deny(p.direction, p.person, p.credential, verdict.reason, detail=detail)
                self._alarm("screening_alarm" if ev.metal else "tailgating", p, detail)
            else:
                p.screening.update({"screening": "clear", "persons": ev.count})
                self._grant(p)
            self.status_changed()
            return
        if self.state in (RELEASED, OPEN) and self.passage:
            # Someone walked through behind the person who was let in, or carried metal on a free exit.
            if self.passage.via == "exit_button" and ev.metal:
                self._alarm("screening_alarm", self.passage, {"screening": "metal_detected", "metal": True,
                                                              "persons": ev.count, "via": "exit_button"})
            elif people > 1 or self.passage.screening.get("screening") == "clear":
                self._alarm("tailgating", self.passage, {"persons": ev.count, "metal": ev.metal})
            else:
                self.passage.screening.update({"screening": "metal_detected" if ev.metal else "clear",
                                               "persons": ev.count})
            return
        # A walk-through nobody was authorised for.
        self._alarm("screening_alarm" if ev.metal else "tailgating", None,
                    {"persons": ev.count, "metal": ev.metal, "unexpected": True})

    def _end_screening(self) -> Passage | None:
        """The walk-through awaited is over (screened, timed out, or stopped): the door goes idle,
        and the kept screening is cleared with the next event."""
        p = self.passage
        self.timers.cancel("screening")
        self.state, self.passage = IDLE, None
        self._due_state[SCREENING_KEY] = None
        return p

    def _screening_timed_out(self) -> None:
        p = self._end_screening()
        if p is None:
            return
        detail = {"screening": "timeout", "window_s": self.policy.screening_window_s}
        self._deny(p.direction, p.person, p.credential, screening_lapsed().reason, detail=detail)
        self._alarm("screening_alarm", p, detail)
        self.status_changed()

    def _screening_available(self) -> bool:
        """The gate can screen: its tamper contact is shut and it reports no fault (article 14(3))."""
        return not any(_is_gate(d) for d in (*self.tampered, *self.faults))

    def _gate_out_of_service(self) -> None:
        """The gate went into tamper or fault: a walk-through under way can no longer be trusted."""
        if self.state != SCREENING or self.passage is None:
            return
        p = self._end_screening()
        verdict = gate_lost(p.direction)
        if not verdict.allowed:
            self._deny(p.direction, p.person, p.credential, verdict.reason, detail={"screening": "unavailable"})
        else:
            p.screening["screening"] = "unavailable"
            self._grant(p)
        self.status_changed()

    # ------------------------------------------------------------------ the door

    def _unlock_window_over(self) -> None:
        if self.state == RELEASED:
            self.lock.secure()
            log.info("unlock window over without the door opening; locked again")
            self.state, self.passage = IDLE, None
            self.indicators.show("idle")
            self.status_changed()

    def _on_door_opened(self, ev: DoorOpened) -> None:
        self.door_open = True
        self.door_opened_at = self.clock.monotonic()
        self.held_open_alarmed = False
        self.timers.start("held_open", self.policy.door_held_open_s, self._held_open)
        if self.state == RELEASED:
            self.state = OPEN
            self.timers.cancel("unlock")
            self.lock.secure()  # re-locks as soon as the door shuts behind the person
            self._keep_passage_open(self.passage)
        elif not self.lock.is_released:
            self._alarm("door_forced", None, {"state": self.state})
        self.status_changed()

    def _keep_passage_open(self, p: Passage | None) -> None:
        """Store the passage in the doorway, cleared with its ``passage`` event, so a start after a crash
        records it (:meth:`_complete_interrupted_passage`). Refused by the database: only logged."""
        if p is None:
            return
        try:
            self.event_log.keep_state(PASSAGE_OPEN_KEY, _kept_passage(p))
        except StoreError as exc:
            log.warning("could not keep the passage under way (%s); a crash before the door closes would lose it",
                        exc)

    def _on_door_closed(self, ev: DoorClosed) -> None:
        self.door_open = False
        self.timers.cancel("held_open")
        open_s = round(self.clock.monotonic() - self.door_opened_at, 3) if self.door_opened_at else None
        if self.held_open_alarmed:
            self._alarm("door_held_open", self.passage, {"closed": True, "open_s": open_s})
        if self.state == OPEN and self.passage:
            self._record_passage(self.passage, open_s)
            self.state, self.passage = IDLE, None
            self.indicators.show("idle")
        self.status_changed()

    def _held_open(self) -> None:
        if self.door_open:
            self.held_open_alarmed = True
            self._alarm("door_held_open", self.passage, {"limit_s": self.policy.door_held_open_s})

    def _on_exit_button(self, ev: ExitButtonPressed) -> None:
        # Stored first when the database answers at once, like every release (a crash in
        # between must not leave a release without its record). But nothing may keep the
        # door shut: the service's writes wait at most a few tens of milliseconds for the
        # lock, and a press that cannot be stored is kept in memory with its own time and
        # stored as soon as the database allows (_emit defers it). The lock is released
        # either way.
        try:
            self._emit("access", "exit_button", direction="out")
        except Exception:
            log.exception("could not store the exit-button press; releasing the lock anyway (free egress)")
        finally:
            self.lock.release()
        if self.state == SCREENING:
            self._end_screening()
        elif self.state == PIN_WAIT:  # someone inside opens the door: the one outside waits their turn
            self.pin_entry.cancel("door_busy")
        self.state = RELEASED
        self.passage = Passage("out", None, None, "exit_button")
        self.timers.start("unlock", self.policy.unlock_window_s, self._unlock_window_over)
        self.indicators.show("granted", "inside")
        self.status_changed()

    def _record_passage(self, p: Passage, open_s: float | None, *, at_shutdown: bool = False,
                        at_restart: bool = False) -> None:
        person = p.person
        detail: dict = {"via": p.via, "open_s": open_s}
        if at_shutdown:
            detail["at_shutdown"] = True  # the service stopped with the door open behind the person
        if at_restart:
            detail["at_restart"] = True  # the process died with the door open; recorded at the next start
        if person is None and p.via == "exit_button" and len(self.inside) == 1:
            # Only one person was inside, so the button was theirs.
            pid, info = next(iter(self.inside.items()))
            person = _PublicPerson(pid, info["name"], info["role"])
            detail["attributed"] = True
        state: dict = {PASSAGE_OPEN_KEY: None}  # the kept passage is cleared with its event
        if person is not None:
            if p.direction == "in":
                self.inside[person.person_id] = {"name": person.name, "role": person.role,
                                                 "since": self.clock.now().isoformat(timespec="seconds")}
                if person.role in ESCORTING_ROLES:
                    # The two-person rule counts from the escort's passage in, not the grant:
                    # a grant that lapses unopened escorts nobody.
                    self.escorts[person.person_id] = self.clock.now()
            else:
                self.inside.pop(person.person_id, None)
            state["occupancy"] = self.inside
        if person is not None or p.via == "exit_button":
            # Only escorts still inside are kept: one who walked out escorts nobody.
            self.escorts = {pid: at for pid, at in self.escorts.items() if pid in self.inside}
            state[ESCORTS_KEY] = {pid: at.isoformat(timespec="milliseconds") for pid, at in self.escorts.items()}
        # Stored with its occupancy in one transaction; kept in memory (with it) while the database refuses.
        self._emit("access", "passage", direction=p.direction, person=person, credential=p.credential,
                   detail=detail, state=state)

    # ------------------------------------------------------------------ working hours

    def _working_hours(self) -> WorkingHours:
        """The calendar the door decides on: the hours the station's roster bundle set with the rows
        (:meth:`~firmware_py.core.ports.Roster.calendar`), else the config's ``[calendar]``. When they
        change, the overstay check is planned again on the new windows."""
        try:
            calendar = self.roster.calendar() or self.cfg.calendar
        except Exception as exc:  # the store refuses: the hours in hand stay in force (the roster read says why)
            if not self._hours_unreadable:
                log.warning("the roster's hours cannot be read (%s); deciding on the hours in hand", exc)
            self._hours_unreadable = True
            return self.hours
        self._hours_unreadable = False
        if calendar is not self.hours.calendar:
            self.hours = WorkingHours(calendar, self.cfg.site.timezone)
            self._plan_overstay_check()
        return self.hours

    def _plan_overstay_check(self) -> None:
        groups = sorted(self.hours.calendar.schedules)
        self._next_overstay_check = self.hours.next_window_end(self.clock.now(), groups)

    def _check_overstay(self) -> None:
        now = self.clock.now()
        hours = self._working_hours()
        overstaying = []
        for pid, info in sorted(self.inside.items()):
            person = self.roster.get(pid)
            group = person.schedule_group if person else None
            if group not in hours.calendar.schedules or not hours.is_open(now, group):
                overstaying.append({"person_id": pid, "name": info["name"], "role": info["role"]})
        if overstaying:
            self._emit("alarm", "overstay", detail={"persons": overstaying, "count": len(overstaying)})
            self._signal("alarm", "inside", ALARM_SHOWN_S)

    # ------------------------------------------------------------------ devices, clock, link

    def _on_fault(self, ev: DeviceFault) -> None:
        self.faults[ev.device] = ev.detail
        self._emit("alarm", "hardware_fault", detail={"device": ev.device, "state": "fault", "fault": ev.detail})
        if _is_gate(ev.device):
            self._gate_out_of_service()
        self.status_changed()

    def _on_recovered(self, ev: DeviceRecovered) -> None:
        if self.faults.pop(ev.device, None) is not None:
            self._emit("alarm", "hardware_fault", detail={"device": ev.device, "state": "recovered"})
            self.status_changed()

    def _on_tamper(self, ev: TamperChanged) -> None:
        if ev.active:
            self.tampered.add(ev.device)
        else:
            self.tampered.discard(ev.device)
        self._emit("alarm", "tamper", detail={"device": ev.device, "active": ev.active})
        if ev.active:
            self._signal("alarm", "both", ALARM_SHOWN_S)
            if _is_gate(ev.device):
                self._gate_out_of_service()

    def _check_clock(self) -> None:
        verdict = self.clock_guard.check()
        if verdict.drift is not None:  # steps each under the bound that add up (GB 50396 5.1.3)
            self._emit("alarm", "clock_drift", detail=verdict.drift)
        if verdict.changed and not verdict.sane:
            self._emit("alarm", "clock_unsynchronised", detail=verdict.detail)
        elif verdict.changed:
            log.info("wall clock is sane again")

    def _on_link(self, ev: LinkChanged) -> None:
        self.link_watch.changed(ev.up, ev.detail)

    def _on_time_beacon(self, ev: TimeBeacon) -> None:
        if ev.retained:
            return  # the broker's stored copy may be a whole interval old
        drift = self.clock_guard.compare(ev.ts, drift_s=self.policy.clock_drift_s,
                                         gross_s=self.policy.clock_gross_drift_s)
        if drift:
            self._emit("alarm", "clock_drift", detail=drift)
        self._check_clock()

    # ------------------------------------------------------------------ commands

    def set_lockdown(self, on: bool, by: str) -> None:
        if on == self.lockdown:
            return
        self.lockdown = on
        self._emit("system", "lockdown_on" if on else "lockdown_off", detail={"by": by}, state={"lockdown": on})
        if on:
            # Lockdown stops entries only: an exit under way (screening, released, door open) completes.
            if self.state == SCREENING and self.passage and self.passage.direction == "in":
                self._end_screening()
            elif self.state == PIN_WAIT:
                self.pin_entry.cancel("lockdown")
            p = self.passage
            if self.state == RELEASED and p and p.via == "credential" and p.direction == "in":
                self.timers.cancel("unlock")
                self.lock.secure()
                self.state, self.passage = IDLE, None
            self.indicators.show("denied", "outside")
        else:
            self.indicators.show("idle")
        self.status_changed()

    # ------------------------------------------------------------------ storing events

    def _alarm(self, type_: str, p: Passage | None, detail: dict) -> None:
        self._emit("alarm", type_, direction=p.direction if p else None, person=p.person if p else None,
                   credential=p.credential if p else None, detail=detail)
        self._signal("alarm", "both", ALARM_SHOWN_S)

    def _signal(self, pattern: str, side: str, seconds: float) -> None:
        """Show a denial or alarm for a while, then go back to what the door is doing."""
        self.indicators.show(pattern, side)
        self.timers.start("indicators", seconds, self._indicators_back)

    def _indicators_back(self) -> None:
        if self.state == IDLE:
            self.indicators.show("idle")
            if self.lockdown:
                self.indicators.show("denied", "outside")

    def _keep_due_state(self) -> None:
        """Store the kept state no event has carried yet (a screening begun); retried at every tick.

        Without waiting for the disk: a killed process keeps it, and a power cut once the next event
        (a grant, a denial) is stored; what a power cut loses before that is a walk-through not yet
        let through, so the door stays secured and the person presents the card again."""
        while self._due_state:
            key, value = next(iter(self._due_state.items()))
            try:
                self.event_log.keep_state(key, value, durable=False)
            except StoreError as exc:
                log.debug("could not keep %s yet: %s", key, exc)
                return
            if self._due_state.get(key) is value:
                del self._due_state[key]

    def _emit(self, category: str, type_: str, *, direction: str | None = None, person=None,
              credential: Credential | None = None, reason: str | None = None, detail: dict | None = None,
              state: dict | None = None, command_key: str | None = None) -> dict:
        """Store an event (after any kept in memory), with the state it changes, and tell the listeners.

        When the database refuses (locked, disk full, read-only) the door keeps
        going: an event it acts on only once stored (a grant) raises
        :class:`StoreError`, so the lock stays secured; any other is kept in
        memory with its own time and its state, and stored as soon as the
        database allows, after a ``hardware_fault`` for device ``storage``.
        """
        due = self._due_state
        if due:
            state = {**due, **(state or {})}
        fields = {"direction": direction, "person": person.public() if person is not None else None,
                  "credential": credential.public() if credential is not None else None,
                  "reason": reason, "detail": detail, "state": state, "command_key": command_key}
        event = self.storage.record(category, type_, fields, before_acting=type_ in STORED_BEFORE_ACTING)
        if due:
            self._due_state = {}  # stored, or kept in the backlog with the event
        return event

    emit = _emit  # for the command runner

    def store_backlog(self) -> None:
        """Store the events kept in memory while the database refused them (the service loop retries)."""
        self.storage.store_backlog()

    def _announce(self, events: list[dict]) -> None:
        """Tell the listeners of events just stored."""
        for event in events:
            for listener in self.listeners:
                try:
                    listener(event)
                except Exception:  # a listener (printer, MQTT wake-up) must never stop the door
                    log.exception("event listener failed")

    def status_changed(self) -> None:
        for listener in self.status_listeners:
            try:
                listener()
            except Exception:
                log.exception("status listener failed")

    _handlers: dict = {
        IdCardRead: _on_id_card,
        BadgeRead: _on_badge,
        KeypadKeys: lambda self, ev: self.pin_entry.keys(ev),
        PinChecked: lambda self, ev: self.pin_entry.checked(ev),
        GatePassage: _on_gate,
        DoorOpened: _on_door_opened,
        DoorClosed: _on_door_closed,
        ExitButtonPressed: _on_exit_button,
        DeviceFault: _on_fault,
        DeviceRecovered: _on_recovered,
        TamperChanged: _on_tamper,
        RemoteCommand: lambda self, ev: self.commands.handle(ev),
        LinkChanged: _on_link,
        TimeBeacon: _on_time_beacon,
    }


@dataclass(frozen=True)
class _PublicPerson:
    person_id: str
    name: str
    role: str

    def public(self) -> dict:
        return {"person_id": self.person_id, "name": self.name, "role": self.role}


def _kept_passage(p: Passage) -> dict:
    """A passage as the store keeps it (person and credential in their public form only)."""
    return {"direction": p.direction, "via": p.via, "screening": p.screening,
            "person": p.person.public() if p.person is not None else None,
            "credential": p.credential.public() if p.credential is not None else None}


def _passage_from(kept: dict) -> Passage:
    person = _PublicPerson(**kept["person"]) if kept.get("person") else None
    credential = Credential(**kept["credential"]) if kept.get("credential") else None
    return Passage(kept["direction"], person, credential, kept["via"], dict(kept.get("screening") or {}))


def _escorts_from(kept) -> dict[str, datetime]:
    """The kept escort passages; an entry that is not a person id and a time is left out."""
    escorts = {}
    for pid, at in (kept or {}).items() if isinstance(kept, dict) else ():
        try:
            escorts[str(pid)] = datetime.fromisoformat(at)
        except (TypeError, ValueError):
            log.warning("kept escort passage of %s is not a time (%r); left out", pid, at)
    return escorts


def _is_gate(device: str) -> bool:
    """The metal-detector gate, or a part of it (``gate``, ``gate.<part>``)."""
    return device == GATE_DEVICE or device.startswith(GATE_DEVICE + ".")

