"""The PIN check runs off the door's loop (DESIGN.md: free egress is never blocked by software): after '#'
the door waits for the verdict as an input, handles every other input meanwhile, and a verdict that comes
after its wait ended changes nothing. In-memory ports; the verdicts are handed over when the test says."""

from __future__ import annotations

import pytest

from firmware_py.core.inputs import BadgeRead, ExitButtonPressed, GatePassage, KeypadKeys, PinChecked
from tests.fixtures.memory_ports import memory_door
from tests.unit.test_pin_entry import BADGE, DURESS_PIN, PIN, holder, pin_config


@pytest.fixture
def door():
    return memory_door(holder(), cfg=pin_config(), pin_checks_at_once=False)


def enter(door, keys: str) -> None:
    door.controller.handle(BadgeRead("outside", BADGE))
    door.controller.handle(KeypadKeys("outside", keys))


def test_the_exit_button_releases_at_once_while_a_pin_is_checked(door):
    enter(door, f"{PIN}#")
    assert door.controller.state == "pin" and len(door.pin_checker.pending) == 1
    door.controller.handle(ExitButtonPressed())
    assert door.lock.is_released and door.controller.state == "released"
    assert [e["reason"] for e in door.log.events if e["type"] == "access_denied"] == ["door_busy"]
    before = (list(door.log.events), list(door.lock.moves), door.controller.state)
    door.pin_checker.answer()  # the right PIN's verdict, after the wait ended: nothing changes
    assert (door.log.events, door.lock.moves, door.controller.state) == before


@pytest.mark.parametrize(("keys", "outcome"), [
    (f"{PIN}#", ["access_granted"]),
    (f"{DURESS_PIN}#", ["duress", "access_granted"]),
    ("1357#", ["access_denied"]),
])
def test_the_verdict_that_comes_back_decides_as_before(door, keys, outcome):
    enter(door, keys)
    assert door.log.types() == ["controller_started"] and not door.lock.is_released
    door.pin_checker.answer()
    if outcome == ["access_denied"]:
        assert door.log.events[-1]["reason"] == "pin_incorrect" and door.controller.state == "idle"
    else:
        door.controller.handle(GatePassage(count=1, metal=False))
        assert door.lock.is_released
    assert door.log.types()[1:] == outcome


def test_keys_while_the_pin_is_checked_are_ignored(door):
    enter(door, f"{PIN}#")
    door.controller.handle(KeypadKeys("outside", "1357#"))
    assert len(door.pin_checker.pending) == 1
    door.pin_checker.answer()
    assert door.controller.state == "screening"


def test_a_verdict_after_a_lockdown_ended_the_wait_changes_nothing(door):
    enter(door, f"{PIN}#")
    door.controller.set_lockdown(True, "duty officer")
    before = (list(door.log.events), list(door.lock.moves), door.controller.state)
    door.pin_checker.answer()
    assert (door.log.events, door.lock.moves, door.controller.state) == before
    assert [e["reason"] for e in door.log.events if e["type"] == "access_denied"] == ["lockdown"]


def test_a_check_that_never_answers_ends_in_pin_timeout_and_its_late_verdict_changes_nothing(door):
    enter(door, f"{PIN}#")
    door.clock.advance(door.controller.policy.pin_timeout_s + 0.1)
    door.controller.tick()
    assert door.log.events[-1]["reason"] == "pin_timeout" and door.controller.state == "idle"
    before = list(door.log.events)
    door.pin_checker.answer()
    assert door.log.events == before and door.controller.state == "idle" and not door.lock.is_released


def test_the_time_limit_starts_again_at_hash_for_the_check(door):
    door.controller.handle(BadgeRead("outside", BADGE))
    door.clock.advance(door.controller.policy.pin_timeout_s - 1)
    door.controller.handle(KeypadKeys("outside", f"{PIN}#"))
    door.clock.advance(2)
    door.controller.tick()
    door.pin_checker.answer()
    assert door.controller.state == "screening"


def test_a_verdict_for_another_check_or_not_a_verdict_opens_nothing(door):
    enter(door, f"{PIN}#")
    door.controller.handle(PinChecked(99, "match"))
    assert door.controller.state == "pin"
    (asked,) = door.pin_checker.pending
    door.controller.handle(PinChecked(asked.ticket, "yes"))
    assert door.log.events[-1]["reason"] == "pin_incorrect" and not door.lock.is_released
