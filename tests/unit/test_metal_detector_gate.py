"""The gate's dry contacts on mock pins: walk-throughs, the NC alarm wiring, the tamper contact.

Contacts switch to GND with pull-ups: a closed contact is a low pin. The NC
alarm contact is closed (low) while quiet and opens (high) on alarm; the
transit output closes (low) briefly per person. The walk-through window is
short here (TEST_WINDOW_S) so each test waits well under a second.
"""

import time

import pytest

from drivers.metal_detector_gate import MetalDetectorGate
from firmware_py.core.inputs import GatePassage, TamperChanged
from tests.fixtures.gpio import TEST_WINDOW_S

ALARM, PASSAGE, TAMPER = 24, 25, 26


@pytest.fixture
def make_gate(gpio_factory, gpio_events):
    """Build a gate on quiet contacts (alarm contact as wired, transit open, tamper shut)."""
    gates = []

    def make(alarm_contact="normally_closed", **kw):
        gate = MetalDetectorGate(ALARM, post=gpio_events.post, alarm_contact=alarm_contact, passage_pin=PASSAGE,
                                 tamper_pin=TAMPER, passage_window_s=TEST_WINDOW_S, pin_factory=gpio_factory, **kw)
        gates.append(gate)
        quiet_alarm(gpio_factory, alarm_contact)
        gpio_factory.pin(TAMPER).drive_low()
        gpio_events.drain()
        return gate

    yield make
    for gate in gates:
        gate.close()


def quiet_alarm(factory, alarm_contact="normally_closed"):
    pin = factory.pin(ALARM)
    pin.drive_low() if alarm_contact == "normally_closed" else pin.drive_high()


def alarm(factory, alarm_contact="normally_closed"):
    pin = factory.pin(ALARM)
    pin.drive_high() if alarm_contact == "normally_closed" else pin.drive_low()


def pulse(factory):
    pin = factory.pin(PASSAGE)
    pin.drive_low()
    time.sleep(0.02)
    pin.drive_high()


def test_one_person_without_metal_is_one_clean_passage(make_gate, gpio_factory, gpio_events):
    make_gate()
    pulse(gpio_factory)
    assert gpio_events.get() == GatePassage(count=1, metal=False)


def test_one_person_with_metal_is_one_passage_with_metal(make_gate, gpio_factory, gpio_events):
    make_gate()
    alarm(gpio_factory)
    pulse(gpio_factory)
    quiet_alarm(gpio_factory)
    assert gpio_events.get() == GatePassage(count=1, metal=True)


def test_two_people_close_together_are_one_passage_of_two(make_gate, gpio_factory, gpio_events):
    make_gate()
    pulse(gpio_factory)
    time.sleep(TEST_WINDOW_S / 3)
    pulse(gpio_factory)
    assert gpio_events.get() == GatePassage(count=2, metal=False)
    assert gpio_events.drain() == []


def test_an_alarm_after_the_pulse_but_within_the_window_belongs_to_the_passage(make_gate, gpio_factory, gpio_events):
    make_gate()
    pulse(gpio_factory)
    time.sleep(TEST_WINDOW_S / 3)
    alarm(gpio_factory)
    quiet_alarm(gpio_factory)
    assert gpio_events.get() == GatePassage(count=1, metal=True)


def test_people_further_apart_than_the_window_are_separate_passages(make_gate, gpio_factory, gpio_events):
    make_gate()
    pulse(gpio_factory)
    assert gpio_events.get() == GatePassage(count=1, metal=False)
    pulse(gpio_factory)
    assert gpio_events.get() == GatePassage(count=1, metal=False)


def test_nothing_is_reported_before_the_window_closes(make_gate, gpio_factory, gpio_events):
    gate = make_gate()
    pulse(gpio_factory)
    assert gpio_events.drain() == []
    assert gate.walk_through_in_progress
    assert gpio_events.get() == GatePassage(count=1, metal=False)


def test_an_alarm_without_a_transit_pulse_is_a_passage_of_nobody_with_metal(make_gate, gpio_factory, gpio_events):
    make_gate()
    alarm(gpio_factory)
    quiet_alarm(gpio_factory)
    assert gpio_events.get() == GatePassage(count=0, metal=True)


def test_a_cut_alarm_wire_reads_as_an_alarm_with_nc_wiring(make_gate, gpio_factory, gpio_events):
    gate = make_gate("normally_closed")
    gpio_factory.pin(ALARM).drive_high()  # the wire is cut: the pull-up takes the pin high
    assert gate.alarm_active
    assert gpio_events.get() == GatePassage(count=0, metal=True)


def test_people_passing_while_the_alarm_wire_is_cut_are_reported_with_metal(make_gate, gpio_factory, gpio_events):
    make_gate("normally_closed")
    gpio_factory.pin(ALARM).drive_high()
    assert gpio_events.get() == GatePassage(count=0, metal=True)
    pulse(gpio_factory)
    assert gpio_events.get() == GatePassage(count=1, metal=True)


def test_normally_open_wiring_reads_a_closing_contact_as_the_alarm(make_gate, gpio_factory, gpio_events):
    gate = make_gate("normally_open")
    assert not gate.alarm_active
    alarm(gpio_factory, "normally_open")
    pulse(gpio_factory)
    quiet_alarm(gpio_factory, "normally_open")
    assert gpio_events.get() == GatePassage(count=1, metal=True)


def test_opening_the_gate_cabinet_posts_tamper(make_gate, gpio_factory, gpio_events):
    gate = make_gate()
    gpio_factory.pin(TAMPER).drive_high()
    assert gpio_events.drain() == [TamperChanged(device="gate", active=True)]
    assert gate.tamper_active
    gpio_factory.pin(TAMPER).drive_low()
    assert gpio_events.drain() == [TamperChanged(device="gate", active=False)]


def test_close_reports_a_walk_through_still_in_progress(make_gate, gpio_factory, gpio_events):
    gate = make_gate()
    pulse(gpio_factory)
    gate.close()
    assert gpio_events.drain() == [GatePassage(count=1, metal=False)]
    time.sleep(TEST_WINDOW_S * 1.5)
    assert gpio_events.drain() == []  # the cancelled window does not report it twice


def test_a_gate_without_a_transit_output_reports_alarms_only(gpio_factory, gpio_events):
    gate = MetalDetectorGate(ALARM, post=gpio_events.post, passage_window_s=TEST_WINDOW_S, pin_factory=gpio_factory)
    quiet_alarm(gpio_factory)
    alarm(gpio_factory)
    quiet_alarm(gpio_factory)
    assert gpio_events.get() == GatePassage(count=0, metal=True)
    gate.close()


def test_an_unknown_alarm_contact_is_rejected(gpio_factory, gpio_events):
    with pytest.raises(ValueError, match="normally_closed"):
        MetalDetectorGate(ALARM, post=gpio_events.post, alarm_contact="NC", pin_factory=gpio_factory)
