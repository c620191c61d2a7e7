"""One way to reach the broker: settings from a door's or a station's file, one --broker rule, one password file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from firmware_py.config.schema import load_config, with_overrides
from firmware_py.errors import ConfigError
from firmware_py.link.broker import BrokerSettings, read_password
from firmware_py.station.config import load_station_config
from firmware_py.station.config import with_overrides as station_overrides
from tests.fixtures.constants import EXAMPLE, STATION_EXAMPLE


def door_config(tmp_path: Path, password: str = "s3cret\n"):
    secret = tmp_path / "door.password"
    secret.write_text(password, encoding="utf-8")
    cfg = load_config(EXAMPLE)
    return replace(cfg, mqtt=replace(cfg.mqtt, username="door-scan-room", password_file=secret))


def test_a_plain_broker_override_reaches_the_broker_anonymously_without_tls(tmp_path):
    cfg = with_overrides(door_config(tmp_path), broker="mqtt://127.0.0.1:1883")
    settings = BrokerSettings.from_config(cfg.mqtt)
    assert (settings.url, settings.username, settings.password) == ("mqtt://127.0.0.1:1883", "", "")
    assert not settings.tls
    assert (settings.ca_file, settings.cert_file, settings.key_file) == (None, None, None)


def test_an_mqtts_broker_override_keeps_the_files_account_and_certificates(tmp_path):
    door = door_config(tmp_path)
    cfg = with_overrides(door, broker="mqtts://broker.lab:8883")
    settings = BrokerSettings.from_config(cfg.mqtt)
    assert (settings.host, settings.port, settings.tls) == ("broker.lab", 8883, True)
    assert (settings.username, settings.password) == ("door-scan-room", "s3cret")
    assert (settings.ca_file, settings.cert_file, settings.key_file) == (
        door.mqtt.ca_file, door.mqtt.cert_file, door.mqtt.key_file)


def test_the_station_follows_the_doors_broker_override_rule():
    cfg = load_station_config(STATION_EXAMPLE)
    plain = station_overrides(cfg, broker="mqtt://127.0.0.1:1883").broker
    kept = station_overrides(cfg, broker="mqtts://127.0.0.1:8883").broker
    assert (plain.username, plain.password_file, plain.ca_file, plain.cert_file) == ("", None, None, None)
    assert (kept.username, kept.ca_file, kept.cert_file) == (cfg.broker.username, cfg.broker.ca_file,
                                                             cfg.broker.cert_file)


def test_the_password_is_the_first_line_without_its_line_ending(tmp_path):
    path = tmp_path / "p"
    path.write_text(" two words \r\nsecond line\n", encoding="utf-8")
    assert read_password(path) == " two words "


@pytest.mark.parametrize("content, message", [(None, "cannot read the MQTT password"),
                                              ("", "no MQTT password on its first line")])
def test_a_missing_or_empty_password_file_is_a_config_error_saying_what_to_do(tmp_path, content, message):
    path = tmp_path / "p"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        read_password(path)


def test_a_malformed_broker_address_is_refused_naming_the_expected_form():
    with pytest.raises(ConfigError, match="'tcp://x:1' is not like mqtt://host:1883 or mqtts://host:8883"):
        BrokerSettings(url="tcp://x:1")
