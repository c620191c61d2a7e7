"""Door contact, exit button and tamper contacts on mock pins, driven as the wires would drive them.

Mock pins call the driver back synchronously (DESIGN.md), so each event is in
the queue as soon as drive_low/drive_high returns. MockPin stores but does not
apply ``bounce``; the tests check only that the configured value reaches the pin.
"""

from drivers.door_contact import DoorContact
from drivers.exit_button import ExitButton
from drivers.tamper_contact import TamperContact
from firmware_py.core.inputs import DoorClosed, DoorOpened, ExitButtonPressed, TamperChanged

DOOR, BUTTON, TAMPER = 27, 22, 26


# ------------------------------------------------------------------ door contact (reed switch to GND, pull-up)


def door_contact(factory, events, **kw):
    pin = factory.pin(DOOR)
    contact = DoorContact(DOOR, post=events.post, pin_factory=factory, **kw)
    return contact, pin


def test_door_contact_reads_a_closed_door_when_the_reed_switch_pulls_the_pin_low(gpio_factory, gpio_events):
    contact, pin = door_contact(gpio_factory, gpio_events)
    pin.drive_low()
    assert not contact.is_open
    contact.close()


def test_opening_the_door_posts_door_opened(gpio_factory, gpio_events):
    contact, pin = door_contact(gpio_factory, gpio_events)
    pin.drive_low()
    gpio_events.drain()
    pin.drive_high()
    assert gpio_events.drain() == [DoorOpened()]
    assert contact.is_open
    contact.close()


def test_closing_the_door_posts_door_closed(gpio_factory, gpio_events):
    contact, pin = door_contact(gpio_factory, gpio_events)
    pin.drive_low()
    pin.drive_high()
    gpio_events.drain()
    pin.drive_low()
    assert gpio_events.drain() == [DoorClosed()]
    contact.close()


def test_a_cut_door_contact_wire_reads_as_an_open_door(gpio_factory, gpio_events):
    contact, pin = door_contact(gpio_factory, gpio_events)
    # Nothing holds the line: the pull-up decides.
    assert contact.is_open
    contact.close()


def test_the_door_state_at_start_is_read_not_posted(gpio_factory, gpio_events):
    contact, _ = door_contact(gpio_factory, gpio_events)
    assert gpio_events.drain() == []
    contact.close()


def test_door_contact_wired_to_3v3_with_pull_down_reads_a_high_pin_as_closed(gpio_factory, gpio_events):
    contact, pin = door_contact(gpio_factory, gpio_events, pull_up=False)
    pin.drive_high()
    assert not contact.is_open
    pin.drive_low()
    assert gpio_events.drain() == [DoorClosed(), DoorOpened()]
    contact.close()


def test_door_contact_debounce_is_handed_to_the_pin(gpio_factory, gpio_events):
    contact, pin = door_contact(gpio_factory, gpio_events, bounce_s=0.03)
    assert pin.bounce == 0.03
    contact.close()


def test_door_contact_bounce_of_zero_switches_debouncing_off(gpio_factory, gpio_events):
    contact, pin = door_contact(gpio_factory, gpio_events, bounce_s=0)
    assert pin.bounce is None
    contact.close()


# ------------------------------------------------------------------ exit button (normally open to GND)


def test_pressing_the_exit_button_posts_one_event(gpio_factory, gpio_events):
    button = ExitButton(BUTTON, post=gpio_events.post, pin_factory=gpio_factory)
    pin = gpio_factory.pin(BUTTON)
    pin.drive_low()
    pin.drive_high()
    assert gpio_events.drain() == [ExitButtonPressed()]
    button.close()


def test_the_exit_button_posts_on_press_not_on_release(gpio_factory, gpio_events):
    button = ExitButton(BUTTON, post=gpio_events.post, pin_factory=gpio_factory)
    pin = gpio_factory.pin(BUTTON)
    pin.drive_low()
    assert gpio_events.drain() == [ExitButtonPressed()]
    assert button.is_pressed
    pin.drive_high()
    assert gpio_events.drain() == []
    button.close()


def test_exit_button_with_bounce_none_has_no_debounce(gpio_factory, gpio_events):
    button = ExitButton(BUTTON, post=gpio_events.post, bounce_s=None, pin_factory=gpio_factory)
    assert gpio_factory.pin(BUTTON).bounce is None
    button.close()


# ------------------------------------------------------------------ tamper contact (closed while the housing is shut)


def shut_tamper(factory, events):
    pin = factory.pin(TAMPER)
    tamper = TamperContact(TAMPER, device="id_reader.outside", post=events.post, pin_factory=factory)
    pin.drive_low()
    events.drain()
    return tamper, pin


def test_opening_a_reader_housing_posts_tamper_active(gpio_factory, gpio_events):
    tamper, pin = shut_tamper(gpio_factory, gpio_events)
    pin.drive_high()
    assert gpio_events.drain() == [TamperChanged(device="id_reader.outside", active=True)]
    assert tamper.is_active
    tamper.close()


def test_shutting_the_housing_again_posts_tamper_inactive(gpio_factory, gpio_events):
    tamper, pin = shut_tamper(gpio_factory, gpio_events)
    pin.drive_high()
    pin.drive_low()
    assert gpio_events.drain()[-1] == TamperChanged(device="id_reader.outside", active=False)
    assert not tamper.is_active
    tamper.close()


def test_a_housing_open_at_start_up_is_reported_at_once(gpio_factory, gpio_events):
    # The pin floats to its pull-up: the contact is open (or its wire cut).
    tamper = TamperContact(TAMPER, device="badge_reader.inside", post=gpio_events.post, pin_factory=gpio_factory)
    assert gpio_events.drain() == [TamperChanged(device="badge_reader.inside", active=True)]
    tamper.close()
