"""`accessctl doctor` against a good door and a broken one.

The door is a fake tree for /dev and /sys (a GPIO chip and an RTC as plain
files, the serial ports as symlinks to real pseudo-terminals), a real SQLite
event store, the real pcscd with vpcd's readers and the real Mosquitto with
the venue's TLS configuration. Only the NTP state is injected: the test
host's clock is not the test's to choose.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from firmware_py.core.clock import SimulatedClock
from firmware_py.doctor.report import FAIL, PASS, WARN, Probes, diagnose, run_doctor
from firmware_py.storage.db import open_db
from firmware_py.storage.eventstore import EventStore
from simulator.lab_broker import door_username
from tests.fixtures.constants import EXAMPLE, TZ

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)


# --------------------------------------------------------------------------- the door


def write_config(path: Path, replace: dict[str, str]) -> Path:
    """The example venue config with whole lines replaced (``old line -> new line``; new may be "")."""
    text = EXAMPLE.read_text()
    for old, new in replace.items():
        assert text.count(old + "\n") >= 1, f"{old!r} not in the example config"
        text = text.replace(old + "\n", new + "\n" if new else "")
    path.write_text(text)
    return path


def make_store(path: Path, events: int = 3) -> Path:
    db = open_db(path)
    store = EventStore(db, site="hn-archive-1", door="scan-room", clock=SimulatedClock(NOW))
    store.append("system", "controller_started", detail={"version": "test"})
    for i in range(events - 1):
        store.append("access", "access_denied", direction="in", reason="unknown_credential",
                     credential={"kind": "badge", "masked": f"{i:08X}"})
    db.conn.close()
    return path


class Door:
    """A fake Pi: root tree, config, database, device key, serial ports on ptys."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "root"
        for d in ("dev", "sys/class/net/eth0", "sys/class/net/lo"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "dev" / "gpiochip0").write_bytes(b"")
        (self.root / "dev" / "rtc0").write_bytes(b"")
        self._fds: list[int] = []
        for name in ("ttyUSB0", "ttyUSB1"):
            device, tty = os.openpty()
            self._fds += [device, tty]
            (self.root / "dev" / name).symlink_to(os.ttyname(tty))
        self.database = make_store(base / "state" / "events.db")
        self.secret = base / "state" / "device.key"
        self.secret.write_bytes(os.urandom(32))
        self.secret.chmod(0o600)
        self.lines = {
            'database = "/var/lib/accessctl/events.db"   # events, outbox and roster (SQLite, WAL, synchronous=FULL)':
                f'database = "{self.database}"',
            ('secret = "/var/lib/accessctl/device.key"    '
             '# per-device key for hashing ID numbers; created on first use, mode 0600'):
                f'secret = "{self.secret}"',
            'reader_name = "ACR122U PICC Interface 00 00"   # a unique part of the name `pcsc_scan` shows':
                'reader_name = "Virtual PCD 00 00"',
            'reader_name = "ACR122U PICC Interface 01 00"': 'reader_name = "Virtual PCD 00 01"',
        }

    def probes(self, **changes) -> Probes:
        values = dict(root=self.root, environ={}, ntp_synchronised=lambda: True, now=lambda: NOW,
                      module_available=lambda name: True, service_user=None)
        values.update(changes)
        return Probes(**values)

    def config(self, **mqtt: str) -> Path:
        """Write the config; ``mqtt`` replaces [mqtt] keys (value "" drops the key)."""
        lines = dict(self.lines)
        example = {line.split(" = ")[0]: line for line in EXAMPLE.read_text().split("[mqtt]")[1].splitlines()
                   if " = " in line}
        for key, value in mqtt.items():
            lines[example[key]] = f"{key} = {value}" if value else ""
        return write_config(self.base / "venue.toml", lines)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)


@pytest.fixture
def door(tmp_path):
    d = Door(tmp_path)
    yield d
    d.close()


def broker_settings(broker, account) -> dict[str, str]:
    return {"broker": f'"{broker.url}"', "username": f'"{account.username}"',
            "password_file": f'"{account.password_file}"', "ca_file": f'"{broker.ca_file}"',
            "cert_file": f'"{account.cert_file}"', "key_file": f'"{account.key_file}"'}


@pytest.fixture
def broker_config(door, mosquitto_broker_session):
    """The door's config logging in to the real venue broker as door-hn-archive-1-scan-room."""
    broker = mosquitto_broker_session
    return door.config(**broker_settings(broker, broker.door("scan-room")))


@pytest.fixture
def good_config(broker_config, pcscd):
    """… and the real pcscd listing vpcd's two readers."""
    return broker_config


VPCD_READERS = lambda: ["Virtual PCD 00 00", "Virtual PCD 00 01"]  # noqa: E731 - pcscd's answer, for tests without it


def refused_port():
    """A port on 127.0.0.1 that refuses connections (bound, never listening), held for the test."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


def by_check(results, check):
    return [r for r in results if r.check == check]


# --------------------------------------------------------------------------- a good door


def test_a_good_door_passes_every_check_and_exits_0(door, good_config):
    out = io.StringIO()
    args = argparse.Namespace(config=str(good_config), db=None, broker=None, timeout=5.0)
    code = run_doctor(args, probes=door.probes(), out=out)
    text = out.getvalue()
    assert code == 0, text
    checks = text.split("\n\n")[0].splitlines()
    assert [line[:4] for line in checks] == [PASS] * 12, text  # two serial ports, two badge readers, roster keys
    assert "12 passed, 0 warnings, 0 failed" in text


def test_the_broker_check_logs_in_over_verified_tls(door, broker_config):
    [result] = by_check(diagnose(broker_config, probes=door.probes(pcsc_readers=VPCD_READERS)), "broker")
    assert result.status == PASS
    assert "TLSv1." in result.message and "certificate verified" in result.message


def test_the_doctor_stores_no_event(door, broker_config):
    diagnose(broker_config, probes=door.probes(pcsc_readers=VPCD_READERS))
    db = open_db(door.database)
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 3
    assert "doctor_write_probe" not in db.table_names()


# --------------------------------------------------------------------------- a broken door


@pytest.fixture
def broken(door):
    """Wi-Fi present, the inside reader unplugged, an event edited, the broker unreachable."""
    (door.root / "sys" / "class" / "net" / "wlan0" / "wireless").mkdir(parents=True)
    (door.root / "dev" / "ttyUSB1").unlink()
    db = open_db(door.database)
    db.execute("UPDATE events SET body = replace(body, '\"00000000\"', '\"DEADBEEF\"') WHERE seq = 2")
    db.conn.close()
    port = refused_port()
    config = door.config(broker=f'"mqtts://127.0.0.1:{port.getsockname()[1]}"', ca_file="", cert_file="",
                         key_file="", password_file="")
    out = io.StringIO()
    args = argparse.Namespace(config=str(config), db=None, broker=None, timeout=2.0)
    code = run_doctor(args, probes=door.probes(pcsc_readers=VPCD_READERS), out=out)
    port.close()
    return code, out.getvalue()


def test_a_broken_door_exits_1(broken):
    code, text = broken
    assert code == 1, text


def test_a_wifi_interface_is_a_wireless_failure(broken):
    _, text = broken
    assert "FAIL  wireless    Wi-Fi interface wlan0 present: article 23 allows no wireless module" in text
    assert "dtoverlay=disable-wifi" in text


def test_a_missing_serial_port_fails_and_the_present_one_passes(broken):
    _, text = broken
    assert "FAIL  serial      /dev/ttyUSB1 (ID card reader, inside) does not exist" in text
    assert "PASS  serial      /dev/ttyUSB0 (ID card reader, outside) opens at 115200 baud" in text


def test_an_edited_event_fails_the_database_check_at_its_seq(broken):
    _, text = broken
    assert "hash chain broken at seq 2: the hash does not match the event (edited)" in text
    assert "do not repair it" in text


def test_an_unreachable_broker_fails_with_connection_refused(broken):
    _, text = broken
    assert "FAIL  broker" in text and "connection refused" in text


def test_the_checks_that_still_hold_pass_on_the_broken_door(broken):
    _, text = broken
    for check in ("config", "clock", "gpio", "pcsc", "device key"):
        assert f"PASS  {check:<11}" in text, check


# --------------------------------------------------------------------------- single findings


def test_bluetooth_controller_is_a_wireless_failure(door):
    (door.root / "sys" / "class" / "bluetooth" / "hci0").mkdir(parents=True)
    (door.root / "sys" / "class" / "bluetooth" / "hci0:11").mkdir()
    [result] = by_check(diagnose(door.config(enabled="false"), probes=door.probes()), "wireless")
    assert result.status == FAIL
    assert result.message.startswith("Bluetooth controller hci0 present")


def test_an_invalid_config_fails_and_skips_the_checks_that_need_it(door):
    lock_pin = 'pin = 17                       # relay driving the lock'
    config = write_config(door.base / "bad.toml", {lock_pin: "pin = 41"})
    results = diagnose(config, probes=door.probes())
    assert results[0].status == FAIL and "[hardware.lock] pin: 41 is not a GPIO pin" in results[0].message
    assert [r.check for r in results] == ["config", "wireless", "clock", "gpio"]


def test_the_mock_pin_factory_is_reported_as_a_warning(door):
    probes = door.probes(environ={"GPIOZERO_PIN_FACTORY": "mock"})
    [result] = by_check(diagnose(door.config(enabled="false"), probes=probes), "gpio")
    assert result.status == WARN and "mock" in result.message


def test_a_missing_gpio_chip_fails(door):
    (door.root / "dev" / "gpiochip0").unlink()
    [result] = by_check(diagnose(door.config(enabled="false"), probes=door.probes()), "gpio")
    assert result.status == FAIL and "/dev/gpiochip0" in result.message


def test_an_rtc_without_ntp_is_a_warning(door):
    [result] = by_check(diagnose(door.config(enabled="false"), probes=door.probes(ntp_synchronised=lambda: False)),
                        "clock")
    assert result.status == WARN and "/dev/rtc0" in result.message


def test_no_ntp_and_no_rtc_fails_the_clock(door):
    (door.root / "dev" / "rtc0").unlink()
    [result] = by_check(diagnose(door.config(enabled="false"), probes=door.probes(ntp_synchronised=lambda: False)),
                        "clock")
    assert result.status == FAIL and "DS3231" in result.action


def test_a_clock_before_the_configured_floor_fails(door):
    probes = door.probes(now=lambda: datetime(1970, 1, 1, tzinfo=TZ) + timedelta(hours=3))
    [result] = by_check(diagnose(door.config(enabled="false"), probes=probes), "clock")
    assert result.status == FAIL and "clock_floor" in result.message


def test_pcscd_not_answering_fails(door):
    [result] = by_check(diagnose(door.config(enabled="false"), probes=door.probes(pcsc_readers=lambda: None)),
                        "pcsc")
    assert result.status == FAIL and "pcscd" in result.message


def test_a_configured_badge_reader_missing_from_pcscd_fails(door):
    probes = door.probes(pcsc_readers=lambda: ["Virtual PCD 00 00"])
    results = by_check(diagnose(door.config(enabled="false"), probes=probes), "pcsc")
    assert [r.status for r in results] == [PASS, FAIL]
    assert "'Virtual PCD 00 01' (inside) not found" in results[1].message


def test_a_device_key_readable_by_others_fails(door):
    door.secret.chmod(0o644)
    [result] = by_check(diagnose(door.config(enabled="false"), probes=door.probes()), "device key")
    assert result.status == FAIL and "chmod 600" in result.action


def test_a_database_not_yet_created_is_a_warning(door):
    config = door.config(enabled="false")
    [result] = by_check(diagnose(config, database=str(door.base / "state" / "new.db"), probes=door.probes()),
                        "database")
    assert result.status == WARN
    assert not (door.base / "state" / "new.db").exists()


def test_mqtt_switched_off_is_a_warning(door):
    [result] = by_check(diagnose(door.config(enabled="false"), probes=door.probes()), "broker")
    assert result.status == WARN and "enabled = false" in result.message


def test_a_broker_certificate_from_another_ca_fails_tls(door, mosquitto_broker_session, tmp_path):
    broker = mosquitto_broker_session
    settings = broker_settings(broker, broker.door("scan-room"))
    # a certificate, but not the CA that signed the broker's
    settings["ca_file"] = f'"{broker.door("scan-room").cert_file}"'
    [result] = by_check(diagnose(door.config(**settings), probes=door.probes()), "broker")
    assert result.status == FAIL and "not trusted" in result.message


def test_a_certificate_naming_no_account_fails_the_login(door, mosquitto_broker_session, tmp_path):
    broker = mosquitto_broker_session
    settings = broker_settings(broker, broker.files.nameless)  # the certificate is the login
    settings["username"] = f'"{broker.door("scan-room").username}"'
    [result] = by_check(diagnose(door.config(**settings), probes=door.probes()), "broker")
    assert result.status == FAIL and "refused the login" in result.message


def test_doctor_is_registered_on_the_command_line():
    from firmware_py.cli.main import build_parser
    from firmware_py.doctor.report import run_doctor as handler

    args = build_parser().parse_args(["doctor", "--config", "x.toml", "--db", "y.db", "--broker", "mqtts://h:8883"])
    assert (args.handler, args.config, args.db, args.broker, args.timeout) == (handler, "x.toml", "y.db",
                                                                               "mqtts://h:8883", 5.0)


@pytest.mark.skipif(os.geteuid() != 0, reason="the owner check runs only when the doctor runs as root")
def test_a_database_owned_by_root_fails_when_the_service_user_must_write_it(door):
    probes = door.probes(service_user="nobody")  # an account that exists everywhere stands in for accessctl
    [result] = by_check(diagnose(door.config(enabled="false"), probes=probes), "database")
    assert result.status == FAIL
    assert "is owned by root, not nobody" in result.message and result.action.startswith("chown nobody:nobody")


# --------------------------------------------------------------------------- a door whose service runs


@pytest.fixture
def running_door(door, mosquitto_broker):
    """The door's service holds its database, and the door is connected to the broker as its own account."""
    from firmware_py.storage.db import hold_database

    release = hold_database(door.database)
    link = mosquitto_broker.connect(door_username("scan-room"))
    config = door.config(**broker_settings(mosquitto_broker, mosquitto_broker.door("scan-room")))
    yield config, link
    release()


def test_while_the_door_service_runs_the_doctor_does_not_replace_the_doors_broker_connection(door, running_door):
    config, link = running_door
    [result] = by_check(diagnose(config, probes=door.probes()), "broker")
    deadline = time.monotonic() + 1.0  # Mosquitto drops a replaced session at once; give it a generous second
    while link.disconnected is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert link.disconnected is None, result.message
    assert result.status == PASS, result.message
    assert "not logged in" in result.message and f"process {os.getpid()}" in result.message
    assert "TLSv1." in result.message and "no outage" in result.message


def test_while_the_door_service_runs_its_own_link_down_event_fails_the_broker_check(door, running_door):
    config, _ = running_door
    db = open_db(door.database)
    EventStore(db, site="hn-archive-1", door="scan-room", clock=SimulatedClock(NOW)).append(
        "alarm", "link_down", detail={"down_since": NOW.isoformat(), "bound_s": 60})
    db.conn.close()
    [result] = by_check(diagnose(config, probes=door.probes()), "broker")
    assert result.status == FAIL and "the door's own link is DOWN" in result.message
    assert "journalctl -u accessctl" in result.action
