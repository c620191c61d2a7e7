"""The controller's guarantees, on the real drivers and the simulated door."""

import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from firmware_py.clock import SimulatedClock
from firmware_py.config import load_config
from simulator.door_sim import SimulatedDoor
from simulator.runner import prepare_database, read_people
from simulator.scenario import Scenario

REPO = Path(__file__).parent.parent
TZ = ZoneInfo("Asia/Shanghai")
PEOPLE = REPO / "scenarios" / "people.csv"
P001_BADGE = read_people(PEOPLE)["P001"].badges[0]


@pytest.fixture
def door(tmp_path):
    cfg = load_config(REPO / "config" / "venue.example.toml")
    cfg = replace(cfg, storage=replace(cfg.storage, database=tmp_path / "events.db", secret=tmp_path / "device.key"),
                  mqtt=replace(cfg.mqtt, enabled=False))
    clock = SimulatedClock(datetime(2026, 11, 23, 9, 0, tzinfo=TZ))
    scenario = Scenario(tmp_path / "t.toml", "t", clock.now(), cfg.path, PEOPLE, ())
    prepare_database(cfg, scenario, clock)
    with SimulatedDoor(cfg, clock=clock, badges=False) as d:
        yield d


def types(door, since=1):
    return [e["type"] for e in door.events(since)]


def grant_entry(door, person="P001"):
    """P001's entry without a badge reader: the card read as the reader would post it."""
    from firmware_py.inputs import BadgeRead

    door.inputs.put(BadgeRead("outside", read_people(PEOPLE)[person].badges[0]))
    door.pump()
    door.walk_through()


def test_the_granted_event_is_durable_before_the_lock_releases(door, mocker):
    seen_at_release = []
    original = door.hardware.lock.release

    def release():
        # another connection, as after a power cut: the event must already be committed
        with sqlite3.connect(door.cfg.storage.database) as other:
            seen_at_release.append([t for (t,) in other.execute("SELECT type FROM events ORDER BY seq")])
        original()

    mocker.patch.object(door.hardware.lock, "release", side_effect=release)
    grant_entry(door)
    assert seen_at_release and seen_at_release[0][-1] == "access_granted"
    assert door.lock_released


def test_the_lock_secures_again_when_nobody_opens_the_door(door):
    grant_entry(door)
    assert door.lock_released
    door.advance(timedelta(seconds=door.cfg.policy.unlock_window_s + 1))
    assert not door.lock_released
    assert "passage" not in types(door)


def test_the_exit_button_releases_the_lock_even_in_lockdown(door):
    door.controller.set_lockdown(True, "test")
    door.press_exit()
    assert door.lock_released
    assert types(door)[-2:] == ["lockdown_on", "exit_button"]


def test_a_wall_clock_step_backwards_raises_one_alarm_and_denies_until_it_catches_up(door):
    start = door.clock.now()
    door.set_wall_clock(start - timedelta(minutes=10))
    grant_entry(door)
    door.advance(timedelta(minutes=5))
    assert types(door).count("clock_unsynchronised") == 1
    denied = [e for e in door.events() if e["type"] == "access_denied"]
    assert denied[-1]["reason"] == "clock_unsynchronised"
    door.advance(timedelta(minutes=6))  # past the latest time shown before the step
    grant_entry(door)
    assert types(door)[-1] == "access_granted"


def test_occupancy_and_lockdown_survive_a_restart(door, tmp_path):
    grant_entry(door)
    door.open_door()
    door.close_door()
    door.controller.set_lockdown(True, "test")
    door.close()
    again = SimulatedDoor(door.cfg, clock=door.clock, badges=False)
    with again:
        assert again.controller.lockdown is True
        assert list(again.controller.inside) == ["P001"]


def test_a_person_whose_schedule_group_was_removed_is_denied_not_crashing_the_loop(door):
    door.controller.db.execute("UPDATE persons SET schedule_group = 'night' WHERE person_id = 'P001'")
    grant_entry(door)  # the walk-through finds nothing to screen
    denied = [e for e in door.events() if e["type"] == "access_denied"][-1]
    assert denied["person"]["person_id"] == "P001"
    assert "night" in denied["detail"]["error"]


def test_a_command_that_fails_while_executing_is_refused_and_audited(door, mocker):
    from firmware_py.inputs import RemoteCommand

    answers = []
    door.controller.command_results.append(lambda *a: answers.append(a))
    mocker.patch("firmware_py.roster.revoke", side_effect=KeyError("boom"))
    door.inputs.put(RemoteCommand("c1", "revoke", {"person_id": "P001", "reason": "test"}, "sup"))
    door.pump()
    audit = door.events()[-1]
    assert audit["type"] == "command" and audit["detail"]["ok"] is False
    assert answers == [("c1", False, "the door could not carry it out: KeyError")]
