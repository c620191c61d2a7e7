"""DoorLock on mock pins: which level the relay pin carries for each lock type and relay polarity."""

import pytest
from gpiozero import DigitalOutputDevice
from gpiozero.exc import DeviceClosed

from drivers.door_lock import DoorLock

PIN = 17

# (lock_type, active_high) -> pin level when secure, pin level when released
LEVELS = {
    ("fail_secure", True): (False, True),   # strike: relay off = locked
    ("fail_secure", False): (True, False),  # active-low relay module inverts the pin
    ("fail_safe", True): (True, False),     # maglock: relay on = held
    ("fail_safe", False): (False, True),
}
KINDS = pytest.mark.parametrize("lock_type,active_high", list(LEVELS), ids=lambda v: str(v))


def make_lock(factory, lock_type, active_high=True):
    return DoorLock(PIN, lock_type=lock_type, active_high=active_high, pin_factory=factory)


@KINDS
def test_lock_starts_secure(gpio_factory, lock_type, active_high):
    lock = make_lock(gpio_factory, lock_type, active_high)
    pin = gpio_factory.pin(PIN)
    assert pin.function == "output"
    assert pin.state == LEVELS[lock_type, active_high][0]
    assert not lock.is_released
    lock.close()


@KINDS
def test_release_drives_the_releasing_level(gpio_factory, lock_type, active_high):
    lock = make_lock(gpio_factory, lock_type, active_high)
    lock.release()
    assert gpio_factory.pin(PIN).state == LEVELS[lock_type, active_high][1]
    assert lock.is_released
    lock.close()


@KINDS
def test_secure_after_release_drives_the_secure_level(gpio_factory, lock_type, active_high):
    lock = make_lock(gpio_factory, lock_type, active_high)
    lock.release()
    lock.secure()
    assert gpio_factory.pin(PIN).state == LEVELS[lock_type, active_high][0]
    assert not lock.is_released
    lock.close()


@KINDS
def test_close_leaves_a_released_lock_secure_and_the_pin_still_driven(gpio_factory, lock_type, active_high):
    lock = make_lock(gpio_factory, lock_type, active_high)
    lock.release()
    lock.close()
    pin = gpio_factory.pin(PIN)
    assert pin.function == "output"  # gpiozero's own close would float it, dropping a maglock
    assert pin.state == LEVELS[lock_type, active_high][0]


def test_a_fail_secure_strike_is_never_energised_while_starting(gpio_factory):
    lock = make_lock(gpio_factory, "fail_secure")
    assert [s.state for s in gpio_factory.pin(PIN).states] == [False]
    lock.close()


def test_close_frees_the_pin_for_another_device(gpio_factory):
    make_lock(gpio_factory, "fail_safe").close()
    other = DigitalOutputDevice(PIN, pin_factory=gpio_factory)
    other.close()


def test_close_twice_is_harmless(gpio_factory):
    lock = make_lock(gpio_factory, "fail_safe")
    lock.close()
    lock.close()
    assert lock.closed


def test_a_closed_lock_cannot_be_released(gpio_factory):
    lock = make_lock(gpio_factory, "fail_secure")
    lock.close()
    with pytest.raises(DeviceClosed):
        lock.release()
    assert gpio_factory.pin(PIN).state is False


def test_an_unknown_lock_type_is_rejected(gpio_factory):
    with pytest.raises(ValueError, match="fail_secure, fail_safe"):
        DoorLock(PIN, lock_type="magnetic", pin_factory=gpio_factory)
