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


# ---------------------------------------------------------------------- a clock that creeps


DRIFT_S, CEILING_S = 5, 60


@pytest.fixture
def watched(clock):
    g = ClockGuard(clock, floor=FLOOR, max_backstep_s=BOUND_S, drift_s=DRIFT_S, max_divergence_s=CEILING_S)
    assert g.check().sane
    return g


def creep(clock, guard, *, steps: int, step_s: float, every_s: float = 1.0) -> list:
    """``steps`` forward steps of the wall clock, each under the step bound, ``every_s`` apart."""
    verdicts = []
    for _ in range(steps):
        clock.advance(every_s)
        clock.set_wall(clock.now() + timedelta(seconds=step_s))
        verdicts.append(guard.check())
    return verdicts


def test_steps_each_under_the_bound_that_add_up_past_the_drift_bound_raise_clock_drift_once(clock, watched):
    verdicts = creep(clock, watched, steps=20, step_s=1, every_s=1)  # 20 s in 20 s: each step 1 s
    drifts = [v.drift for v in verdicts if v.drift]
    assert len(drifts) == 1
    assert drifts[0]["cause"] == "crept" and drifts[0]["drift_s"] > DRIFT_S and drifts[0]["bound_s"] == DRIFT_S


def test_the_issues_creep_of_59_s_steps_makes_the_clock_unsynchronised_past_the_ceiling(clock, watched):
    verdicts = creep(clock, watched, steps=740, step_s=59)
    assert verdicts[0].sane  # one step of 59 s is under both the step bound and the ceiling
    assert not verdicts[1].sane and verdicts[1].changed and verdicts[1].detail["cause"] == "crept"
    assert verdicts[1].detail["divergence_s"] == pytest.approx(118) and verdicts[1].detail["bound_s"] == CEILING_S
    assert not any(v.sane for v in verdicts[1:])  # twelve hours later, still not trusted
    assert any(v.drift for v in verdicts)


def test_a_clock_that_keeps_time_with_the_monotonic_clock_never_drifts(clock, watched):
    for _ in range(3600):
        clock.advance(10)
        verdict = watched.check()
        assert verdict.sane and verdict.drift is None


def test_slow_creep_below_the_drift_bound_within_the_window_raises_nothing(clock, watched):
    # 1 s an hour: NTP slewing a clock that runs a little fast; never 5 s within an hour,
    # but more than the ceiling over three days without a beacon.
    verdicts = creep(clock, watched, steps=60, step_s=1, every_s=3600)
    assert not any(v.drift for v in verdicts)


def test_a_beacon_that_agrees_resets_the_divergence(clock, watched):
    creep(clock, watched, steps=1, step_s=50)
    watched.compare(clock.now(), drift_s=DRIFT_S, gross_s=300)  # the supervisor's time agrees with the crept clock
    verdicts = creep(clock, watched, steps=1, step_s=50)
    assert verdicts[-1].sane


def test_a_crept_clock_put_back_within_the_ceiling_is_trusted_again(clock, watched):
    creep(clock, watched, steps=2, step_s=40)
    assert not watched.sane
    verdicts = creep(clock, watched, steps=1, step_s=-40)
    assert verdicts[-1].sane and verdicts[-1].changed


def test_a_step_beyond_the_bound_is_reported_as_a_step_not_as_drift(clock, watched):
    clock.advance(10)
    clock.set_wall(clock.now() + timedelta(hours=1))
    verdict = watched.check()
    assert verdict.detail["cause"] == "stepped_forward" and verdict.drift is None


def test_a_backward_step_caught_up_is_not_then_taken_for_creep(clock, watched):
    clock.advance(10)
    clock.set_wall(clock.now() - timedelta(seconds=120))
    assert not watched.check().sane
    clock.advance(70)  # the wall clock has caught up with the latest time shown, less the bound
    assert watched.check().sane
