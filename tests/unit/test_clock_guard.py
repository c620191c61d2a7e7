"""The clock guard: wall-clock steps either way, measured against the monotonic clock."""

from datetime import datetime, timedelta

import pytest

from firmware_py.core.clock import SimulatedClock
from firmware_py.core.clock_guard import ClockGuard
from tests.fixtures.constants import TZ

START = datetime(2026, 11, 23, 21, 0, tzinfo=TZ)  # Monday evening, after hours
FLOOR = datetime(2026, 11, 1, tzinfo=TZ)
BOUND_S = 60


@pytest.fixture
def clock():
    return SimulatedClock(START)


@pytest.fixture
def guard(clock):
    g = ClockGuard(clock, floor=FLOOR, max_backstep_s=BOUND_S)
    assert g.check().sane
    return g


def test_a_forward_step_beyond_the_bound_makes_the_clock_unsynchronised(clock, guard):
    clock.advance(10)
    clock.set_wall(clock.now() + timedelta(hours=12))
    verdict = guard.check()
    assert (verdict.sane, verdict.changed) == (False, True)
    assert verdict.detail["cause"] == "stepped_forward"
    assert verdict.detail["step_s"] == pytest.approx(12 * 3600)


def test_a_forward_step_within_the_bound_is_tolerated(clock, guard):
    clock.set_wall(clock.now() + timedelta(seconds=BOUND_S - 1))
    assert guard.check().sane


def test_a_forward_step_bound_of_its_own_is_honoured(clock):
    guard = ClockGuard(clock, floor=FLOOR, max_backstep_s=3600, max_forward_step_s=30)
    guard.check()
    clock.set_wall(clock.now() + timedelta(seconds=31))
    assert not guard.check().sane


def test_after_a_forward_step_the_clock_stays_unsynchronised_while_it_runs_on(clock, guard):
    clock.set_wall(clock.now() + timedelta(hours=12))
    guard.check()
    for _ in range(6):
        clock.advance(timedelta(hours=1))
        verdict = guard.check()
        assert not verdict.sane and not verdict.changed


def test_the_correction_of_a_forward_step_makes_the_clock_sane_at_once(clock, guard):
    clock.set_wall(clock.now() + timedelta(hours=12))
    guard.check()
    clock.advance(timedelta(minutes=20))
    clock.set_wall(START + timedelta(minutes=20))  # NTP puts it right again
    verdict = guard.check()
    assert (verdict.sane, verdict.changed) == (True, True)


def test_an_agreeing_beacon_after_a_forward_step_makes_the_clock_sane(clock, guard):
    clock.set_wall(clock.now() + timedelta(hours=12))
    guard.check()
    clock.advance(5)
    assert guard.compare(clock.now() - timedelta(seconds=1), drift_s=5, gross_s=300) is None
    assert guard.check().sane


def test_a_backward_step_still_waits_for_the_clock_to_catch_up(clock, guard):
    clock.set_wall(clock.now() - timedelta(minutes=10))
    assert guard.check().detail["cause"] == "stepped_back"
    clock.advance(timedelta(minutes=5))
    assert not guard.check().sane
    clock.advance(timedelta(minutes=6))
    assert guard.check().sane
