"""The access policy: may this person pass this door, this way, now?

A pure function over plain data: the roster row, the credential as read, the
direction, the time, what the controller knows about the door
(:class:`DoorContext`), the ``[policy]`` settings and the working-hours
calendar. No clock is read and nothing is written; the controller records the
:class:`Decision` as an ``access_granted`` or ``access_denied`` event.

A denial carries exactly one reason. When several rules fail, the earliest in
this order of precedence wins (``PRECEDENCE``):

1. ``invalid_id_number`` -- the ID number's check digit, region or birth date
   is impossible. Checked before the roster: an impossible number can never be
   in the roster, so "unknown" would hide a forged or misread card.
2. ``unknown_credential`` -- no roster row matches the credential.
3. ``revoked`` -- the roster row is revoked.
4. ``clock_unsynchronised`` -- the controller cannot trust its clock, so every
   rule below that depends on the date or time would give a wrong answer (a Pi
   that booted at 1970 would call everyone "not yet valid").
5. ``not_yet_valid`` / ``expired`` -- outside valid_from..valid_until, whole
   days inclusive in the site's time zone (valid_until 23:59:59.999 is valid,
   the next day 00:00 is expired). The two cannot both apply.
6. ``review_missing`` -- no review date, or one later than today (article 11).
7. ``training_incomplete`` -- training hours below ``min_training_hours``.
8. ``commitment_missing`` -- no signed confidentiality commitment, or one dated
   later than today.
9. ``lockdown`` -- the door is in lockdown.
10. ``screening_unavailable`` -- the metal-detector gate is in tamper or in
    fault, so nobody entering can be screened (article 14(3)).
11. ``non_working_day`` -- the person's schedule group does not work today.
12. ``outside_working_hours`` -- today is worked, but not at this time.
13. ``anti_passback`` -- entering while already inside (``hard``: denied;
    ``soft``: allowed with the note ``anti_passback``; ``off``: ignored).
14. ``escort_required`` -- a visitor or inspector enters only while a staff
    member or supervisor is inside who passed in through this door at most
    ``escort_window_s`` before (two-person rule, articles 26-27): the escort's
    passage counts, not the grant, so a grant that lapsed unopened escorts
    nobody; one who has walked out again escorts nobody; an inspector is never
    an escort.

The person's identity (1-3) and the trust in the clock (4) come first, then
the person's standing (5-8), the state of the door (9-10) and the time of day
(11-12), so a denial names what the person or the
roster manager must fix first. Nobody is exempt from vetting; supervisors are
judged against their own (usually wider) schedule group like everyone else.

**Leaving** (direction ``out``, the credential shown at the inside reader) is
judged only by ``EXIT_PRECEDENCE``: ``invalid_id_number``,
``unknown_credential`` and ``anti_passback`` (leaving while not recorded
inside). Lockdown, an unavailable gate, revocation, validity, vetting, the calendar
and the escort rule never keep anyone in the room: people must be able to leave after hours,
after their permit ran out, or while the door is locked down, and fire safety
needs free egress (the exit button releases the lock whatever software says).
Reading the card on the way out still matters: it closes the person's visit in
the register and passes them to exit screening.

**The door's own reasons** are decided here too, by the functions the
controller calls around :func:`decide`: before it, :func:`refused_before`
(``reader_locked``: the reader is held after repeated failures, whichever way;
then ``door_busy``: someone else's passage is under way); after it, the gate's
verdict, :func:`screened` (``metal_detected``, then ``tailgating``), or its
absence, :func:`screening_lapsed` (``screening_timeout``) and
:func:`gate_lost` (``screening_unavailable`` for an entry whose walk-through
the gate can no longer screen; an exit goes on unscreened). Every reason is
declared once, with its label, in :mod:`firmware_py.core.reasons`.

**The second factor** (GB/T 37078 §6.3) comes after an allowed entry:
:func:`pin_required` says whether this person must also enter their PIN at this
door (the door asks it of everyone, or of their schedule group, or of their role;
never on the way out, so that nobody is kept in), and :func:`pin_checked` /
:func:`pin_lapsed` turn the PIN entered, or none in ``pin_timeout_s``, into the
decision (``pin_incorrect``, ``pin_timeout``). A duress PIN is allowed like the
right one; the controller raises the ``duress`` alarm beside the grant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from firmware_py.config.schema import PolicyConfig
from firmware_py.core.people import ESCORTED_ROLES, ESCORTING_ROLES, Credential, Person
from firmware_py.core.pin import WRONG
from firmware_py.core.reasons import AFTER_PIN, AFTER_SCREENING, BEFORE_POLICY
from firmware_py.core.working_hours import WorkingHours

PRECEDENCE: tuple[str, ...] = (
    "invalid_id_number",
    "unknown_credential",
    "revoked",
    "clock_unsynchronised",
    "not_yet_valid",
    "expired",
    "review_missing",
    "training_incomplete",
    "commitment_missing",
    "lockdown",
    "screening_unavailable",
    "non_working_day",
    "outside_working_hours",
    "anti_passback",
    "escort_required",
)
EXIT_PRECEDENCE: tuple[str, ...] = ("invalid_id_number", "unknown_credential", "anti_passback")
REASONS: tuple[str, ...] = PRECEDENCE  # every denial reason decide() can give
DOOR_REASONS: tuple[str, ...] = (*BEFORE_POLICY, *AFTER_SCREENING, *AFTER_PIN)  # the door's own, decided below

ANTI_PASSBACK_NOTE = "anti_passback"  # on a grant under soft anti-passback


@dataclass(frozen=True)
class Entry:
    """A passage in through this door: who (``person_id``, ``role``) and when (``at``, the door closing behind)."""

    person_id: str
    role: str
    at: datetime


@dataclass(frozen=True)
class DoorContext:
    """What the controller knows about the door when the credential is read.

    ``inside``: the person ids currently recorded inside the room.
    ``lockdown``: a supervisor put the door in lockdown.
    ``clock_sane``: the wall clock is synchronised (not before the clock floor,
    no large step either way).
    ``screening_available``: the metal-detector gate is neither in tamper nor
    in fault, so an entry can be screened.
    ``escort_entries``: the passages in (:class:`Entry`) of people who may
    escort, as the door recorded them; only those still ``inside`` count.
    """

    inside: frozenset[str] = frozenset()
    lockdown: bool = False
    clock_sane: bool = True
    screening_available: bool = True
    escort_entries: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class Decision:
    """The policy's answer: allowed, or denied with exactly one reason.

    ``notes`` record what was let through but is worth auditing (e.g.
    ``anti_passback`` under the soft setting).
    """

    allowed: bool
    reason: str | None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.allowed and self.reason is not None:
            raise ValueError(f"an allowed decision has no reason, got {self.reason!r}")
        if not self.allowed and not self.reason:
            raise ValueError("a denial needs a reason")

    @classmethod
    def allow(cls, notes: tuple[str, ...] = ()) -> Decision:
        return cls(True, None, tuple(notes))

    @classmethod
    def deny(cls, reason: str, notes: tuple[str, ...] = ()) -> Decision:
        return cls(False, reason, tuple(notes))


def _validity_reason(person: Person, at: datetime, hours: WorkingHours) -> str | None:
    today = at.astimezone(hours.tz).date()
    if today < person.valid_from:
        return "not_yet_valid"
    if today > person.valid_until:
        return "expired"
    return None


def _vetting_reason(person: Person, at: datetime, policy: PolicyConfig, hours: WorkingHours) -> str | None:
    today = at.astimezone(hours.tz).date()
    if person.review_date is None or person.review_date > today:
        return "review_missing"
    if person.training_hours < policy.min_training_hours:
        return "training_incomplete"
    if person.commitment_date is None or person.commitment_date > today:
        return "commitment_missing"
    return None


def _escorted(at: datetime, ctx: DoorContext, policy: PolicyConfig) -> bool:
    """Someone who may escort is inside and passed in at most ``escort_window_s`` before ``at`` (inclusive)."""
    window = timedelta(seconds=policy.escort_window_s)
    return any(e.role in ESCORTING_ROLES and e.person_id in ctx.inside and timedelta(0) <= at - e.at <= window
               for e in ctx.escort_entries)


def _anti_passback(breach: bool, policy: PolicyConfig) -> tuple[str | None, tuple[str, ...]]:
    """(denial reason, notes) for an anti-passback breach under the configured mode."""
    if not breach or policy.anti_passback == "off":
        return None, ()
    if policy.anti_passback == "soft":
        return None, (ANTI_PASSBACK_NOTE,)
    return "anti_passback", ()


def decide(person: Person | None, credential: Credential, direction: str, at: datetime,
           ctx: DoorContext, policy: PolicyConfig, hours: WorkingHours) -> Decision:
    """Decide one presentation of ``credential`` (matched to ``person``, or None) at ``at``.

    ``direction`` is ``in`` (outside reader) or ``out`` (inside reader).
    Raises ValueError for a naive ``at`` or an unknown direction, and KeyError
    when an entering person's schedule group is not in the calendar (the roster
    must only name configured groups).
    """
    if direction not in ("in", "out"):
        raise ValueError(f"direction must be 'in' or 'out', not {direction!r}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at.isoformat()} has no time zone; decide() needs a timezone-aware time")

    if not credential.valid:
        return Decision.deny("invalid_id_number")
    if person is None:
        return Decision.deny("unknown_credential")

    if direction == "out":
        reason, notes = _anti_passback(person.person_id not in ctx.inside, policy)
        return Decision.deny(reason) if reason else Decision.allow(notes)

    if person.status != "active":
        return Decision.deny("revoked")
    reason = (("clock_unsynchronised" if not ctx.clock_sane else None)
              or _validity_reason(person, at, hours)
              or _vetting_reason(person, at, policy, hours)
              or ("lockdown" if ctx.lockdown else None)
              or ("screening_unavailable" if not ctx.screening_available else None)
              or hours.closed_reason(at, person.schedule_group))
    if reason:
        return Decision.deny(reason)

    reason, notes = _anti_passback(person.person_id in ctx.inside, policy)
    if reason:
        return Decision.deny(reason)
    if person.role in ESCORTED_ROLES and not _escorted(at, ctx, policy):
        return Decision.deny("escort_required", notes)
    return Decision.allow(notes)


def refused_before(*, reader_held: bool, busy_with_another: bool) -> Decision | None:
    """The door's refusal before the person is judged, or None: a held reader refuses every card
    (``reader_locked``), and one passage at a time goes through the door (``door_busy``)."""
    if reader_held:
        return Decision.deny("reader_locked")
    if busy_with_another:
        return Decision.deny("door_busy")
    return None


def screened(*, metal: bool, persons: int) -> Decision:
    """The gate's verdict on the walk-through of a person let through to screening (article 14(3)):
    metal, then more than one person walking through."""
    if metal:
        return Decision.deny("metal_detected")
    if persons > 1:
        return Decision.deny("tailgating")
    return Decision.allow()


def screening_lapsed() -> Decision:
    """Nobody walked through the gate within ``screening_window_s``."""
    return Decision.deny("screening_timeout")


def gate_lost(direction: str) -> Decision:
    """The gate went into tamper or fault during a walk-through: an entry cannot be screened,
    an exit goes on unscreened (free egress)."""
    return Decision.deny("screening_unavailable") if direction == "in" else Decision.allow()


def pin_required(person: Person, direction: str, policy: PolicyConfig) -> bool:
    """Whether ``person``, allowed through, must enter their PIN as well: on the way in only, where the
    door asks everyone (``pin_required``), or their schedule group or role is listed."""
    return direction == "in" and (policy.pin_required or person.schedule_group in policy.pin_schedule_groups
                                  or person.role in policy.pin_roles)


def pin_checked(verdict: str) -> Decision:
    """The PIN entered (:func:`firmware_py.core.pin.judge_pin`'s verdict): the right one or the duress one
    lets the person on, any other is ``pin_incorrect``."""
    return Decision.deny("pin_incorrect") if verdict == WRONG else Decision.allow()


def pin_lapsed() -> Decision:
    """No PIN was ended with ``#`` within ``pin_timeout_s``."""
    return Decision.deny("pin_timeout")
