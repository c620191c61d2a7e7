"""KeypadReader (OSDP control panel) against the emulated OSDP reader, through a real pseudo-terminal."""

import logging
import queue
import time

import osdp
import pytest

from drivers.osdp_reader import SCBK_D, KeypadReader, ReaderKeyError, parse_scbk, provision
from firmware_py.core.inputs import BadgeRead, DeviceFault, DeviceRecovered, KeypadKeys, TamperChanged
from simulator.osdp_device import OsdpReaderDevice

KEY = bytes.fromhex("5d0c9e2a7b41f3865ac2e19b04d7736f")  # this door's key for the reader (synthetic)
OTHER_KEY = bytes.fromhex("a17f03c95e2b8d4066f1c3a9b2e7d510")
WAIT = 5.0
OFFLINE_AFTER_S = 0.6


@pytest.fixture
def events():
    return queue.Queue()


@pytest.fixture
def devices():
    made = []

    def make(**kwargs):
        device = OsdpReaderDevice(**({"scbk": KEY} | kwargs))
        made.append(device)
        return device

    yield make
    for device in made:
        device.close()


@pytest.fixture
def make_reader(events, devices):  # readers close before the devices go away
    readers = []

    def make(port, **kwargs):
        options = dict(side="outside", post=events.put, scbk=KEY, offline_after_s=OFFLINE_AFTER_S,
                       retry_s=0.2, max_backoff=0.4)
        reader = KeypadReader(port, **(options | kwargs))
        readers.append(reader)
        return reader.start()

    yield make
    for reader in readers:
        reader.close()


@pytest.fixture
def device(devices):
    return devices()


@pytest.fixture
def reader(make_reader, device):
    reader = make_reader(device.port)
    assert reader.wait_online(WAIT)
    return reader


def next_event(events, kind, timeout=WAIT):
    """The next event of type ``kind``; any other event on the way fails the test."""
    event = events.get(timeout=timeout)
    assert isinstance(event, kind), event
    return event


def nothing_posted(events, within=0.5):
    try:
        event = events.get(timeout=within)
    except queue.Empty:
        return True
    pytest.fail(f"unexpected {event!r}")


def test_the_secure_channel_is_established_with_the_readers_key(reader, device, events):
    assert reader.secure_channel_active  # libosdp's control panel says so
    assert device.secure_channel_active  # and so does the peripheral at the other end
    assert reader.online and not reader.faulty
    nothing_posted(events, within=0.2)


def test_a_reader_with_another_key_is_refused_and_reported(make_reader, devices, events):
    device = devices(scbk=OTHER_KEY)
    reader = make_reader(device.port)
    fault = next_event(events, DeviceFault)
    assert fault.device == "keypad_reader.outside"
    assert "refuses the secure channel" in fault.detail and "key" in fault.detail
    assert not reader.secure_channel_active and not reader.online
    device.present_card("04A1B2C3")
    device.press_keys("1234#")
    nothing_posted(events, within=1.0)  # it keeps being refused, once reported, and nothing of it is used
    assert not reader.online


def test_a_reader_still_on_the_install_key_is_refused_outside_install_mode(make_reader, devices, events):
    device = devices(scbk=None)
    make_reader(device.port)
    assert "refuses the secure channel" in next_event(events, DeviceFault).detail
    assert device.provisioned_key is None


def test_provisioning_gives_a_new_reader_its_key_then_the_key_alone_opens_the_channel(make_reader, devices, events):
    device = devices(scbk=None)
    assert provision(device.port, scbk=KEY.hex(), timeout_s=WAIT) is True
    assert device.provisioned_key == KEY
    assert provision(device.port, scbk=KEY, timeout_s=WAIT) is False  # it holds the key already
    device.replace(scbk=device.provisioned_key)  # the reader restarts with the key it stored
    reader = make_reader(device.port)
    assert reader.wait_online(WAIT) and reader.secure_channel_active
    nothing_posted(events, within=0.2)


def test_provisioning_a_reader_that_holds_another_key_fails_and_says_why(devices):
    device = devices(scbk=OTHER_KEY)
    with pytest.raises(ReaderKeyError, match="neither this door's key nor the install key"):
        provision(device.port, scbk=KEY, timeout_s=3.0)
    assert device.provisioned_key is None


def test_in_install_mode_a_reader_online_without_the_secure_channel_is_not_believed(make_reader, devices, events,
                                                                                     caplog):
    device = devices(scbk=OTHER_KEY)  # libosdp falls back to plain text after both keys fail
    reader = make_reader(device.port, install_mode=True)
    device.present_card("04A1B2C3")
    device.press_keys("1234#")
    assert "neither this door's key nor the install key" in next_event(events, DeviceFault).detail
    nothing_posted(events, within=0.5)
    assert not reader.online
    assert "outside the secure channel ignored" in caplog.text  # they did arrive, in plain text


def test_a_reader_replaced_by_one_with_another_key_is_reported(reader, device, events):
    device.replace(scbk=OTHER_KEY)
    assert next_event(events, DeviceFault).device == "keypad_reader.outside"
    device.present_card("04A1B2C3")
    nothing_posted(events, within=1.0)
    assert not reader.online


def test_a_card_is_posted_as_a_badge_read_with_its_number_in_hex(reader, device, events):
    device.present_card("04a1b2c3d4e5f6")
    assert next_event(events, BadgeRead) == BadgeRead(side="outside", uid="04A1B2C3D4E5F6")


def test_the_pad_bits_of_a_card_number_that_is_not_whole_bytes_are_dropped(reader, device, events):
    device.present_card(bytes([0x12, 0x34, 0x56, 0xFF]), bits=26)  # Wiegand 26: 2 bits used in the last byte
    assert next_event(events, BadgeRead).uid == "123456C0"


def test_keypad_digits_star_and_hash_arrive_in_order(reader, device, events):
    device.press_keys("12")
    device.press_keys("34#")
    device.press_keys("*")
    keys = [next_event(events, KeypadKeys) for _ in range(3)]
    assert keys == [KeypadKeys("outside", "12"), KeypadKeys("outside", "34#"), KeypadKeys("outside", "*")]


def test_keypad_ascii_star_and_hash_are_taken_too(reader, device, events):
    device._submit({"event": osdp.Event.KeyPress, "reader_no": 0, "data": b"7*#"})  # readers that send ASCII
    assert next_event(events, KeypadKeys).keys == "7*#"


def test_unknown_keypad_codes_are_dropped_and_the_reader_keeps_working(reader, device, events):
    device._submit({"event": osdp.Event.KeyPress, "reader_no": 0, "data": b"\x01\xff"})
    device._submit({"event": osdp.Event.KeyPress, "reader_no": 0, "data": b"5\x02"})
    assert next_event(events, KeypadKeys).keys == "5"
    device.present_card("0102030405060708")
    assert next_event(events, BadgeRead).uid == "0102030405060708"


def test_the_keys_pressed_never_reach_the_log(make_reader, device, events, caplog):
    caplog.set_level(logging.DEBUG)
    make_reader(device.port).wait_online(WAIT)
    device.press_keys("908172#")
    event = next_event(events, KeypadKeys)
    assert "908172" not in repr(event) and "908172" not in str(event)
    assert "908172" not in caplog.text


def test_a_pattern_shown_reaches_the_reader_as_led_and_buzzer_commands(reader, device):
    reader.show("granted")
    led = device.wait_for_command(lambda c: c.command == osdp.Command.LED and c.led_color == osdp.CommandLEDColor.Green,
                                  WAIT)
    assert led is not None and led.fields["temporary"] is False
    reader.show("denied")
    assert device.wait_for_command(lambda c: c.led_color == osdp.CommandLEDColor.Red, WAIT) is not None
    beeps = device.wait_for_command(lambda c: c.command == osdp.Command.Buzzer and c.fields["control_code"] == 2,
                                    WAIT)
    assert beeps is not None and beeps.fields["rep_count"] == 3


def test_an_unknown_pattern_is_refused_with_its_name(reader):
    with pytest.raises(ValueError, match="'blink'"):
        reader.show("blink")


def test_the_readers_tamper_switch_is_reported_open_and_closed(reader, device, events):
    device.set_tamper(True)
    assert next_event(events, TamperChanged) == TamperChanged(device="keypad_reader.outside", active=True)
    device.set_tamper(False)
    assert next_event(events, TamperChanged) == TamperChanged(device="keypad_reader.outside", active=False)


def test_a_reader_opened_while_the_door_was_off_is_reported_when_the_session_starts(make_reader, device, events):
    device.set_tamper(True)
    make_reader(device.port)
    assert next_event(events, TamperChanged) == TamperChanged(device="keypad_reader.outside", active=True)


def test_an_open_reader_stays_reported_open_across_an_outage(reader, device, events):
    device.set_tamper(True)
    assert next_event(events, TamperChanged).active is True
    device.go_silent()
    next_event(events, DeviceFault)
    device.resume()
    next_event(events, DeviceRecovered)
    nothing_posted(events, within=0.5)  # the reader says "open" again: no new alarm, and no false "closed"
    device.set_tamper(False)
    assert next_event(events, TamperChanged).active is False


def test_a_silent_reader_is_reported_offline_and_back_online(reader, device, events):
    reader.show("denied")
    assert device.wait_for_command(lambda c: c.led_color == osdp.CommandLEDColor.Red, WAIT)
    device.go_silent()
    silent_at = time.monotonic()
    fault = next_event(events, DeviceFault)
    took = time.monotonic() - silent_at
    assert "does not answer" in fault.detail
    assert OFFLINE_AFTER_S - 0.1 < took < OFFLINE_AFTER_S + 1.0
    assert not reader.online and reader.faulty
    nothing_posted(events, within=1.0)  # one report per outage, however many tries
    device.commands.clear()
    device.resume()
    back_at = time.monotonic()
    assert next_event(events, DeviceRecovered).device == "keypad_reader.outside"
    assert time.monotonic() - back_at < 2.0
    assert reader.online and reader.secure_channel_active and not reader.faulty
    # the reader shows the door's pattern again, and reads again
    assert device.wait_for_command(lambda c: c.led_color == osdp.CommandLEDColor.Red, WAIT)
    device.present_card("0A0B0C0D")
    assert next_event(events, BadgeRead).uid == "0A0B0C0D"


def test_a_port_that_does_not_exist_is_reported(make_reader, events):
    make_reader("/dev/ttyNONE-osdp")
    fault = next_event(events, DeviceFault)
    assert "/dev/ttyNONE-osdp" in fault.detail


@pytest.mark.parametrize("value, message", [
    ("xyz", "32 hexadecimal digits"),
    (b"\x01" * 15, "16 bytes"),
    (SCBK_D, "install key"),
    (b"\x00" * 16, "one byte repeated"),
])
def test_a_bad_key_is_refused_with_a_message_saying_why(value, message):
    with pytest.raises(ValueError, match=message):
        parse_scbk(value)


def test_a_key_is_taken_as_hex_digits(events):
    assert parse_scbk(KEY.hex().upper()) == KEY
