"""Loading and validating the configuration file."""

from pathlib import Path

import pytest

from firmware_py.cli import main as cli
from firmware_py.config.schema import config_warnings, load_config, with_overrides
from firmware_py.errors import ConfigError
from tests.fixtures.constants import EXAMPLE


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


def test_a_door_may_name_the_nodes_of_a_broker_cluster(tmp_path):
    nodes = '["mqtts://node1.archive.lan:8883", "mqtts://node2.archive.lan:8883"]'
    cfg = load_config(write_variant(tmp_path, 'broker = "mqtts://broker.archive.lan:8883"', f"broker = {nodes}"))
    assert (cfg.mqtt.broker, cfg.mqtt.fallback_urls) == ("mqtts://node1.archive.lan:8883",
                                                          ("mqtts://node2.archive.lan:8883",))
    cfg = with_overrides(load_config(EXAMPLE), broker="mqtt://127.0.0.1:1884,mqtt://127.0.0.1:1885")
    assert (cfg.mqtt.broker, cfg.mqtt.fallback_urls) == ("mqtt://127.0.0.1:1884", ("mqtt://127.0.0.1:1885",))
    assert cfg.mqtt.username == "" and cfg.mqtt.ca_file is None  # plain mqtt://: the lab rule, as for one


def test_nodes_that_mix_tls_and_plain_mqtt_are_refused(tmp_path):
    path = write_variant(tmp_path, 'broker = "mqtts://broker.archive.lan:8883"',
                         'broker = ["mqtts://node1:8883", "mqtt://node2:1883"]')
    with pytest.raises(ConfigError, match=r"\[mqtt\] broker: mixes mqtt:// and mqtts://"):
        load_config(path)
    with pytest.raises(ConfigError, match="--broker .* mixes mqtt:// and mqtts://"):
        with_overrides(load_config(EXAMPLE), broker="mqtts://a:8883,mqtt://b:1883")


def test_both_id_readers_on_one_serial_port_is_an_error_naming_both(tmp_path):
    path = write_variant(tmp_path, 'port = "/dev/ttyUSB1"', 'port = "/dev/ttyUSB0"')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "[[hardware.id_reader]] port" in message
    assert "outside" in message and "inside" in message and "/dev/ttyUSB0" in message


def test_two_names_of_one_serial_device_are_one_port(tmp_path):
    device = tmp_path / "ttyUSB0"
    device.touch()
    link = tmp_path / "usb-reader-if00"
    link.symlink_to(device)
    path = write_variant(tmp_path, 'port = "/dev/ttyUSB0"', f'port = "{link}"')
    path.write_text(path.read_text(encoding="utf-8").replace('port = "/dev/ttyUSB1"', f'port = "{device}"'),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="same serial port"):
        load_config(path)


def test_the_example_config_has_no_warnings():
    assert config_warnings(load_config(EXAMPLE)) == []


def test_a_plain_mqtt_broker_is_valid_with_a_warning_about_tls(tmp_path):
    path = write_variant(tmp_path, 'broker = "mqtts://broker.archive.lan:8883"', 'broker = "mqtt://broker.archive.lan:1883"')
    [warning] = config_warnings(load_config(path))
    assert "[mqtt] broker" in warning and "mqtt://broker.archive.lan:1883" in warning
    assert "not encrypted" in warning and "mqtts://" in warning


def test_tls_verify_off_is_valid_with_a_warning(tmp_path):
    path = write_variant(tmp_path, "tls_verify = true", "tls_verify = false")
    [warning] = config_warnings(load_config(path))
    assert "[mqtt] tls_verify" in warning and "not checked" in warning


def test_no_mqtt_warning_when_mqtt_is_off(tmp_path):
    path = write_variant(tmp_path, 'broker = "mqtts://broker.archive.lan:8883"', 'broker = "mqtt://broker.archive.lan:1883"')
    path.write_text(path.read_text(encoding="utf-8").replace("enabled = true", "enabled = false", 1), encoding="utf-8")
    assert config_warnings(load_config(path)) == []


def test_config_check_prints_the_warnings_and_still_succeeds(tmp_path, capsys):
    path = write_variant(tmp_path, "tls_verify = true", "tls_verify = false")
    assert cli.main(["config", "check", "--config", str(path), "--broker", "mqtt://127.0.0.1:1883"]) == 0
    out = capsys.readouterr().out
    assert f"{path}: ok" in out
    assert out.count("warning:") == 2 and "not encrypted" in out and "not checked" in out


def test_a_door_asks_no_pin_unless_the_config_says_so():
    policy = load_config(EXAMPLE).policy
    assert (policy.pin_required, policy.pin_schedule_groups, policy.pin_roles) == (False, (), ())


def test_pin_settings_name_schedule_groups_and_roles(tmp_path):
    path = write_variant(tmp_path, "pin_required = false",
                         'pin_required = false\npin_schedule_groups = ["extended"]\npin_roles = ["visitor"]')
    path.write_text(path.read_text(encoding="utf-8").replace("[policy]\n", KEYPAD + "\n[policy]\n"), encoding="utf-8")
    policy = load_config(path).policy
    assert (policy.pin_schedule_groups, policy.pin_roles) == (("extended",), ("visitor",))


def test_a_pin_schedule_group_not_in_the_calendar_is_an_error(tmp_path):
    path = write_variant(tmp_path, "pin_required = false", 'pin_schedule_groups = ["nights"]')
    with pytest.raises(ConfigError, match=r"\[policy\] pin_schedule_groups: 'nights' is not a schedule group"):
        load_config(path)


def test_a_pin_role_that_is_not_a_role_is_an_error(tmp_path):
    path = write_variant(tmp_path, "pin_required = false", 'pin_roles = ["cleaner"]')
    with pytest.raises(ConfigError, match="'cleaner' is not a role"):
        load_config(path)


KEYPAD = '''
[[hardware.keypad_reader]]
side = "outside"
port = "/dev/ttyUSB7"
scbk_file = "keys/keypad-outside.scbk"
address = 3
'''


def test_a_keypad_reader_is_read_with_its_key_file_beside_the_config(tmp_path):
    path = write_variant(tmp_path, "[policy]\n", KEYPAD + "\n[policy]\n")
    (reader,) = load_config(path).hardware.keypad_readers
    assert (reader.side, reader.port, reader.address, reader.baudrate) == ("outside", "/dev/ttyUSB7", 3, 9600)
    assert reader.scbk_file == tmp_path / "keys" / "keypad-outside.scbk"


def test_a_keypad_reader_on_an_id_card_readers_port_is_an_error(tmp_path):
    path = write_variant(tmp_path, "[policy]\n", KEYPAD.replace("/dev/ttyUSB7", "/dev/ttyUSB0") + "\n[policy]\n")
    with pytest.raises(ConfigError, match="/dev/ttyUSB0 is an ID card reader's port"):
        load_config(path)


def test_a_door_asking_for_pins_without_a_keypad_outside_is_an_error(tmp_path):
    path = write_variant(tmp_path, "pin_required = false", "pin_required = true")
    with pytest.raises(ConfigError, match="asks for a PIN but has no keypad reader outside"):
        load_config(path)
    path.write_text(path.read_text(encoding="utf-8").replace("[policy]\n", KEYPAD + "\n[policy]\n"), encoding="utf-8")
    assert load_config(path).policy.pin_required
