"""The second factor at the door (GB/T 37078 §6.3-6.4) on in-memory ports: a credential the policy allows
waits for the person's PIN where the config asks for one; a door that asks none decides as before."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest

from firmware_py.core.inputs import BadgeRead, DoorClosed, DoorOpened, ExitButtonPressed, GatePassage, KeypadKeys
from firmware_py.core.pin import hash_pin
from tests.fixtures.memory_ports import example_config, memory_door, person

BADGE = "04A1B2C3D4"
PIN, DURESS_PIN = "2580", "2581"


@cache
def hashes() -> tuple[str, str]:
    return hash_pin(PIN), hash_pin(DURESS_PIN)


def pin_config(**policy):
    cfg = example_config()
    return replace(cfg, policy=replace(cfg.policy, **({"pin_required": True} | policy)))


def holder(**changes):
    pin_hash, duress_hash = hashes()
    return person("P001", badge=BADGE, pin_hash=pin_hash, duress_pin_hash=duress_hash, **changes)


@pytest.fixture
def door():
    return memory_door(holder(), cfg=pin_config())


def card_and_pin(door, keys: str) -> None:
    door.controller.handle(BadgeRead("outside", BADGE))
    door.controller.handle(KeypadKeys("outside", keys))


def test_a_card_alone_does_not_open_a_door_that_asks_for_a_pin(door):
    door.controller.handle(BadgeRead("outside", BADGE))
    assert door.controller.state == "pin" and not door.lock.is_released
    assert door.log.types() == ["controller_started"]
    door.controller.handle(GatePassage(count=1, metal=False))
    assert "access_granted" not in door.log.types() and not door.lock.is_released


def test_the_right_pin_goes_on_to_screening_and_the_grant(door):
    card_and_pin(door, f"{PIN}#")
    assert door.controller.state == "screening"
    door.controller.handle(GatePassage(count=1, metal=False))
    assert door.log.types()[-1] == "access_granted" and door.lock.is_released


def test_keys_may_come_one_report_at_a_time_and_star_starts_again(door):
    door.controller.handle(BadgeRead("outside", BADGE))
    for keys in ("9", "9", "*", PIN[:2], PIN[2:], "#"):
        door.controller.handle(KeypadKeys("outside", keys))
    assert door.controller.state == "screening"


def test_a_wrong_pin_is_denied_as_pin_incorrect(door):
    card_and_pin(door, "1357#")
    denied = door.log.events[-1]
    assert (denied["type"], denied["reason"]) == ("access_denied", "pin_incorrect")
    assert door.controller.state == "idle" and not door.lock.is_released


def test_no_pin_in_time_is_denied_as_pin_timeout(door):
    door.controller.handle(BadgeRead("outside", BADGE))
    door.controller.handle(KeypadKeys("outside", PIN))  # never ended with '#'
    door.clock.advance(door.controller.policy.pin_timeout_s + 0.1)
    door.controller.tick()
    denied = door.log.events[-1]
    assert (denied["type"], denied["reason"]) == ("access_denied", "pin_timeout")
    assert door.controller.state == "idle"


def test_three_wrong_pins_lock_the_reader_out(door):
    for _ in range(3):
        card_and_pin(door, "1357#")
    assert "repeated_failures" in door.log.types()
    card_and_pin(door, f"{PIN}#")
    assert door.log.events[-1]["reason"] == "reader_locked"
    assert door.controller.state == "idle"


def test_a_right_pin_after_a_card_does_not_forget_the_wrong_pins_before_it(door):
    card_and_pin(door, "1357#")
    card_and_pin(door, "1357#")
    door.controller.handle(BadgeRead("outside", BADGE))  # a grant by card alone would reset the count
    assert door.controller.reader_guard._readers["badge_reader.outside"].failures


def test_a_person_without_a_pin_cannot_pass_a_door_that_asks_for_one():
    door = memory_door(person("P001", badge=BADGE), cfg=pin_config())
    card_and_pin(door, "0000#")
    assert door.log.events[-1]["reason"] == "pin_incorrect"


def test_keys_with_no_pin_asked_for_are_ignored(door):
    door.controller.handle(KeypadKeys("outside", f"{PIN}#"))
    assert door.log.types() == ["controller_started"] and door.controller.state == "idle"


def test_keys_at_the_other_keypad_do_not_count(door):
    door.controller.handle(BadgeRead("outside", BADGE))
    door.controller.handle(KeypadKeys("inside", f"{PIN}#"))
    assert door.controller.state == "pin"


def test_leaving_never_asks_for_a_pin():
    door = memory_door(holder(), cfg=pin_config())
    door.controller.inside["P001"] = {"name": "x", "role": "staff", "since": "2026-11-23T08:00:00+08:00"}
    door.controller.handle(BadgeRead("inside", BADGE))
    assert door.controller.state == "screening"


def test_a_door_that_asks_no_pin_grants_on_the_card_as_before():
    door = memory_door(holder())
    door.controller.handle(BadgeRead("outside", BADGE))
    assert door.controller.state == "screening"


@pytest.mark.parametrize("policy, asked", [
    ({"pin_required": False, "pin_schedule_groups": ("office",)}, True),
    ({"pin_required": False, "pin_schedule_groups": ("evening",)}, False),
    ({"pin_required": False, "pin_roles": ("staff",)}, True),
    ({"pin_required": False, "pin_roles": ("visitor",)}, False),
])
def test_a_pin_is_asked_of_the_schedule_groups_and_roles_the_config_names(policy, asked):
    door = memory_door(holder(), cfg=pin_config(**policy))
    door.controller.handle(BadgeRead("outside", BADGE))
    assert (door.controller.state == "pin") is asked


def test_the_exit_button_during_a_pin_wait_records_the_one_outside_as_door_busy(door):
    door.controller.handle(BadgeRead("outside", BADGE))
    door.controller.handle(ExitButtonPressed())
    assert [e["reason"] for e in door.log.events if e["type"] == "access_denied"] == ["door_busy"]
    door.controller.handle(KeypadKeys("outside", f"{PIN}#"))
    assert door.controller.state == "released" and door.controller.passage.via == "exit_button"


def test_another_card_during_a_pin_wait_is_door_busy_and_the_same_card_again_changes_nothing():
    door = memory_door(holder(), person("P002", badge="04FFFFFFFF"), cfg=pin_config())
    door.controller.handle(BadgeRead("outside", BADGE))
    door.controller.handle(BadgeRead("outside", BADGE))
    assert door.log.types() == ["controller_started"]
    door.controller.handle(BadgeRead("outside", "04FFFFFFFF"))
    assert door.log.events[-1]["reason"] == "door_busy" and door.controller.state == "pin"


# ---------------------------------------------------------------------- duress


def door_side(door) -> dict:
    """What a person at the door (or someone forcing them) can see and hear, and the access events."""
    access = [{k: v for k, v in e.items() if k not in ("seq", "hash", "prev_hash")}
              for e in door.log.events if e["category"] == "access"]
    return {"lock": door.lock.moves, "indicators": door.indicators.shown, "access": access,
            "state": door.controller.state}


def walk_in(door, keys: str) -> None:
    card_and_pin(door, keys)
    door.controller.handle(GatePassage(count=1, metal=False))
    door.controller.handle(DoorOpened())
    door.controller.handle(DoorClosed())
    door.clock.advance(30)
    door.controller.tick()


def test_the_duress_pin_opens_exactly_like_the_right_one():
    plain, duress = memory_door(holder(), cfg=pin_config()), memory_door(holder(), cfg=pin_config())
    walk_in(plain, f"{PIN}#")
    walk_in(duress, f"{DURESS_PIN}#")
    assert door_side(duress) == door_side(plain)
    assert "passage" in plain.log.types()


def test_the_duress_pin_raises_a_duress_alarm_for_the_supervisor(door):
    card_and_pin(door, f"{DURESS_PIN}#")
    alarm = door.log.events[-1]
    assert (alarm["category"], alarm["type"]) == ("alarm", "duress")
    assert alarm["person"]["person_id"] == "P001" and alarm["credential"]["masked"] == BADGE
    assert alarm["detail"] == {"reader": "badge_reader.outside"}
    assert ("alarm", "both") not in door.indicators.shown


def test_a_person_without_a_duress_pin_has_no_second_pin_that_opens():
    pin_hash, _ = hashes()
    door = memory_door(person("P001", badge=BADGE, pin_hash=pin_hash), cfg=pin_config())
    card_and_pin(door, f"{DURESS_PIN}#")
    assert door.log.events[-1]["reason"] == "pin_incorrect"


def test_no_pin_typed_reaches_an_event_the_log_or_the_kept_state(caplog):
    secret_pin, secret_duress, wrong = "58209731", "58209732", "91735820"
    who = person("P001", badge=BADGE, pin_hash=hash_pin(secret_pin), duress_pin_hash=hash_pin(secret_duress))
    door = memory_door(who, cfg=pin_config())
    with caplog.at_level("DEBUG"):
        for keys in (f"{wrong}#", f"{secret_duress}#", f"{secret_pin}#"):
            walk_in(door, keys)
        door.controller.handle(KeypadKeys("outside", f"{secret_pin}#"))  # with no PIN asked for
        door.controller.handle(BadgeRead("outside", BADGE))
        door.controller.handle(KeypadKeys("outside", secret_pin))  # left to time out
        door.clock.advance(60)
        door.controller.tick()
    seen = repr(door.log.events) + repr(door.log.saved_state) + caplog.text + repr(door.controller.status())
    assert [e["type"] for e in door.log.events].count("duress") == 1
    for pin in (secret_pin, secret_duress, wrong):
        assert pin not in seen
