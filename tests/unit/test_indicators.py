"""Indicator patterns, read back as pin levels on mock pins."""

import time

import pytest

from drivers import indicators as ind
from drivers.indicators import Indicators

PINS = {"buzzer": 23, "green_outside": 5, "red_outside": 6, "green_inside": 13, "red_inside": 19}


@pytest.fixture
def lights(gpio_factory):
    device = Indicators(buzzer_pin=23, green_outside_pin=5, red_outside_pin=6, green_inside_pin=13,
                        red_inside_pin=19, pin_factory=gpio_factory)
    yield device
    device.close()


def levels(factory) -> dict[str, bool]:
    return {name: bool(factory.pin(pin).state) for name, pin in PINS.items()}


def lit(factory) -> set[str]:
    return {name for name, on in levels(factory).items() if on}


def wait_for_transitions(pin, n: int, timeout: float = 2.0) -> list[bool]:
    deadline = time.monotonic() + timeout
    while len(pin.states) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return [s.state for s in pin.states]


def test_indicators_start_with_everything_off(lights, gpio_factory):
    assert lit(gpio_factory) == set()
    assert lights.patterns == {"outside": "idle", "inside": "idle"}


def test_granted_outside_lights_only_the_outside_green(lights, gpio_factory):
    lights.show("granted", "outside")
    assert lit(gpio_factory) == {"green_outside"}


def test_granted_on_both_sides_lights_both_greens(lights, gpio_factory):
    lights.show("granted")
    assert lit(gpio_factory) == {"green_outside", "green_inside"}


def test_denied_lights_red_and_beeps_three_times(lights, gpio_factory):
    buzzer = gpio_factory.pin(PINS["buzzer"])
    buzzer.clear_states()
    lights.show("denied", "inside")
    assert levels(gpio_factory)["red_inside"]
    states = wait_for_transitions(buzzer, 7)
    assert states == [False, True, False, True, False, True, False]
    time.sleep(ind.BEEP_OFF_S + 0.05)  # the last pause ends the pattern
    assert lit(gpio_factory) == {"red_inside"}  # the red stays until idle; the beeps end
    assert lights.state["buzzer"] == "off"


def test_alarm_lights_red_and_sounds_the_buzzer_continuously(lights, gpio_factory):
    lights.show("alarm", "outside")
    time.sleep(0.3)
    assert lit(gpio_factory) == {"red_outside", "buzzer"}
    assert [s.state for s in gpio_factory.pin(PINS["buzzer"]).states] == [False, True]


def test_screening_wait_blinks_green(lights, gpio_factory):
    green = gpio_factory.pin(PINS["green_outside"])
    green.clear_states()
    lights.show("screening_wait", "outside")
    assert wait_for_transitions(green, 4)[:4] == [False, True, False, True]
    assert not levels(gpio_factory)["red_outside"]


def test_idle_turns_that_side_off(lights, gpio_factory):
    lights.show("granted", "both")
    lights.show("idle", "outside")
    assert lit(gpio_factory) == {"green_inside"}


def test_idle_on_both_sides_silences_an_alarm(lights, gpio_factory):
    lights.show("alarm")
    lights.show("idle")
    assert lit(gpio_factory) == set()


def test_an_alarm_on_one_side_is_not_silenced_when_the_other_side_goes_idle(lights, gpio_factory):
    lights.show("alarm", "inside")
    lights.show("granted", "outside")
    lights.show("idle", "outside")
    assert lit(gpio_factory) == {"red_inside", "buzzer"}


def test_the_buzzer_stops_when_the_alarm_ends_even_if_the_other_side_shows_denied(lights, gpio_factory):
    lights.show("denied", "outside")
    lights.show("alarm", "inside")
    lights.show("idle", "inside")
    assert lit(gpio_factory) == {"red_outside"}
    assert lights.state["buzzer"] == "off"


def test_a_new_pattern_replaces_the_old_one_on_that_side(lights, gpio_factory):
    lights.show("screening_wait", "outside")
    lights.show("denied", "outside")
    assert levels(gpio_factory)["red_outside"]
    assert not levels(gpio_factory)["green_outside"]
    assert lights.state["green_outside"] == "off"


def test_state_reports_what_each_output_does(lights):
    lights.show("screening_wait", "outside")
    lights.show("alarm", "inside")
    assert lights.state == {"green_outside": "blinking", "red_outside": "off", "green_inside": "off",
                            "red_inside": "on", "buzzer": "on"}
    assert lights.patterns == {"outside": "screening_wait", "inside": "alarm"}


def test_an_unknown_pattern_is_rejected(lights):
    with pytest.raises(ValueError, match="unknown indicator pattern"):
        lights.show("party")


def test_an_unknown_side_is_rejected(lights):
    with pytest.raises(ValueError, match="side"):
        lights.show("granted", "left")


def test_close_turns_everything_off(gpio_factory):
    device = Indicators(buzzer_pin=23, green_outside_pin=5, red_outside_pin=6, green_inside_pin=13,
                        red_inside_pin=19, pin_factory=gpio_factory)
    device.show("alarm")
    device.close()
    assert lit(gpio_factory) == set()
