"""The simulated world drives the real drivers from below, and reads their outputs as the hardware would."""

from dataclasses import replace

import pytest

from drivers.door_hardware import build_door_hardware
from firmware_py.config.schema import BadgeReaderConfig, IdReaderConfig
from firmware_py.core.inputs import DoorClosed, DoorOpened, ExitButtonPressed, GatePassage, TamperChanged
from simulator.gpio_world import GpioWorld
from tests.fixtures.gpio import make_hardware_config

READERS = dict(
    id_readers=(IdReaderConfig(side="outside", port="/dev/null", baudrate=115200, poll_interval_s=0.3,
                               response_timeout_s=1.0, tamper_pin=20),),
    badge_readers=(BadgeReaderConfig(side="inside", reader_name="Virtual PCD", tamper_pin=21),),
)


@pytest.fixture
def door(gpio_factory, gpio_events):
    """Build the world first, then the drivers on its pins; yields a function taking config changes."""
    built = []

    def build(**changes):
        hw = make_hardware_config(**READERS, **changes)
        world = GpioWorld(hw, gpio_factory)
        hardware = build_door_hardware(hw, gpio_events.post, pin_factory=gpio_factory)
        built.append(hardware)
        return world, hardware

    yield build
    for hardware in built:
        hardware.close()


def lock_config(lock_type, active_high=True):
    hw = make_hardware_config()
    return {"lock": replace(hw.lock, type=lock_type, active_high=active_high)}


def test_drivers_built_on_the_world_start_on_a_closed_door_and_post_nothing(door, gpio_events):
    world, hardware = door()
    assert not hardware.door_contact.is_open
    assert not hardware.gate.alarm_active
    assert not hardware.gate.tamper_active
    assert all(not t.is_active for t in hardware.tampers)
    assert gpio_events.drain() == []


def test_a_world_built_after_the_drivers_closes_the_door_with_an_event(gpio_factory, gpio_events):
    hw = make_hardware_config()
    hardware = build_door_hardware(hw, gpio_events.post, pin_factory=gpio_factory)
    try:
        gpio_events.drain()  # the gate tamper, floating before the world exists, reads open
        GpioWorld(hw, gpio_factory)
        events = gpio_events.drain()
        assert DoorClosed() in events
        assert not hardware.door_contact.is_open
    finally:
        hardware.close()


def test_opening_and_closing_the_door_reaches_the_controller_queue(door, gpio_events):
    world, _ = door()
    world.open_door()
    world.close_door()
    assert gpio_events.drain() == [DoorOpened(), DoorClosed()]


def test_a_door_contact_wired_with_pull_down_follows_the_world_too(door, gpio_events):
    world, hardware = door(door_contact=replace(make_hardware_config().door_contact, pull_up=False))
    assert not hardware.door_contact.is_open
    world.open_door()
    assert hardware.door_contact.is_open
    assert gpio_events.drain() == [DoorOpened()]


def test_pressing_the_exit_button_posts_one_press(door, gpio_events):
    world, _ = door()
    world.press_exit()
    assert gpio_events.drain() == [ExitButtonPressed()]


def test_one_person_walking_through_is_one_clean_passage(door, gpio_events):
    world, _ = door()
    world.walk_through()
    assert gpio_events.get() == GatePassage(count=1, metal=False)


def test_two_people_walking_through_together_are_counted_as_two(door, gpio_events):
    world, _ = door()
    world.walk_through(persons=2)
    assert gpio_events.get() == GatePassage(count=2, metal=False)
    assert gpio_events.drain() == []


def test_a_person_carrying_metal_trips_the_nc_alarm_contact(door, gpio_events):
    world, _ = door()
    world.walk_through(metal=True)
    assert gpio_events.get() == GatePassage(count=1, metal=True)
    assert not world.gate_alarm


def test_a_person_carrying_metal_trips_a_normally_open_alarm_contact(door, gpio_events):
    world, hardware = door(gate=replace(make_hardware_config().gate, alarm_contact="normally_open"))
    assert not hardware.gate.alarm_active
    world.walk_through(metal=True)
    assert gpio_events.get() == GatePassage(count=1, metal=True)


def test_cutting_the_nc_alarm_wire_reads_as_an_alarm(door, gpio_events):
    world, hardware = door()
    world.cut_alarm_wire()
    assert hardware.gate.alarm_active
    assert gpio_events.get() == GatePassage(count=0, metal=True)


def test_opening_a_reader_housing_by_name_posts_tamper(door, gpio_events):
    world, _ = door()
    world.set_tamper("id_reader.outside", True)
    world.set_tamper("id_reader.outside", False)
    assert gpio_events.drain() == [TamperChanged("id_reader.outside", True), TamperChanged("id_reader.outside", False)]


def test_opening_an_enclosure_by_pin_posts_tamper(door, gpio_events):
    world, _ = door()
    world.set_tamper(21, True)
    assert gpio_events.drain() == [TamperChanged("badge_reader.inside", True)]
    assert world.tampers["badge_reader.inside"]


def test_an_unknown_tamper_contact_is_an_error(door):
    world, _ = door()
    with pytest.raises(KeyError, match="configured"):
        world.set_tamper("id_reader.inside", True)


@pytest.mark.parametrize("lock_type,active_high", [("fail_secure", True), ("fail_secure", False),
                                                   ("fail_safe", True), ("fail_safe", False)])
def test_the_world_sees_the_lock_released_and_secured(door, lock_type, active_high):
    world, hardware = door(**lock_config(lock_type, active_high))
    assert not world.lock_released
    hardware.lock.release()
    assert world.lock_released
    hardware.lock.secure()
    assert not world.lock_released


def test_a_maglock_stays_held_after_the_hardware_is_closed(door):
    world, hardware = door(**lock_config("fail_safe"))
    hardware.lock.release()
    hardware.close()
    assert world.lock_energised
    assert not world.lock_released


def test_the_world_sees_the_indicators(door):
    world, hardware = door()
    hardware.indicators.show("granted", "outside")
    assert world.leds == {"green_outside": True, "red_outside": False, "green_inside": False, "red_inside": False}
    assert not world.buzzer
    hardware.indicators.show("alarm", "inside")
    assert world.leds["red_inside"]
    assert world.buzzer


def test_building_fails_cleanly_when_a_pin_is_taken(gpio_factory, gpio_events):
    from gpiozero import LED

    hw = make_hardware_config()
    squatter = LED(hw.gate.alarm_pin, pin_factory=gpio_factory)
    with pytest.raises(Exception, match="in use"):
        build_door_hardware(hw, gpio_events.post, pin_factory=gpio_factory)
    squatter.close()
    # Everything built before the failure was released again, so a second attempt works.
    build_door_hardware(hw, gpio_events.post, pin_factory=gpio_factory).close()
