"""Loading and validating the configuration file."""

from pathlib import Path

import pytest

from firmware_py.config import load_config, with_overrides
from firmware_py.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "config" / "venue.example.toml"


def write_variant(tmp_path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert old in text, f"test set-up: {old!r} not in the example config"
    path = tmp_path / "venue.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def test_the_example_config_loads():
    cfg = load_config(EXAMPLE)
    assert cfg.site.site == "hn-archive-1"
    assert cfg.site.timezone.key == "Asia/Shanghai"
    assert cfg.policy.min_training_hours == 40
    assert {"office", "extended"} <= set(cfg.calendar.schedules)


def test_a_misspelt_key_is_an_error_naming_section_and_key(tmp_path):
    path = write_variant(tmp_path, "unlock_window_s = 5", "unlock_windows_s = 5")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}: [policy] unlock_windows_s: is not a known setting" in str(err.value)


def test_a_pin_that_is_not_a_gpio_is_an_error_naming_the_value(tmp_path):
    path = write_variant(tmp_path, "pin = 17", "pin = 41")
    with pytest.raises(ConfigError, match=r"\[hardware.lock\] pin: 41 is not a GPIO pin"):
        load_config(path)


def test_two_devices_on_one_pin_are_an_error(tmp_path):
    path = write_variant(tmp_path, "pin = 22", "pin = 27")
    with pytest.raises(ConfigError, match="GPIO 27 is already used by hardware.door_contact.pin"):
        load_config(path)


def test_a_bad_choice_lists_what_is_allowed(tmp_path):
    path = write_variant(tmp_path, 'type = "fail_secure"', 'type = "magnetic"')
    with pytest.raises(ConfigError, match="'magnetic' is not one of fail_secure, fail_safe"):
        load_config(path)


def test_every_problem_of_a_file_is_reported_together(tmp_path):
    path = write_variant(tmp_path, 'timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus"\nflavour = 1')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "[site] timezone: 'Mars/Olympus' is not a known time zone" in message
    assert "[site] flavour: is not a known setting" in message


def test_an_impossible_working_window_is_an_error(tmp_path):
    path = write_variant(tmp_path, 'mon = ["08:30-12:00", "14:00-17:30"]', 'mon = ["12:00-08:30"]')
    with pytest.raises(ConfigError, match=r"\[calendar.schedule.office\] mon: '12:00-08:30' ends before it starts"):
        load_config(path)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(tmp_path / "nope.toml")


def test_invalid_toml_is_a_clear_error(tmp_path):
    path = tmp_path / "venue.toml"
    path.write_text("[site\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_the_command_line_overrides_database_and_broker(tmp_path):
    cfg = with_overrides(load_config(EXAMPLE), database=tmp_path / "x.db", broker="mqtt://127.0.0.1:1884")
    assert cfg.storage.database == tmp_path / "x.db"
    assert cfg.mqtt.broker == "mqtt://127.0.0.1:1884"


def test_a_malformed_broker_override_is_refused():
    with pytest.raises(ConfigError, match="--broker 'http://x' is not like"):
        with_overrides(load_config(EXAMPLE), broker="http://x")
