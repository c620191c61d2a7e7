"""Named one-shot timers on the injected clock."""

import pytest

from firmware_py.core.clock import SimulatedClock
from firmware_py.core.timers import Timers
from tests.fixtures.memory_ports import MONDAY_9


@pytest.fixture
def clock():
    return SimulatedClock(MONDAY_9)


@pytest.fixture
def timers(clock):
    return Timers(clock)


def test_a_timer_runs_once_when_its_time_has_come(clock, timers):
    ran = []
    timers.start("unlock", 5, lambda: ran.append("unlock"))
    clock.advance(4.9)
    assert timers.run_due() == 0 and ran == []
    clock.advance(0.1)
    assert timers.run_due() == 1 and ran == ["unlock"]
    assert timers.run_due() == 0 and not timers.running("unlock")


def test_starting_a_running_timer_again_replaces_it(clock, timers):
    ran = []
    timers.start("t", 5, lambda: ran.append("first"))
    timers.start("t", 10, lambda: ran.append("second"))
    clock.advance(6)
    timers.run_due()
    assert ran == []
    clock.advance(4)
    timers.run_due()
    assert ran == ["second"]


def test_a_cancelled_timer_never_runs(clock, timers):
    ran = []
    timers.start("t", 1, lambda: ran.append("t"))
    timers.cancel("t")
    clock.advance(2)
    assert timers.run_due() == 0 and ran == []


def test_due_timers_run_earliest_first(clock, timers):
    ran = []
    timers.start("late", 3, lambda: ran.append("late"))
    timers.start("early", 1, lambda: ran.append("early"))
    clock.advance(5)
    timers.run_due()
    assert ran == ["early", "late"]


def test_a_timer_started_by_a_due_timer_runs_in_the_same_pass_when_due(clock, timers):
    ran = []
    timers.start("a", 1, lambda: (ran.append("a"), timers.start("b", 0, lambda: ran.append("b"))))
    clock.advance(1)
    assert timers.run_due() == 2 and ran == ["a", "b"]


def test_next_due_is_the_earliest_timer_or_none(clock, timers):
    assert timers.next_due() is None
    timers.start("a", 7, lambda: None)
    timers.start("b", 2, lambda: None)
    assert timers.next_due() == pytest.approx(clock.monotonic() + 2)
    timers.cancel_all()
    assert timers.next_due() is None
