"""The link watch (GB 50396-2007 5.1.5-5): an outage longer than the bound is link_down, then link_up."""

import pytest

from firmware_py.core.clock import SimulatedClock
from firmware_py.core.link_watch import LinkWatch
from firmware_py.core.timers import Timers
from tests.fixtures.memory_ports import MONDAY_9

BOUND_S = 60


@pytest.fixture
def world():
    clock = SimulatedClock(MONDAY_9)
    timers = Timers(clock)
    emitted = []
    watch = LinkWatch(clock=clock, timers=timers, bound_s=BOUND_S,
                      emit=lambda category, type_, **kw: emitted.append((category, type_, kw["detail"])))
    return clock, timers, watch, emitted


def test_a_short_outage_raises_nothing(world):
    clock, timers, watch, emitted = world
    watch.changed(False, "broker gone")
    clock.advance(BOUND_S - 1)
    timers.run_due()
    watch.changed(True)
    assert emitted == []


def test_an_outage_past_the_bound_raises_link_down_once(world):
    clock, timers, watch, emitted = world
    watch.changed(False)
    clock.advance(BOUND_S)
    timers.run_due()
    watch.changed(False)  # still down: no second alarm, the outage keeps its start
    clock.advance(BOUND_S)
    timers.run_due()
    assert [(c, t) for c, t, _ in emitted] == [("alarm", "link_down")]
    assert emitted[0][2] == {"down_since": MONDAY_9.isoformat(timespec="seconds"), "bound_s": BOUND_S}


def test_the_link_back_after_an_alarm_is_link_up_with_the_outage_length(world):
    clock, timers, watch, emitted = world
    watch.changed(False)
    clock.advance(BOUND_S)
    timers.run_due()
    clock.advance(30)
    watch.changed(True)
    category, type_, detail = emitted[-1]
    assert (category, type_) == ("system", "link_up") and detail["outage_s"] == pytest.approx(BOUND_S + 30)
    assert watch.down_since is None and not timers.running("link_down")
