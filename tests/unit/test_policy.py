"""The access policy: every denial reason, their precedence, and free egress."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from firmware_py.config.schema import WEEKDAYS, TimeWindow, load_config
from firmware_py.core import events
from firmware_py.core import policy as policy_module
from firmware_py.core import reasons as reasons_module
from firmware_py.core.people import Credential, Person
from firmware_py.core.policy import (
    DOOR_REASONS,
    EXIT_PRECEDENCE,
    PRECEDENCE,
    REASONS,
    Decision,
    DoorContext,
    Entry,
    decide,
    gate_lost,
    refused_before,
    screened,
    screening_lapsed,
)
from firmware_py.core.working_hours import WorkingHours
from tests.fixtures.constants import EXAMPLE

SHANGHAI = ZoneInfo("Asia/Shanghai")

MONDAY = date(2026, 11, 23)
PLAIN_SATURDAY = date(2026, 11, 21)
NATIONAL_DAY_THURSDAY = date(2026, 10, 1)
ADJUSTED_SUNDAY = date(2026, 9, 20)
ADJUSTED_SATURDAY = date(2026, 10, 10)

ID_CARD = Credential("resident_id", "110101********001X")
BAD_ID_CARD = Credential("resident_id", "110101********0012", valid=False)
BADGE = Credential("badge", "04A1B2C3D4")
QUIET_DOOR = DoorContext()  # nobody inside, no lockdown, clock synchronised, gate working


def sh(d: date, hh: int, mm: int = 0, ss: int = 0, us: int = 0) -> datetime:
    return datetime.combine(d, time(hh, mm, ss, us), tzinfo=SHANGHAI)


MONDAY_9 = sh(MONDAY, 9)


def person(**changes) -> Person:
    """A fictional, fully vetted staff member in the office group, valid all of 2026."""
    base = Person(
        person_id="P001", name="测试员甲", role="staff", organisation="Test Archive", employer_type="own",
        id_hash="0" * 64, id_masked="110101********001X", badge_uids=("04A1B2C3D4",),
        review_date=date(2026, 1, 5), training_hours=48, commitment_date=date(2026, 1, 6),
        valid_from=date(2026, 1, 1), valid_until=date(2026, 12, 31), schedule_group="office",
    )
    return replace(base, **changes)


def visitor(**changes) -> Person:
    return person(person_id="V001", role="visitor", **changes)


@pytest.fixture(scope="module")
def config():
    return load_config(EXAMPLE)


@pytest.fixture(scope="module")
def pol(config):
    return config.policy  # anti_passback = "hard", escort_window_s = 60, min_training_hours = 40


@pytest.fixture(scope="module")
def hours(config):
    """The example 2026 calendar plus "always", open all day every day (to test validity at midnight)."""
    always = {day: (TimeWindow(time(0), time(23, 59, 59, 999999)),) for day in WEEKDAYS}
    calendar = replace(config.calendar, schedules=dict(config.calendar.schedules) | {"always": always})
    return WorkingHours(calendar, SHANGHAI)


@pytest.fixture
def enter(pol, hours):
    """decide() for an entry; keyword arguments override the defaults."""
    def _enter(p=None, *, credential=ID_CARD, at=MONDAY_9, ctx=QUIET_DOOR, policy=pol, direction="in"):
        return decide(p, credential, direction, at, ctx, policy, hours)
    return _enter


@pytest.fixture
def leave(enter):
    def _leave(p, **kw):
        kw.setdefault("ctx", DoorContext(inside=frozenset({p.person_id}) if p else frozenset()))
        return enter(p, direction="out", **kw)
    return _leave


# ------------------------------------------------------------------ the reasons themselves


def test_a_vetted_staff_member_enters_on_a_monday_morning(enter):
    assert enter(person()) == Decision(True, None, ())


def test_an_impossible_id_number_is_denied_as_invalid(enter):
    assert enter(None, credential=BAD_ID_CARD).reason == "invalid_id_number"


def test_a_credential_not_in_the_roster_is_unknown(enter):
    assert enter(None, credential=BADGE).reason == "unknown_credential"


def test_a_revoked_person_is_denied(enter):
    assert enter(person(status="revoked", revoked_at=sh(MONDAY, 8), revoked_reason="left")).reason == "revoked"


def test_a_person_before_valid_from_is_not_yet_valid(enter):
    assert enter(person(valid_from=date(2026, 11, 24))).reason == "not_yet_valid"


def test_a_person_after_valid_until_is_expired(enter):
    assert enter(person(valid_until=date(2026, 11, 22))).reason == "expired"


def test_a_person_without_review_date_is_denied_review_missing(enter):
    assert enter(person(review_date=None)).reason == "review_missing"


def test_a_review_dated_in_the_future_counts_as_missing(enter):
    assert enter(person(review_date=date(2026, 11, 24))).reason == "review_missing"


def test_training_below_the_minimum_is_incomplete(enter):
    assert enter(person(training_hours=39.5)).reason == "training_incomplete"


def test_training_of_exactly_the_minimum_is_enough(enter):
    assert enter(person(training_hours=40)).allowed


def test_a_person_without_signed_commitment_is_denied(enter):
    assert enter(person(commitment_date=None)).reason == "commitment_missing"


def test_a_commitment_dated_in_the_future_counts_as_missing(enter):
    assert enter(person(commitment_date=date(2026, 11, 24))).reason == "commitment_missing"


def test_lockdown_denies_entry(enter):
    assert enter(person(), ctx=DoorContext(lockdown=True)).reason == "lockdown"


def test_an_entry_is_refused_while_the_gate_cannot_screen(enter):
    assert enter(person(), ctx=DoorContext(screening_available=False)).reason == "screening_unavailable"


def test_lockdown_beats_screening_unavailable(enter):
    p, credential, at, ctx = failing("lockdown", "screening_unavailable")
    assert enter(p, credential=credential, at=at, ctx=ctx).reason == "lockdown"


def test_an_unsynchronised_clock_denies_entry(enter):
    assert enter(person(), ctx=DoorContext(clock_sane=False)).reason == "clock_unsynchronised"


def test_entry_on_a_plain_saturday_is_a_non_working_day(enter):
    assert enter(person(), at=sh(PLAIN_SATURDAY, 9)).reason == "non_working_day"


def test_entry_at_lunch_is_outside_working_hours(enter):
    assert enter(person(), at=sh(MONDAY, 12, 30)).reason == "outside_working_hours"


def test_entering_while_already_inside_is_anti_passback(enter):
    assert enter(person(), ctx=DoorContext(inside=frozenset({"P001"}))).reason == "anti_passback"


def test_a_visitor_without_an_escort_is_denied(enter):
    assert enter(visitor()).reason == "escort_required"


def test_an_inspector_without_an_escort_is_denied(enter):
    assert enter(person(role="inspector")).reason == "escort_required"


# ------------------------------------------------------------------ precedence


def failing(*reasons: str):
    """(person, credential, at, ctx) for an entry that breaks exactly the rules named."""
    at = sh(PLAIN_SATURDAY, 9) if "non_working_day" in reasons else (
        sh(MONDAY, 12, 30) if "outside_working_hours" in reasons else MONDAY_9)
    today = at.date()
    changes: dict = {}
    if "revoked" in reasons:
        changes["status"] = "revoked"
    if "not_yet_valid" in reasons:
        changes["valid_from"] = today + timedelta(days=1)
    if "expired" in reasons:
        changes["valid_until"] = today - timedelta(days=1)
    if "review_missing" in reasons:
        changes["review_date"] = None
    if "training_incomplete" in reasons:
        changes["training_hours"] = 8
    if "commitment_missing" in reasons:
        changes["commitment_date"] = None
    if "escort_required" in reasons:
        changes["role"] = "visitor"
    p = None if "unknown_credential" in reasons else person(**changes)
    credential = BAD_ID_CARD if "invalid_id_number" in reasons else ID_CARD
    ctx = DoorContext(
        inside=frozenset({"P001"}) if "anti_passback" in reasons else frozenset(),
        lockdown="lockdown" in reasons,
        screening_available="screening_unavailable" not in reasons,
        clock_sane="clock_unsynchronised" not in reasons,
        escort_entries=() if "escort_required" in reasons else (Entry("P009", "staff", at - timedelta(seconds=10)),),
    )
    if "escort_required" not in reasons:
        ctx = replace(ctx, inside=ctx.inside | {"P009"})
    return p, credential, at, ctx


@pytest.mark.parametrize("reason", PRECEDENCE)
def test_each_rule_broken_alone_gives_its_own_reason(enter, reason):
    p, credential, at, ctx = failing(reason)
    assert enter(p, credential=credential, at=at, ctx=ctx).reason == reason


ADJACENT = [(a, b) for a, b in zip(PRECEDENCE, PRECEDENCE[1:]) if {a, b} != {"not_yet_valid", "expired"}]


@pytest.mark.parametrize("first, second", ADJACENT, ids=[f"{a} beats {b}" for a, b in ADJACENT])
def test_of_two_broken_rules_the_earlier_one_is_reported(enter, first, second):
    p, credential, at, ctx = failing(first, second)
    assert enter(p, credential=credential, at=at, ctx=ctx).reason == first


def test_every_rule_broken_at_once_reports_invalid_id_number(enter):
    p, credential, at, ctx = failing(*(r for r in PRECEDENCE if r != "not_yet_valid"))
    assert enter(p, credential=credential, at=at, ctx=ctx).reason == "invalid_id_number"


def test_revoked_beats_lockdown(enter):
    p, credential, at, ctx = failing("revoked", "lockdown")
    assert enter(p, credential=credential, at=at, ctx=ctx).reason == "revoked"


def test_expired_beats_outside_working_hours(enter):
    p, credential, at, ctx = failing("expired", "outside_working_hours")
    assert enter(p, credential=credential, at=at, ctx=ctx).reason == "expired"


def test_training_incomplete_beats_non_working_day(enter):
    p, credential, at, ctx = failing("training_incomplete", "non_working_day")
    assert enter(p, credential=credential, at=at, ctx=ctx).reason == "training_incomplete"


def test_clock_unsynchronised_beats_escort_required(enter):
    p, credential, at, ctx = failing("clock_unsynchronised", "escort_required")
    assert enter(p, credential=credential, at=at, ctx=ctx).reason == "clock_unsynchronised"


# ------------------------------------------------------------------ validity at midnight


def test_validity_holds_until_the_last_moment_of_valid_until_in_shanghai(enter):
    p = person(valid_until=MONDAY, schedule_group="always")
    assert enter(p, at=sh(MONDAY, 23, 59, 59, 999000)).allowed


def test_validity_ends_at_midnight_after_valid_until_in_shanghai(enter):
    p = person(valid_until=MONDAY, schedule_group="always")
    assert enter(p, at=sh(MONDAY + timedelta(days=1), 0)).reason == "expired"


def test_validity_last_moment_given_in_utc_is_still_valid(enter):
    p = person(valid_until=MONDAY, schedule_group="always")
    assert enter(p, at=datetime(2026, 11, 23, 15, 59, 59, 999000, tzinfo=UTC)).allowed


def test_a_utc_time_on_the_same_utc_date_is_expired_once_shanghai_passed_midnight(enter):
    p = person(valid_until=MONDAY, schedule_group="always")
    assert enter(p, at=datetime(2026, 11, 23, 16, 0, tzinfo=UTC)).reason == "expired"


def test_valid_from_starts_at_midnight_in_shanghai(enter):
    p = person(valid_from=MONDAY, schedule_group="always")
    assert enter(p, at=sh(MONDAY - timedelta(days=1), 23, 59, 59)).reason == "not_yet_valid"
    assert enter(p, at=datetime(2026, 11, 22, 16, 0, tzinfo=UTC)).allowed  # 00:00 Monday in Shanghai


# ------------------------------------------------------------------ the calendar through the policy


def test_entry_on_a_holiday_thursday_is_a_non_working_day(enter):
    assert enter(person(), at=sh(NATIONAL_DAY_THURSDAY, 10)).reason == "non_working_day"


def test_entry_on_an_adjusted_working_sunday_is_allowed(enter):
    assert enter(person(), at=sh(ADJUSTED_SUNDAY, 9)).allowed


def test_entry_on_an_adjusted_working_saturday_afternoon_is_allowed(enter):
    assert enter(person(), at=sh(ADJUSTED_SATURDAY, 14)).allowed


@pytest.mark.parametrize("hh, mm, ss, allowed", [
    (8, 29, 59, False), (8, 30, 0, True), (12, 0, 0, False), (14, 0, 0, True), (17, 30, 0, False),
], ids=["08:29:59 denied", "08:30:00 allowed", "12:00:00 denied", "14:00:00 allowed", "17:30:00 denied"])
def test_entry_is_allowed_exactly_inside_the_office_windows(enter, hh, mm, ss, allowed):
    assert enter(person(), at=sh(MONDAY, hh, mm, ss)).allowed is allowed


def test_entry_time_given_in_utc_is_judged_in_shanghai(enter):
    assert enter(person(), at=datetime(2026, 11, 23, 0, 30, tzinfo=UTC)).allowed
    assert enter(person(), at=datetime(2026, 11, 23, 0, 29, 59, tzinfo=UTC)).reason == \
        "outside_working_hours"


def test_a_supervisor_in_the_extended_group_enters_at_18_30(enter):
    assert enter(person(role="supervisor", schedule_group="extended"), at=sh(MONDAY, 18, 30)).allowed


def test_a_staff_member_in_the_office_group_is_refused_at_18_30(enter):
    assert enter(person(), at=sh(MONDAY, 18, 30)).reason == "outside_working_hours"


def test_a_supervisor_is_not_exempt_from_vetting(enter):
    p = person(role="supervisor", schedule_group="extended", training_hours=0)
    assert enter(p, at=sh(MONDAY, 18, 30)).reason == "training_incomplete"


def test_a_supervisor_is_refused_on_a_holiday(enter):
    p = person(role="supervisor", schedule_group="extended")
    assert enter(p, at=sh(NATIONAL_DAY_THURSDAY, 10)).reason == "non_working_day"


# ------------------------------------------------------------------ anti-passback modes


def test_soft_anti_passback_allows_a_second_entry_with_a_note(enter, pol):
    d = enter(person(), ctx=DoorContext(inside=frozenset({"P001"})), policy=replace(pol, anti_passback="soft"))
    assert d == Decision(True, None, ("anti_passback",))


def test_anti_passback_off_allows_a_second_entry_without_a_note(enter, pol):
    d = enter(person(), ctx=DoorContext(inside=frozenset({"P001"})), policy=replace(pol, anti_passback="off"))
    assert d == Decision(True, None, ())


def test_soft_anti_passback_note_stays_on_a_later_escort_denial(enter, pol):
    d = enter(visitor(), ctx=DoorContext(inside=frozenset({"V001"})), policy=replace(pol, anti_passback="soft"))
    assert d == Decision(False, "escort_required", ("anti_passback",))


def test_someone_else_inside_does_not_trigger_anti_passback(enter):
    assert enter(person(), ctx=DoorContext(inside=frozenset({"P002"}))).allowed


# ------------------------------------------------------------------ escort window


def escorted_at(seconds_before: float, *, role: str = "staff", inside: bool = True) -> DoorContext:
    """A door whose escort P009 passed in ``seconds_before`` the visitor's card, and is still inside."""
    entry = Entry("P009", role, MONDAY_9 - timedelta(seconds=seconds_before))
    return DoorContext(inside=frozenset({"P009"} if inside else ()), escort_entries=(entry,))


def test_a_visitor_enters_exactly_at_the_end_of_the_escort_window(enter):
    assert enter(visitor(), ctx=escorted_at(60)).allowed


def test_a_visitor_one_microsecond_after_the_escort_window_is_denied(enter):
    assert enter(visitor(), ctx=escorted_at(60.000001)).reason == "escort_required"


def test_a_visitor_enters_at_the_same_instant_as_the_escort(enter):
    assert enter(visitor(), ctx=escorted_at(0)).allowed


def test_an_escort_entry_after_the_visitors_time_does_not_count(enter):
    assert enter(visitor(), ctx=escorted_at(-1)).reason == "escort_required"


def test_an_inspector_enters_within_the_escort_window(enter):
    assert enter(person(role="inspector"), ctx=escorted_at(30)).allowed


def test_an_escort_who_walked_out_again_escorts_nobody(enter):
    assert enter(visitor(), ctx=escorted_at(30, inside=False)).reason == "escort_required"


def test_a_supervisor_inside_escorts_a_visitor(enter):
    assert enter(visitor(), ctx=escorted_at(30, role="supervisor")).allowed


def test_an_inspector_inside_is_no_escort(enter):
    assert enter(visitor(), ctx=escorted_at(10, role="inspector")).reason == "escort_required"


def test_a_visitor_inside_is_no_escort(enter):
    assert enter(person(role="inspector"), ctx=escorted_at(10, role="visitor")).reason == "escort_required"


def test_one_escort_inside_within_the_window_is_enough(enter):
    out = Entry("P008", "staff", MONDAY_9 - timedelta(seconds=5))  # walked out since
    late = Entry("P009", "staff", MONDAY_9 - timedelta(seconds=20))
    ctx = DoorContext(inside=frozenset({"P009"}), escort_entries=(out, late))
    assert enter(visitor(), ctx=ctx).allowed


def test_an_escort_inside_since_before_the_window_no_longer_escorts(enter):
    assert enter(visitor(), ctx=escorted_at(61)).reason == "escort_required"


def test_a_staff_member_never_needs_an_escort(enter):
    assert enter(person(), ctx=DoorContext()).allowed


def test_a_supervisor_never_needs_an_escort(enter):
    assert enter(person(role="supervisor"), ctx=DoorContext()).allowed


# ------------------------------------------------------------------ leaving (free egress)


def test_leaving_after_hours_is_allowed(leave):
    assert leave(person(), at=sh(MONDAY, 22)).allowed


def test_leaving_on_a_holiday_is_allowed(leave):
    assert leave(person(), at=sh(NATIONAL_DAY_THURSDAY, 10)).allowed


def test_leaving_during_lockdown_is_allowed(leave):
    assert leave(person(), ctx=DoorContext(inside=frozenset({"P001"}), lockdown=True)).allowed


def test_leaving_while_the_gate_cannot_screen_is_allowed(leave):
    assert leave(person(), ctx=DoorContext(inside=frozenset({"P001"}), screening_available=False)).allowed


def test_leaving_with_an_unsynchronised_clock_is_allowed(leave):
    assert leave(person(), ctx=DoorContext(inside=frozenset({"P001"}), clock_sane=False)).allowed


def test_leaving_after_being_revoked_is_allowed(leave):
    assert leave(person(status="revoked")).allowed


def test_leaving_after_validity_expired_is_allowed(leave):
    assert leave(person(valid_until=date(2026, 11, 22))).allowed


def test_leaving_without_vetting_is_allowed(leave):
    assert leave(person(review_date=None, training_hours=0, commitment_date=None)).allowed


def test_a_visitor_leaves_without_an_escort(leave):
    assert leave(visitor()).allowed


def test_leaving_with_an_impossible_id_number_is_denied(leave):
    assert leave(None, credential=BAD_ID_CARD).reason == "invalid_id_number"


def test_leaving_with_an_unknown_credential_is_denied(leave):
    assert leave(None, credential=BADGE).reason == "unknown_credential"


def test_leaving_while_not_inside_is_anti_passback(leave):
    assert leave(person(), ctx=DoorContext()).reason == "anti_passback"


def test_leaving_while_not_inside_under_soft_anti_passback_is_allowed_with_a_note(leave, pol):
    d = leave(person(), ctx=DoorContext(), policy=replace(pol, anti_passback="soft"))
    assert d == Decision(True, None, ("anti_passback",))


def test_leaving_while_not_inside_with_anti_passback_off_is_allowed(leave, pol):
    assert leave(person(), ctx=DoorContext(), policy=replace(pol, anti_passback="off")) == Decision(True, None, ())


# ------------------------------------------------------------------ the contract


def test_every_policy_reason_is_a_design_denial_reason():
    assert set(REASONS) <= set(events.REASONS)


def test_reasons_are_listed_once_each():
    assert len(REASONS) == len(set(REASONS))


def test_every_denial_reason_is_decided_by_the_policy_or_the_doors_own_functions():
    assert set(REASONS) | set(DOOR_REASONS) == set(events.REASONS) == set(reasons_module.LABELS)


# ------------------------------------------------------------------ the door's own reasons


def test_a_held_reader_refuses_before_a_busy_door():
    assert refused_before(reader_held=True, busy_with_another=True).reason == "reader_locked"


def test_a_credential_during_another_persons_passage_is_door_busy():
    assert refused_before(reader_held=False, busy_with_another=True).reason == "door_busy"


def test_a_free_reader_at_an_idle_door_is_not_refused_before_the_policy():
    assert refused_before(reader_held=False, busy_with_another=False) is None


def test_metal_beats_tailgating_at_the_gate():
    assert screened(metal=True, persons=2).reason == "metal_detected"


def test_two_people_through_the_gate_is_tailgating():
    assert screened(metal=False, persons=2).reason == "tailgating"


def test_one_clear_walk_through_is_allowed():
    assert screened(metal=False, persons=1).allowed


def test_no_walk_through_in_time_is_screening_timeout():
    assert screening_lapsed().reason == "screening_timeout"


def test_a_gate_lost_during_an_entry_refuses_it_and_lets_an_exit_go_on():
    assert gate_lost("in").reason == "screening_unavailable"
    assert gate_lost("out").allowed


def test_exit_reasons_are_a_subset_in_the_same_order():
    assert [r for r in PRECEDENCE if r in EXIT_PRECEDENCE] == list(EXIT_PRECEDENCE)


def test_the_docstring_lists_the_precedence_in_the_same_order():
    listed = re.findall(r"^\d+\. ``(\w+)``(?: / ``(\w+)``)?", policy_module.__doc__, re.MULTILINE)
    assert [r for pair in listed for r in pair if r] == list(PRECEDENCE)


def test_a_naive_time_is_refused(enter):
    with pytest.raises(ValueError, match="time zone"):
        enter(person(), at=datetime(2026, 11, 23, 9))


def test_an_unknown_direction_is_refused(enter):
    with pytest.raises(ValueError, match="direction"):
        enter(person(), direction="sideways")


def test_an_allowed_decision_cannot_carry_a_reason():
    with pytest.raises(ValueError):
        Decision(True, "lockdown")


def test_a_denial_must_carry_a_reason():
    with pytest.raises(ValueError):
        Decision(False, None)


def test_an_unsynchronised_clock_beats_the_date_rules_it_would_get_wrong(enter):
    # A Pi that booted without its time believes it is before everyone's validity period.
    p, credential, at, ctx = failing("clock_unsynchronised", "not_yet_valid")
    assert enter(p, credential=credential, at=at, ctx=ctx).reason == "clock_unsynchronised"
