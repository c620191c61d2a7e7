"""A clock crept forward in steps each under the step bound (issue 18, rule 4), at the door and in the config."""

from dataclasses import replace
from datetime import timedelta

import pytest

from firmware_py.config.schema import load_config
from firmware_py.core.inputs import BadgeRead, DoorClosed, DoorOpened, GatePassage, TimeBeacon
from firmware_py.errors import ConfigError
from tests.fixtures.constants import EXAMPLE
from tests.fixtures.memory_ports import example_config, memory_door, person

BADGE = "04A1B2C3D4"


@pytest.fixture
def door():
    return memory_door(person("P001", badge=BADGE))


def creep(door, *, steps: int, step_s: float = 59) -> None:
    """The issue's attack: forward steps of 59 s, one a second, the door checking its clock each second."""
    for _ in range(steps):
        door.clock.advance(1)
        door.clock.set_wall(door.clock.now() + timedelta(seconds=step_s))
        door.controller.tick()


def enter(door) -> None:
    for event in (BadgeRead("outside", BADGE), GatePassage(count=1, metal=False), DoorOpened(), DoorClosed()):
        door.controller.handle(event)


def test_steps_under_the_bound_that_add_up_raise_clock_drift(door):
    creep(door, steps=1)
    drift = door.log.events[-1]
    assert drift["type"] == "clock_drift" and drift["detail"]["cause"] == "crept"
    assert drift["detail"]["bound_s"] == door.controller.policy.clock_drift_s


def test_entries_are_refused_once_the_creep_passes_the_ceiling_without_a_beacon(door):
    creep(door, steps=740)  # twelve hours in twelve minutes
    assert "clock_unsynchronised" in door.log.types()
    door.controller.handle(BadgeRead("outside", BADGE))
    assert door.log.events[-1]["reason"] == "clock_unsynchronised"


def test_exits_stay_free_on_a_crept_clock(door):
    enter(door)
    creep(door, steps=740)
    door.controller.handle(BadgeRead("inside", BADGE))
    assert door.controller.state == "screening"


def test_a_beacon_agreeing_with_the_clock_confirms_it_again(door):
    creep(door, steps=3)
    assert not door.controller.clock_guard.sane
    door.controller.handle(TimeBeacon(door.clock.now()))
    door.controller.handle(BadgeRead("outside", BADGE))
    assert door.controller.state == "screening"


def test_a_clock_that_keeps_time_raises_nothing_over_a_day(door):
    for _ in range(24 * 60):
        door.clock.advance(60)
        door.controller.tick()
    assert not {"clock_drift", "clock_unsynchronised"} & set(door.log.types())


def test_the_ceiling_is_configurable():
    cfg = example_config()
    door = memory_door(person("P001", badge=BADGE), cfg=replace(cfg, policy=replace(cfg.policy,
                                                                                  max_clock_divergence_s=600)))
    creep(door, steps=5)  # 295 s: beyond the example's 60 s, within 600 s
    assert door.controller.clock_guard.sane


def test_the_example_config_sets_the_ceiling():
    assert load_config(EXAMPLE).policy.max_clock_divergence_s == 60


def test_a_ceiling_below_the_drift_bound_is_a_config_error(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8").replace("max_clock_divergence_s = 60 ", "max_clock_divergence_s = 2 ")
    path = tmp_path / "venue.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[policy\] max_clock_divergence_s: 2 is below clock_drift_s \(5\)"):
        load_config(path)
