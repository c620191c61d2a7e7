"""One way to reach the broker: settings from a door's or a station's file, one --broker rule, one password file."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from firmware_py.config.schema import load_config, with_overrides
from firmware_py.errors import ConfigError
from firmware_py.link.broker import BrokerSettings, read_password
from firmware_py.station.config import load_station_config
from firmware_py.station.config import with_overrides as station_overrides
from tests.fixtures.constants import EXAMPLE, REPO, STATION_EXAMPLE


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


# ---------------------------------------------------------------- the station's session at the broker


def test_the_stations_own_client_id_is_random_and_kept_in_a_file_only_it_may_read(tmp_path):
    from firmware_py.link.broker import session_client_id

    first = session_client_id(tmp_path / "archive.db.client-id")
    again = session_client_id(tmp_path / "archive.db.client-id")
    other = session_client_id(tmp_path / "other.client-id")

    assert first == again != other
    assert re.fullmatch(r"accessctl-station-[0-9a-f]{32}", first)  # 128 random bits, no host name
    assert (tmp_path / "archive.db.client-id").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive.db.client-id", "other.client-id"]


def test_a_client_id_file_that_holds_no_client_id_is_a_config_error_naming_it(tmp_path):
    from firmware_py.link.broker import session_client_id

    bad = tmp_path / "station.client-id"
    bad.write_text("accessctl station\n")
    with pytest.raises(ConfigError, match=rf"{bad}: 'accessctl station' is not a client id"):
        session_client_id(bad)


def test_a_client_id_file_the_station_cannot_write_is_a_config_error_saying_what_to_set(tmp_path):
    from firmware_py.link.broker import session_client_id

    with pytest.raises(ConfigError, match="client_id_file"):
        session_client_id(tmp_path / "no such folder" / "station.client-id")


def test_the_station_keeps_its_client_id_beside_its_sqlite_archive_unless_the_file_says_where(tmp_path):
    from firmware_py.station.config import client_id_path

    cfg = load_station_config(STATION_EXAMPLE)
    assert cfg.broker.client_id == ""  # the example names none: the station makes its own
    assert client_id_path(cfg) == Path(f"{cfg.archive.path}.client-id")
    on_pg = station_overrides(cfg, archive="postgresql://station@db.lan/archive")
    assert client_id_path(on_pg) == Path("/var/lib/accessctl/station.client-id")
    chosen = replace(cfg, broker=replace(cfg.broker, client_id_file=tmp_path / "id"))
    assert client_id_path(chosen) == tmp_path / "id"


def test_a_station_without_a_client_id_connects_with_its_kept_one_on_either_archive(tmp_path):
    from firmware_py.station.server import station_client_id

    cfg = load_station_config(STATION_EXAMPLE)
    cfg = replace(cfg, broker=replace(cfg.broker, client_id_file=tmp_path / "station.client-id"))
    kept = station_client_id(cfg)
    assert station_client_id(station_overrides(cfg, archive="postgresql://station@db.lan/archive")) == kept
    assert (tmp_path / "station.client-id").read_text().strip() == kept
    named = replace(cfg, broker=replace(cfg.broker, client_id="station-7"))
    assert station_client_id(named) == "station-7"


def test_the_session_expiry_is_as_long_as_the_shipped_brokers_keep_a_session():
    from firmware_py.link.broker import SESSION_EXPIRY_S

    mosquitto = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    rabbitmq = (REPO / "deploy" / "rabbitmq" / "rabbitmq.conf.example").read_text()
    days = int(re.search(r"^persistent_client_expiration (\d+)d$", mosquitto, re.M).group(1))
    ttl_ms = int(re.search(r"^mqtt\.subscription_ttl = (\d+)$", rabbitmq, re.M).group(1))
    assert SESSION_EXPIRY_S == days * 86400 == ttl_ms // 1000
    cfg = load_station_config(STATION_EXAMPLE)
    assert BrokerSettings.from_config(cfg.broker, password="x").session_expiry_s == SESSION_EXPIRY_S


def test_a_station_file_may_set_the_session_expiry_to_match_its_broker(tmp_path):
    text = STATION_EXAMPLE.read_text()
    assert "\nsession_expiry_s = 2592000 " in text
    text = text.replace("\nsession_expiry_s = 2592000 ", "\nsession_expiry_s = 86400 ", 1)
    path = tmp_path / "station.toml"
    path.write_text(text)
    cfg = load_station_config(path)
    assert BrokerSettings.from_config(cfg.broker, password="x").session_expiry_s == 86400


def test_the_monitors_client_id_is_random_kept_beside_its_archive_and_not_its_host_name(tmp_path):
    from firmware_py.cli.main import build_parser
    from firmware_py.cli.monitor import connection

    archive = tmp_path / "monitor.db"
    args = build_parser().parse_args(["monitor", "--broker", "mqtt://127.0.0.1:1883", "--archive", str(archive)])
    first, _, _ = connection(args)
    again, _, _ = connection(args)
    assert re.fullmatch(r"accessctl-monitor-[0-9a-f]{32}", first.client_id)
    assert again.client_id == first.client_id
    assert (tmp_path / "monitor.db.client-id").read_text().strip() == first.client_id
