"""The door's rules of issue 18 on in-memory ports: the escort in the room, a busy doorway,
and every piece of rule state kept across a restart (a stop, or a crash: a new controller
on the same log without ``stop()``, its monotonic clock started again as after a power cut).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from firmware_py.core.inputs import BadgeRead, DoorClosed, DoorOpened, GatePassage, RemoteCommand
from tests.fixtures.memory_ports import MemoryDoor, memory_door, person

STAFF, SUPERVISOR, VISITOR, INSPECTOR, OTHER = "04A1B2C3D4", "04D0D0D0", "04A0A0A0", "04E1E1E1", "04B5B5B5"


@pytest.fixture
def door() -> MemoryDoor:
    return memory_door(*people())


def people():
    return (person("P001", badge=STAFF), person("S001", badge=SUPERVISOR, role="supervisor"),
            person("V001", badge=VISITOR, role="visitor"), person("I001", badge=INSPECTOR, role="inspector"),
            person("P002", badge=OTHER))


def restart(door: MemoryDoor, *, after_s: float = 0.0, crash: bool = True) -> MemoryDoor:
    """The same log and roster, a new controller ``after_s`` later; ``crash``: no ``stop()`` first."""
    if not crash:
        door.controller.stop("SIGTERM")
    return memory_door(*door.roster.persons.values(), start=door.clock.now() + timedelta(seconds=after_s),
                       log=door.log)


def pass_through(door: MemoryDoor, badge: str, side: str = "outside") -> None:
    """Badge, a clear walk-through, the door opened and closed; the loop ticks after each input."""
    for event in (BadgeRead(side, badge), GatePassage(count=1, metal=False), DoorOpened(), DoorClosed()):
        door.controller.handle(event)
        door.controller.tick()


def last(door: MemoryDoor, type_: str) -> dict:
    return next(e for e in reversed(door.log.events) if e["type"] == type_)


def present(door: MemoryDoor, badge: str, side: str = "outside") -> dict:
    door.controller.handle(BadgeRead(side, badge))
    door.controller.tick()
    return door.log.events[-1]


# ---------------------------------------------------------------------- the escort in the room


def test_a_staff_member_who_walked_out_again_escorts_no_visitor(door):
    pass_through(door, STAFF)  # 09:00:00 in
    door.clock.advance(30)
    pass_through(door, STAFF, "inside")  # 09:00:30 out
    door.clock.advance(30)
    denied = present(door, VISITOR)  # 09:01:00, inside the window of the staff member's passage in
    assert (denied["type"], denied["reason"]) == ("access_denied", "escort_required")


def test_a_visitor_is_let_through_while_the_escort_is_inside_within_the_window(door):
    pass_through(door, STAFF)
    door.clock.advance(50)
    present(door, VISITOR)
    assert door.controller.state == "screening"


def test_an_inspector_inside_escorts_no_visitor(door):
    pass_through(door, STAFF)
    pass_through(door, INSPECTOR)
    pass_through(door, STAFF, "inside")
    assert present(door, VISITOR)["reason"] == "escort_required"


def test_a_second_escort_inside_still_escorts_after_the_first_left(door):
    pass_through(door, STAFF)
    pass_through(door, SUPERVISOR)
    pass_through(door, STAFF, "inside")
    present(door, VISITOR)
    assert door.controller.state == "screening"


# ---------------------------------------------------------------------- a busy doorway


def test_a_second_card_during_someone_elses_screening_is_recorded_as_door_busy(door):
    present(door, STAFF)
    busy = present(door, OTHER)
    assert (busy["type"], busy["reason"], busy["direction"]) == ("access_denied", "door_busy", "in")
    assert busy["person"]["person_id"] == "P002" and busy["credential"] == {"kind": "badge", "masked": OTHER}
    assert door.controller.state == "screening" and door.controller.passage.person.person_id == "P001"
    door.controller.handle(GatePassage(count=1, metal=False))
    assert last(door, "access_granted")["person"]["person_id"] == "P001"


def test_an_unknown_card_during_a_passage_is_recorded_as_door_busy_with_its_credential(door):
    present(door, STAFF)
    door.controller.handle(GatePassage(count=1, metal=False))
    busy = present(door, "DEADBEEF")
    assert (busy["reason"], busy["person"], busy["credential"]["masked"]) == ("door_busy", None, "DEADBEEF")


def test_the_same_persons_card_read_again_during_their_own_screening_is_not_door_busy(door):
    present(door, STAFF)
    present(door, STAFF)
    assert "access_denied" not in door.log.types() and door.controller.state == "screening"


def test_door_busy_denials_do_not_hold_the_reader(door):
    present(door, STAFF)
    for _ in range(door.controller.policy.max_failures + 1):
        present(door, OTHER)
    assert "repeated_failures" not in door.log.types()


# ---------------------------------------------------------------------- rule state across a restart


def test_an_escorts_passage_is_kept_across_a_power_cut(door):
    pass_through(door, STAFF)  # 09:40:00 in the words
    door.clock.advance(20)
    again = restart(door, after_s=30)  # power cut at +20 s, back 30 s later
    present(again, VISITOR)
    assert again.controller.state == "screening"


def test_an_escort_who_left_before_the_restart_is_not_restored_as_one(door):
    pass_through(door, STAFF)
    pass_through(door, STAFF, "inside")
    again = restart(door, after_s=5)
    assert present(again, VISITOR)["reason"] == "escort_required"


@pytest.mark.parametrize("crash", [True, False], ids=["crash", "stop"])
def test_a_reader_hold_is_kept_across_a_restart(door, crash):
    for _ in range(door.controller.policy.max_failures):
        present(door, "DEADBEEF")
    assert "repeated_failures" in door.log.types()
    again = restart(door, after_s=10, crash=crash)
    held = present(again, STAFF)
    assert (held["reason"], held["detail"]["reader"]) == ("reader_locked", "badge_reader.outside")


def test_a_reader_hold_ends_at_its_wall_clock_deadline_after_a_restart(door):
    for _ in range(door.controller.policy.max_failures):
        present(door, "DEADBEEF")
    again = restart(door, after_s=40)
    assert present(again, STAFF)["reason"] == "reader_locked"
    again.clock.advance(door.controller.policy.reader_lockout_s - 40 + 0.1)
    present(again, STAFF)
    assert again.controller.state == "screening"


def test_a_reader_hold_restored_on_an_untrusted_clock_lasts_its_full_time_from_the_start(door):
    for _ in range(door.controller.policy.max_failures):
        present(door, "DEADBEEF")
    lockout = door.controller.policy.reader_lockout_s
    # The Pi came back without a network: its clock reads before the floor, so it cannot say the hold is over.
    again = memory_door(*people(), start=door.controller.policy.clock_floor - timedelta(days=1), log=door.log)
    assert not again.controller.clock_guard.sane
    again.clock.advance(lockout - 1)
    assert present(again, STAFF)["reason"] == "reader_locked"
    again.clock.advance(1.1)
    assert present(again, STAFF)["reason"] == "clock_unsynchronised"


def test_a_run_of_failures_is_kept_across_a_restart(door):
    for _ in range(door.controller.policy.max_failures - 1):
        present(door, "DEADBEEF")
    again = restart(door, after_s=5)
    present(again, "DEADBEEF")
    assert "repeated_failures" in again.log.types()


def test_a_grant_clears_the_kept_run_of_failures(door):
    for _ in range(door.controller.policy.max_failures - 1):
        present(door, "DEADBEEF")
    pass_through(door, STAFF)
    again = restart(door, after_s=5)
    present(again, "DEADBEEF")
    assert "repeated_failures" not in again.log.types()


def test_a_screening_under_way_is_resumed_after_a_crash(door):
    present(door, STAFF)  # the loop ticked: the screening is in the store
    again = restart(door, after_s=5)
    assert again.controller.state == "screening"
    again.controller.handle(GatePassage(count=1, metal=False))
    granted = last(again, "access_granted")
    assert granted["person"]["person_id"] == "P001" and again.lock.is_released
    assert "tailgating" not in again.log.types()


def test_a_resumed_screening_keeps_its_first_deadline(door):
    present(door, STAFF)
    window = door.controller.policy.screening_window_s
    again = restart(door, after_s=window - 5)
    again.clock.advance(5.1)
    again.controller.tick()
    assert last(again, "access_denied")["reason"] == "screening_timeout"


def test_a_screening_whose_window_passed_during_the_outage_ends_as_a_timeout_at_the_start(door):
    present(door, STAFF)
    again = restart(door, after_s=door.controller.policy.screening_window_s + 10)
    denied = last(again, "access_denied")
    assert (denied["reason"], denied["person"]["person_id"], denied["detail"]["at_restart"]) == (
        "screening_timeout", "P001", True)
    assert again.controller.state == "idle"


def test_a_completed_screening_leaves_nothing_for_the_next_start(door):
    pass_through(door, STAFF)
    again = restart(door, after_s=5)
    assert again.controller.state == "idle" and again.log.types().count("access_granted") == 1


def test_metal_at_the_gate_after_a_restart_mid_screening_is_still_denied(door):
    present(door, STAFF)
    again = restart(door, after_s=3, crash=False)
    again.controller.handle(GatePassage(count=1, metal=True))
    assert last(again, "access_denied")["reason"] == "metal_detected" and not again.lock.is_released


def test_lockdown_is_kept_across_a_crash(door):
    door.controller.handle(RemoteCommand("c1", "lockdown", {}, None))
    again = restart(door, after_s=5)
    assert present(again, STAFF)["reason"] == "lockdown"


def test_occupancy_is_kept_across_a_crash(door):
    pass_through(door, STAFF)
    again = restart(door, after_s=5)
    assert present(again, STAFF)["reason"] == "anti_passback"
    pass_through(again, STAFF, "inside")
    assert last(again, "passage")["direction"] == "out" and again.controller.inside == {}


def test_a_credential_let_through_to_screening_writes_nothing_until_the_loop_ticks(door):
    writes = []
    door.log.keep_state = lambda key, value, durable=True: writes.append((key, durable))
    door.controller.handle(BadgeRead("outside", STAFF))
    assert door.controller.state == "screening" and writes == [] and door.log.types() == ["controller_started"]
    door.controller.tick()
    assert writes == [("passage_screening", False)]  # no fsync: the next event's commit makes it durable


def test_the_grant_clears_the_kept_screening_in_its_own_transaction(door):
    present(door, STAFF)
    door.controller.handle(GatePassage(count=1, metal=False))
    assert door.log.types()[-1] == "access_granted" and door.log.saved_state["passage_screening"] is None
