"""The door's state machine on in-memory ports: no database, no pins, no threads.

Each test builds a :class:`DoorController` on :mod:`tests.fixtures.memory_ports`
and feeds it inputs as the service loop would; the system tests run the same
controller on real SQLite, mock pins and ptys.
"""

from __future__ import annotations

import json

import pytest

from firmware_py.core import commands
from firmware_py.core.command_runner import CommandRunner
from firmware_py.core.inputs import (
    BadgeRead,
    DoorClosed,
    DoorOpened,
    ExitButtonPressed,
    GatePassage,
    IdCardRead,
    RemoteCommand,
)
from tests.fixtures.memory_ports import memory_door, person
from tests.fixtures.roster import id_number

ID_NUMBER = id_number("43010219850312123")  # a fictional person's number with a valid check digit
BADGE = "04A1B2C3D4"


@pytest.fixture
def door():
    return memory_door(person("P001", id_number=ID_NUMBER, badge=BADGE))


def enter(door, *, via=None) -> None:
    """Badge in, walk through clear, open and close the door."""
    door.controller.handle(via or BadgeRead("outside", BADGE))
    door.controller.handle(GatePassage(count=1, metal=False))
    door.controller.handle(DoorOpened())
    door.controller.handle(DoorClosed())


def command(door, payload: dict, claimed_by: str | None = None) -> dict:
    door.controller.handle(commands.parse(json.dumps(payload).encode(), claimed_by))
    return door.log.events[-1]


# ---------------------------------------------------------------------- life cycle


def test_a_started_door_is_secured_idle_and_has_recorded_its_start(door):
    assert door.lock.is_released is False and door.controller.state == "idle"
    assert door.log.types() == ["controller_started"]


def test_the_status_carries_the_chain_head_from_the_log(door):
    status = door.controller.status()
    assert (status["last_seq"], status["last_hash"]) == door.log.head()
    assert status["queued"] == 1


# ---------------------------------------------------------------------- credentials


def test_a_known_badge_starts_screening_without_releasing_the_lock(door):
    door.controller.handle(BadgeRead("outside", BADGE))
    assert door.controller.state == "screening" and not door.lock.is_released
    assert ("screening_wait", "outside") in door.indicators.shown


def test_a_clear_walk_through_grants_and_releases_after_the_grant_is_stored(door):
    released_after = []
    door.lock.release = lambda: released_after.append(door.log.types()[-1])
    door.controller.handle(BadgeRead("outside", BADGE))
    door.controller.handle(GatePassage(count=1, metal=False))
    assert released_after == ["access_granted"]
    granted = door.log.events[-1]
    assert granted["person"]["person_id"] == "P001" and granted["detail"]["screening"] == "clear"


def test_an_id_card_is_matched_by_its_keyed_hash_and_stored_masked(door):
    door.controller.handle(IdCardRead("outside", ID_NUMBER))
    door.controller.handle(GatePassage(count=1, metal=False))
    granted = door.log.events[-1]
    assert granted["type"] == "access_granted"
    assert granted["credential"]["masked"] == ID_NUMBER[:6] + "*" * 8 + ID_NUMBER[-4:]
    assert ID_NUMBER not in json.dumps(door.log.events)


def test_a_malformed_id_number_is_denied_with_only_its_province_code_shown(door):
    door.controller.handle(IdCardRead("outside", "43010219850312"))
    denied = door.log.events[-1]
    assert (denied["type"], denied["reason"]) == ("access_denied", "invalid_id_number")
    assert denied["credential"]["masked"] == "43" + "*" * 12


def test_an_unknown_badge_is_denied_and_the_lock_stays_secured(door):
    door.controller.handle(BadgeRead("outside", "DEADBEEF"))
    denied = door.log.events[-1]
    assert (denied["type"], denied["reason"]) == ("access_denied", "unknown_credential")
    assert not door.lock.is_released and ("denied", "outside") in door.indicators.shown


def test_repeated_denials_at_one_reader_raise_an_alarm_and_lock_the_reader(door):
    for _ in range(door.controller.policy.max_failures):
        door.controller.handle(BadgeRead("outside", "DEADBEEF"))
    assert "repeated_failures" in door.log.types()
    door.controller.handle(BadgeRead("outside", BADGE))
    assert door.log.events[-1]["reason"] == "reader_locked"


# ---------------------------------------------------------------------- screening


def test_metal_at_the_gate_denies_the_entry_and_raises_a_screening_alarm(door):
    door.controller.handle(BadgeRead("outside", BADGE))
    door.controller.handle(GatePassage(count=1, metal=True))
    assert door.log.types()[-2:] == ["access_denied", "screening_alarm"]
    assert door.log.events[-2]["reason"] == "metal_detected"
    assert not door.lock.is_released and door.controller.state == "idle"


def test_two_people_in_one_walk_through_are_denied_as_tailgating(door):
    door.controller.handle(BadgeRead("outside", BADGE))
    door.controller.handle(GatePassage(count=2, metal=False))
    assert door.log.events[-2]["reason"] == "tailgating"


def test_no_walk_through_within_the_window_is_a_screening_timeout(door):
    door.controller.handle(BadgeRead("outside", BADGE))
    door.clock.advance(door.controller.policy.screening_window_s + 1)
    door.controller.tick()
    assert door.log.events[-2]["reason"] == "screening_timeout"
    assert door.controller.state == "idle"


# ---------------------------------------------------------------------- passage and the door


def test_a_passage_in_counts_the_person_inside_and_stores_the_occupancy_with_it(door):
    enter(door)
    passage = door.log.events[-1]
    assert (passage["type"], passage["direction"]) == ("passage", "in")
    assert list(door.controller.inside) == ["P001"]
    assert list(door.log.saved_state["occupancy"]) == ["P001"]
    assert door.controller.state == "idle" and door.lock.moves[-1] == "secure"


def test_a_second_entry_without_an_exit_is_refused_as_anti_passback(door):
    enter(door)
    door.clock.advance(10)
    door.controller.handle(BadgeRead("outside", BADGE))
    assert door.log.events[-1]["reason"] == "anti_passback"


def test_an_unlock_window_that_ends_without_the_door_opening_secures_the_lock(door):
    door.controller.handle(BadgeRead("outside", BADGE))
    door.controller.handle(GatePassage(count=1, metal=False))
    door.clock.advance(door.controller.policy.unlock_window_s + 0.1)
    door.controller.tick()
    assert not door.lock.is_released and door.controller.state == "idle"


def test_a_door_opened_while_locked_is_a_forced_door_alarm(door):
    door.controller.handle(DoorOpened())
    assert door.log.types()[-1] == "door_forced"


def test_a_door_left_open_raises_the_held_open_alarm(door):
    door.controller.handle(DoorOpened())
    door.clock.advance(door.controller.policy.door_held_open_s + 1)
    door.controller.tick()
    assert door.log.types()[-1] == "door_held_open"


def test_a_passage_the_log_refuses_is_kept_with_its_occupancy_and_the_door_goes_idle(door):
    door.controller.handle(BadgeRead("outside", BADGE))
    door.controller.handle(GatePassage(count=1, metal=False))
    door.controller.handle(DoorOpened())
    door.log.refusing = True
    door.controller.handle(DoorClosed())
    assert door.controller.state == "idle" and "storage" in door.controller.faults
    assert [i["type"] for i in door.log.backlog] == ["hardware_fault", "passage"]
    door.log.refusing = False
    door.controller.store_backlog()
    assert door.log.types()[-3:] == ["hardware_fault", "passage", "hardware_fault"]
    assert list(door.log.saved_state["occupancy"]) == ["P001"] and "storage" not in door.controller.faults


# ---------------------------------------------------------------------- exit button


def test_the_exit_button_releases_at_once_and_is_recorded(door):
    door.controller.handle(ExitButtonPressed())
    assert door.lock.is_released and door.log.types()[-1] == "exit_button"


def test_the_exit_button_releases_even_when_the_log_refuses_and_the_press_is_stored_later(door):
    door.log.refusing = True
    pressed_at = door.clock.now().isoformat(timespec="milliseconds")
    door.controller.handle(ExitButtonPressed())
    assert door.lock.is_released
    door.clock.advance(30)
    door.log.refusing = False
    door.controller.store_backlog()
    [press] = [e for e in door.log.events if e["type"] == "exit_button"]
    assert press["ts"] == pressed_at


def test_a_grant_the_log_refuses_keeps_the_lock_secured(door):
    door.controller.handle(BadgeRead("outside", BADGE))
    door.log.refusing = True
    door.controller.handle(GatePassage(count=1, metal=False))
    assert not door.lock.is_released
    assert "access_granted" not in [i["type"] for i in door.log.backlog]


def test_the_only_person_inside_is_credited_with_an_exit_by_button(door):
    enter(door)
    door.clock.advance(60)
    door.controller.handle(ExitButtonPressed())
    door.controller.handle(DoorOpened())
    door.controller.handle(DoorClosed())
    passage = door.log.events[-1]
    assert passage["person"]["person_id"] == "P001" and passage["detail"]["attributed"] is True
    assert door.controller.inside == {}


# ---------------------------------------------------------------------- lockdown and commands


def test_lockdown_denies_entries_and_is_stored_with_the_door_state(door):
    door.controller.set_lockdown(True, "duty officer")
    assert door.log.types()[-1] == "lockdown_on" and door.log.saved_state["lockdown"] is True
    door.controller.handle(BadgeRead("outside", BADGE))
    assert door.log.events[-1]["reason"] == "lockdown"


def test_a_lockdown_is_kept_across_a_restart_on_the_same_log(door):
    door.controller.set_lockdown(True, "duty officer")
    again = memory_door(person("P001", badge=BADGE), log=door.log)
    assert again.controller.lockdown is True


def test_a_passage_cut_off_by_a_crash_with_the_door_open_is_recorded_at_the_next_start(door):
    door.controller.handle(BadgeRead("outside", BADGE))
    door.controller.handle(GatePassage(count=1, metal=False))
    door.controller.handle(DoorOpened())  # P001 is in the doorway; the process dies here (no stop())
    again = memory_door(person("P001", badge=BADGE), log=door.log)
    passage = again.log.events[-1]
    assert again.log.types()[-2:] == ["controller_started", "passage"]
    assert (passage["direction"], passage["person"]["person_id"], passage["credential"]["kind"]) == (
        "in", "P001", "badge")
    assert passage["detail"]["at_restart"] is True and passage["detail"]["open_s"] is None
    assert list(again.controller.inside) == ["P001"] and again.log.saved_state["passage_open"] is None
    third = memory_door(person("P001", badge=BADGE), log=again.log)  # recorded once, not at every start
    assert third.log.types().count("passage") == 1


def test_a_grant_that_lapsed_unopened_before_a_crash_records_no_passage(door):
    door.controller.handle(BadgeRead("outside", BADGE))
    door.controller.handle(GatePassage(count=1, metal=False))  # released, never opened; then the crash
    again = memory_door(person("P001", badge=BADGE), log=door.log)
    assert "passage" not in again.log.types() and again.controller.inside == {}


def test_a_completed_passage_leaves_nothing_for_the_next_start(door):
    enter(door)
    again = memory_door(person("P001", badge=BADGE), log=door.log)
    assert again.log.types().count("passage") == 1 and list(again.controller.inside) == ["P001"]


def test_the_action_table_covers_every_command_the_parser_accepts():
    assert set(CommandRunner.ACTIONS) == set(commands.ACTIONS)


def test_a_lockdown_command_runs_through_the_action_table_and_is_audited(door):
    audit = command(door, {"id": "c1", "action": "lockdown", "by": "duty officer"})
    assert door.controller.lockdown is True
    assert audit["type"] == "command" and audit["detail"]["ok"] is True
    assert audit["detail"]["claimed_by"] == "duty officer"


def test_a_revoke_command_revokes_through_the_roster_port(door):
    audit = command(door, {"id": "c2", "action": "revoke", "person_id": "P001", "reason": "left the project"})
    assert audit["detail"]["ok"] is True and door.roster.get("P001").status == "revoked"
    door.controller.handle(BadgeRead("outside", BADGE))
    assert door.log.events[-1]["reason"] == "revoked"


def test_a_revoke_of_an_unknown_person_is_answered_with_the_roster_error(door):
    answers = []
    door.controller.command_results.append(lambda *a: answers.append(a))
    command(door, {"id": "c3", "action": "revoke", "person_id": "P404", "reason": "x"})
    assert answers == [("c3", False, "cannot revoke P404: no such person in the roster")]


def test_a_replay_command_is_handed_to_the_replay_requests(door):
    asked = []
    door.controller.replay_requests.append(asked.append)
    command(door, {"id": "c4", "action": "replay", "from_seq": 1})
    assert asked == [1]


def test_a_command_id_runs_once(door):
    command(door, {"id": "c5", "action": "lockdown"})
    command(door, {"id": "c6", "action": "release_lockdown"})
    audit = command(door, {"id": "c5", "action": "lockdown"})
    assert door.controller.lockdown is False and audit["detail"]["error"] == "command id 'c5' already executed"


def test_a_command_whose_audit_is_deferred_still_runs_only_once(door):
    door.log.refusing = True
    command(door, {"id": "c7", "action": "lockdown"})
    command(door, {"id": "c8", "action": "release_lockdown"})
    command(door, {"id": "c7", "action": "lockdown"})
    assert door.controller.lockdown is False


def test_a_command_the_parser_refused_is_audited_and_not_run(door):
    door.controller.handle(RemoteCommand("c9", "lockdown", {}, None, "refused for the test"))
    assert door.controller.lockdown is False
    audit = door.log.events[-1]
    assert (audit["detail"]["ok"], audit["detail"]["error"]) == (False, "refused for the test")


def test_a_command_with_an_action_missing_from_the_table_is_answered_not_raised(door):
    door.controller.handle(RemoteCommand("c10", "open_sesame", {}, None))
    assert door.log.events[-1]["detail"]["ok"] is False


def test_a_status_command_tells_the_status_listeners(door):
    told = []
    door.controller.status_listeners.append(lambda: told.append(door.controller.status()))
    command(door, {"id": "c11", "action": "status"})
    assert told and told[-1]["state"] == "idle"

