"""The controller's guarantees, on the real drivers and the simulated door."""

import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from firmware_py.config.schema import load_config
from firmware_py.core.clock import SimulatedClock
from simulator.door_sim import SimulatedDoor
from simulator.runner import prepare_database, read_people
from simulator.scenario import Scenario
from tests.fixtures.constants import PEOPLE, REPO, TZ

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
    from firmware_py.core.inputs import BadgeRead

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
    door.db.execute("UPDATE persons SET schedule_group = 'night' WHERE person_id = 'P001'")
    grant_entry(door)  # the walk-through finds nothing to screen
    denied = [e for e in door.events() if e["type"] == "access_denied"][-1]
    assert denied["person"]["person_id"] == "P001"
    assert "night" in denied["detail"]["error"]


def test_a_command_that_fails_while_executing_is_refused_and_audited(door, mocker):
    from firmware_py.core.inputs import RemoteCommand

    answers = []
    door.controller.command_results.append(lambda *a: answers.append(a))
    mocker.patch("firmware_py.storage.roster.revoke", side_effect=KeyError("boom"))
    door.inputs.put(RemoteCommand("c1", "revoke", {"person_id": "P001", "reason": "test"}, "sup"))
    door.pump()
    audit = door.events()[-1]
    assert audit["type"] == "command" and audit["detail"]["ok"] is False
    assert answers == [("c1", False, "the door could not carry it out: KeyError")]


# ------------------------------------------------------------------ hardening (issue 11)


def badge(door, person, side="outside"):
    """``person`` shows their badge at the ``side`` reader, as the badge reader would post it."""
    from firmware_py.core.inputs import BadgeRead

    door.inputs.put(BadgeRead(side, read_people(PEOPLE)[person].badges[0]))
    door.pump()


def enter_fully(door, person="P001"):
    grant_entry(door, person)
    door.open_door()
    door.close_door()


def last(door, type_):
    return [e for e in door.events() if e["type"] == type_][-1]


def test_a_wall_clock_step_forward_denies_entries_and_raises_one_alarm(door):
    enter_fully(door, "P001")
    door.set_wall_clock(door.clock.now() + timedelta(hours=24))  # Tuesday 09:00: looks like working hours
    badge(door, "P003")
    badge(door, "P002")
    assert not door.lock_released
    assert [e["reason"] for e in door.events() if e["type"] == "access_denied"] == ["clock_unsynchronised"] * 2
    assert types(door).count("clock_unsynchronised") == 1
    assert last(door, "clock_unsynchronised")["detail"]["cause"] == "stepped_forward"


def test_people_can_leave_while_the_clock_is_unsynchronised_after_a_forward_step(door):
    enter_fully(door, "P001")
    door.set_wall_clock(door.clock.now() + timedelta(hours=24))
    badge(door, "P001", "inside")
    door.walk_through()
    granted = last(door, "access_granted")
    assert (granted["direction"], granted["person"]["person_id"]) == ("out", "P001")
    assert door.lock_released


def test_the_correction_of_a_forward_step_lets_people_in_at_once(door):
    start = door.clock.now()
    door.set_wall_clock(start + timedelta(hours=12))
    door.advance(timedelta(minutes=2))
    door.set_wall_clock(start + timedelta(minutes=2))  # NTP puts it right
    grant_entry(door, "P001")
    assert types(door)[-1] == "access_granted"


def test_an_agreeing_time_beacon_after_a_forward_step_lets_people_in(door):
    from firmware_py.core.inputs import TimeBeacon

    door.set_wall_clock(door.clock.now() + timedelta(hours=2))  # 11:00, still working hours
    badge(door, "P001")
    assert last(door, "access_denied")["reason"] == "clock_unsynchronised"
    door.advance(timedelta(seconds=DENIED_WAIT_S))
    door.inputs.put(TimeBeacon(door.clock.now() - timedelta(seconds=1)))
    door.pump()
    grant_entry(door, "P001")
    assert types(door)[-1] == "access_granted"


DENIED_WAIT_S = 4  # past the denial's red light


def _gate_tamper(door, active):
    from firmware_py.core.inputs import TamperChanged

    door.world.set_tamper("gate", active)
    door.pump(until=TamperChanged)


def test_an_entry_is_refused_screening_unavailable_while_the_gate_tamper_is_open(door):
    _gate_tamper(door, True)
    badge(door, "P001")
    denied = door.events()[-1]
    assert (denied["type"], denied["reason"], denied["direction"]) == ("access_denied", "screening_unavailable", "in")
    assert door.controller.state == "idle" and not door.lock_released


def test_entries_are_screened_again_once_the_gate_tamper_is_shut(door):
    _gate_tamper(door, True)
    _gate_tamper(door, False)
    grant_entry(door, "P001")
    assert types(door)[-1] == "access_granted"


def test_an_entry_is_refused_screening_unavailable_while_the_gate_reports_a_fault(door):
    from firmware_py.core.inputs import DeviceFault, DeviceRecovered

    door.inputs.put(DeviceFault("gate", "no supply voltage"))
    door.pump()
    badge(door, "P001")
    assert last(door, "access_denied")["reason"] == "screening_unavailable"
    door.inputs.put(DeviceRecovered("gate"))
    door.pump()
    grant_entry(door, "P001")
    assert types(door)[-1] == "access_granted"


def test_a_fault_on_another_device_does_not_stop_screening(door):
    from firmware_py.core.inputs import DeviceFault

    door.inputs.put(DeviceFault("id_reader.outside", "silent"))
    door.pump()
    grant_entry(door, "P001")
    assert types(door)[-1] == "access_granted"


def test_a_person_leaves_unscreened_while_the_gate_tamper_is_open(door):
    enter_fully(door, "P001")
    _gate_tamper(door, True)
    badge(door, "P001", "inside")
    granted = door.events()[-1]
    assert (granted["type"], granted["direction"]) == ("access_granted", "out")
    assert granted["detail"]["screening"] == "unavailable"
    assert door.lock_released


def test_an_entry_being_screened_when_the_gate_tamper_opens_is_refused(door):
    badge(door, "P001")
    assert door.controller.state == "screening"
    _gate_tamper(door, True)
    assert last(door, "access_denied")["reason"] == "screening_unavailable"
    assert door.controller.state == "idle" and not door.lock_released


def test_a_passage_under_way_at_shutdown_is_recorded_so_the_person_can_leave(door):
    grant_entry(door, "P001")
    door.open_door()
    door.close()  # the service stops with the door open behind P001
    passage = last(door, "passage")
    assert (passage["direction"], passage["person"]["person_id"]) == ("in", "P001")
    with SimulatedDoor(door.cfg, clock=door.clock, badges=False) as again:
        assert list(again.controller.inside) == ["P001"]
        badge(again, "P001", "inside")
        again.walk_through()
        granted = last(again, "access_granted")
        assert (granted["direction"], granted["person"]["person_id"]) == ("out", "P001")


def test_an_exit_being_screened_completes_when_lockdown_arrives(door):
    enter_fully(door, "P001")
    mark = door.store.last_seq() + 1
    badge(door, "P001", "inside")
    door.controller.set_lockdown(True, "test")
    door.walk_through()
    door.open_door()
    door.close_door()
    assert types(door, mark) == ["lockdown_on", "access_granted", "passage"]
    assert last(door, "passage")["direction"] == "out"
    assert door.controller.inside == {}


def test_an_exit_released_when_lockdown_arrives_stays_released(door):
    enter_fully(door, "P001")
    badge(door, "P001", "inside")
    door.walk_through()
    door.controller.set_lockdown(True, "test")
    assert door.lock_released
    door.open_door()
    door.close_door()
    assert types(door)[-2:] == ["lockdown_on", "passage"]


def test_an_entry_being_screened_is_stopped_by_lockdown(door):
    badge(door, "P001")
    door.controller.set_lockdown(True, "test")
    assert door.controller.state == "idle" and not door.lock_released


def test_a_staff_grant_that_lapses_unopened_escorts_nobody(door):
    grant_entry(door, "P001")
    door.advance(timedelta(seconds=door.cfg.policy.unlock_window_s + 1))
    badge(door, "I001")
    assert last(door, "access_denied")["reason"] == "escort_required"


def test_an_inspector_enters_after_the_staff_members_passage(door):
    enter_fully(door, "P001")
    grant_entry(door, "I001")
    granted = last(door, "access_granted")
    assert granted["person"]["person_id"] == "I001"
