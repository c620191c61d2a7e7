"""The working-hours calendar, against the real 2026 calendar of config/venue.example.toml."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from firmware_py.config.schema import WEEKDAYS, TimeWindow, load_config
from firmware_py.core.working_hours import WorkingHours
from tests.fixtures.constants import EXAMPLE

SHANGHAI = ZoneInfo("Asia/Shanghai")

MONDAY = date(2026, 11, 23)
PLAIN_SATURDAY = date(2026, 11, 21)
NATIONAL_DAY_THURSDAY = date(2026, 10, 1)  # holiday on a weekday
ADJUSTED_SUNDAY = date(2026, 9, 20)  # worked in exchange for Mid-Autumn/National Day
ADJUSTED_SATURDAY = date(2026, 10, 10)


def sh(d: date, hh: int, mm: int = 0, ss: int = 0, us: int = 0) -> datetime:
    return datetime.combine(d, time(hh, mm, ss, us), tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def calendar():
    return load_config(EXAMPLE).calendar


@pytest.fixture(scope="module")
def hours(calendar):
    return WorkingHours(calendar, SHANGHAI)


@pytest.fixture(scope="module")
def weekend_hours(calendar):
    """The example calendar plus a group that works only at weekends."""
    weekend = {day: () for day in WEEKDAYS} | {"sat": (TimeWindow(time(9), time(16)),),
                                               "sun": (TimeWindow(time(9), time(16)),)}
    empty = {day: () for day in WEEKDAYS}
    schedules = dict(calendar.schedules) | {"weekend": weekend, "never": empty}
    return WorkingHours(replace(calendar, schedules=schedules), SHANGHAI)


# ------------------------------------------------------------------ working days


def test_an_ordinary_monday_is_a_working_day(hours):
    assert hours.is_working_day(MONDAY)
    assert hours.is_working_day(MONDAY, "office")


def test_an_ordinary_saturday_is_not_a_working_day(hours):
    assert not hours.is_working_day(PLAIN_SATURDAY)
    assert not hours.is_working_day(PLAIN_SATURDAY, "office")


def test_a_holiday_on_a_thursday_is_not_a_working_day(hours):
    assert not hours.is_working_day(NATIONAL_DAY_THURSDAY)


def test_a_holiday_on_a_thursday_has_no_windows_for_any_group(hours):
    assert hours.windows_on(NATIONAL_DAY_THURSDAY, "office") == ()
    assert hours.windows_on(NATIONAL_DAY_THURSDAY, "extended") == ()


def test_an_adjusted_working_sunday_is_a_working_day(hours):
    assert hours.is_working_day(ADJUSTED_SUNDAY)
    assert hours.is_working_day(ADJUSTED_SUNDAY, "office")


def test_an_adjusted_working_sunday_uses_the_monday_windows(hours):
    assert hours.windows_on(ADJUSTED_SUNDAY, "office") == hours.windows_on(MONDAY, "office")


def test_an_adjusted_working_saturday_is_open_in_the_afternoon_window(hours):
    assert hours.is_open(sh(ADJUSTED_SATURDAY, 14), "office")


def test_a_holiday_closes_the_supervisors_wider_group_too(hours):
    assert hours.closed_reason(sh(NATIONAL_DAY_THURSDAY, 10), "extended") == "non_working_day"


def test_a_group_without_weekday_windows_does_not_work_a_day_the_venue_works(weekend_hours):
    assert weekend_hours.is_working_day(MONDAY)
    assert not weekend_hours.is_working_day(MONDAY, "weekend")


def test_a_saturday_is_a_working_day_for_the_venue_when_one_group_works_it(weekend_hours):
    assert weekend_hours.is_working_day(PLAIN_SATURDAY)
    assert weekend_hours.is_working_day(PLAIN_SATURDAY, "weekend")
    assert not weekend_hours.is_working_day(PLAIN_SATURDAY, "office")


# ------------------------------------------------------------------ window boundaries


@pytest.mark.parametrize("hh, mm, ss, us, is_open", [
    (8, 29, 59, 0, False),
    (8, 30, 0, 0, True),
    (11, 59, 59, 999999, True),
    (12, 0, 0, 0, False),
    (13, 59, 59, 0, False),
    (14, 0, 0, 0, True),
    (17, 29, 59, 999999, True),
    (17, 30, 0, 0, False),
], ids=["08:29:59 closed", "08:30:00 open", "11:59:59.999999 open", "12:00:00 closed",
        "13:59:59 closed", "14:00:00 open", "17:29:59.999999 open", "17:30:00 closed"])
def test_office_windows_open_at_their_start_and_close_at_their_end(hours, hh, mm, ss, us, is_open):
    assert hours.is_open(sh(MONDAY, hh, mm, ss, us), "office") is is_open


def test_extended_group_is_open_at_18_30_when_office_is_closed(hours):
    assert hours.is_open(sh(MONDAY, 18, 30), "extended")
    assert not hours.is_open(sh(MONDAY, 18, 30), "office")


def test_extended_group_closes_at_19_00(hours):
    assert not hours.is_open(sh(MONDAY, 19), "extended")


# ------------------------------------------------------------------ time zones


def test_a_utc_time_is_judged_by_the_shanghai_clock(hours):
    assert hours.is_open(datetime(2026, 11, 23, 0, 30, tzinfo=UTC), "office")  # 08:30 in Shanghai
    assert not hours.is_open(datetime(2026, 11, 23, 0, 29, 59, tzinfo=UTC), "office")


def test_a_utc_sunday_evening_is_a_shanghai_monday_morning(hours):
    sunday_utc = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)  # Monday 07:00 in Shanghai
    assert hours.closed_reason(sunday_utc, "office") == "outside_working_hours"


def test_a_naive_time_is_refused(hours):
    with pytest.raises(ValueError, match="time zone"):
        hours.is_open(datetime(2026, 11, 23, 9), "office")


# ------------------------------------------------------------------ closed reasons


def test_closed_reason_is_none_inside_a_window(hours):
    assert hours.closed_reason(sh(MONDAY, 9), "office") is None


def test_closed_reason_at_lunch_is_outside_working_hours(hours):
    assert hours.closed_reason(sh(MONDAY, 12, 30), "office") == "outside_working_hours"


def test_closed_reason_on_a_saturday_is_non_working_day(hours):
    assert hours.closed_reason(sh(PLAIN_SATURDAY, 9), "office") == "non_working_day"


def test_closed_reason_on_a_weekday_holiday_is_non_working_day(hours):
    assert hours.closed_reason(sh(NATIONAL_DAY_THURSDAY, 9), "office") == "non_working_day"


def test_an_unknown_group_raises_key_error_naming_the_group_and_the_known_ones(hours):
    with pytest.raises(KeyError, match="'night'.*known groups: extended, office"):
        hours.is_open(sh(MONDAY, 9), "night")


# ------------------------------------------------------------------ window ends (overstay)


def test_window_ends_are_the_shanghai_end_times_of_the_day(hours):
    assert hours.window_ends(MONDAY, "office") == [sh(MONDAY, 12), sh(MONDAY, 17, 30)]


def test_window_ends_are_timezone_aware(hours):
    assert all(e.utcoffset() is not None for e in hours.window_ends(MONDAY, "office"))


def test_window_ends_on_a_holiday_are_empty(hours):
    assert hours.window_ends(NATIONAL_DAY_THURSDAY, "office") == []


def test_next_window_end_in_the_morning_is_noon(hours):
    assert hours.next_window_end(sh(MONDAY, 9), ["office"]) == sh(MONDAY, 12)


def test_next_window_end_at_exactly_a_window_end_is_the_following_one(hours):
    assert hours.next_window_end(sh(MONDAY, 12), ["office"]) == sh(MONDAY, 17, 30)


def test_next_window_end_takes_the_earliest_across_groups(hours):
    assert hours.next_window_end(sh(MONDAY, 17), ["extended", "office"]) == sh(MONDAY, 17, 30)
    assert hours.next_window_end(sh(MONDAY, 18), ["extended", "office"]) == sh(MONDAY, 19)


def test_next_window_end_after_friday_evening_is_the_adjusted_sunday_noon(hours):
    assert hours.next_window_end(sh(date(2026, 9, 18), 18), ["office"]) == sh(ADJUSTED_SUNDAY, 12)


def test_next_window_end_skips_the_national_day_week(hours):
    assert hours.next_window_end(sh(date(2026, 9, 30), 18), ["office"]) == sh(date(2026, 10, 8), 12)


def test_next_window_end_accepts_utc_and_answers_in_shanghai_time(hours):
    end = hours.next_window_end(datetime(2026, 11, 23, 1, 0, tzinfo=UTC), ["office"])
    assert end == sh(MONDAY, 12) and end.tzinfo == SHANGHAI


def test_next_window_end_without_groups_is_none(hours):
    assert hours.next_window_end(sh(MONDAY, 9), []) is None


def test_next_window_end_for_a_group_that_never_works_is_none(weekend_hours):
    assert weekend_hours.next_window_end(sh(MONDAY, 9), ["never"]) is None


def test_next_window_end_for_an_unknown_group_raises_key_error(hours):
    with pytest.raises(KeyError, match="night"):
        hours.next_window_end(sh(MONDAY, 9), ["office", "night"])
