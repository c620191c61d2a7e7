"""`accessctl run --simulate` with an OSDP keypad reader: the real driver, over the secure channel, against the
reader emulator on a pseudo-terminal; a card, then a PIN typed on its keypad, decided by the door's service."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import osdp
import pytest

from simulator.osdp_device import OsdpReaderDevice
from tests.fixtures.constants import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
KEY = bytes.fromhex("8f3c1a2b4d5e6f708192a3b4c5d6e7f8")
PIN, DURESS_PIN, WRONG = "73914628", "73914682", "28649137"
BADGE = "04A1B2C3"  # P001 of config/roster.example.csv
WAIT = 10.0
EVERY_DAY = "\n".join(f'{day} = ["00:00-23:59"]' for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))


def accessctl(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "firmware_py.cli.main", *args], input=stdin, capture_output=True,
                          text=True, env=ENV, timeout=60)


def door_config(tmp_path: Path, port: str) -> Path:
    """The example venue with the emulator's keypad outside, PINs for the office group, open every day (the
    service runs on the real clock) and MQTT off."""
    (tmp_path / "keypad.scbk").write_text(KEY.hex() + "\n")
    text = (REPO / "config" / "venue.example.toml").read_text(encoding="utf-8")
    text = text.replace("/var/lib/accessctl/device.key", str(tmp_path / "device.key"))
    text = text.replace("enabled = true", "enabled = false", 1)
    text = text.replace("[policy]\n", f'''[[hardware.keypad_reader]]
side = "outside"
port = "{port}"
scbk_file = "{tmp_path / 'keypad.scbk'}"

[policy]
''', 1)
    text = text.replace("pin_required = false", 'pin_required = false\npin_schedule_groups = ["office"]', 1)
    text = re.sub(r"\[calendar\.schedule\.office\].*?\n\n", f"[calendar.schedule.office]\n{EVERY_DAY}\n\n", text,
                  count=1, flags=re.DOTALL)
    path = tmp_path / "venue.toml"
    path.write_text(text, encoding="utf-8")
    return path


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as c:
        try:
            return c.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []


def wait_for(db: Path, sql: str) -> list[tuple]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = rows(db, sql)
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"nothing for {sql} within {WAIT} s: {rows(db, 'SELECT type, body FROM events')}")


@pytest.fixture
def door(tmp_path):
    device = OsdpReaderDevice(scbk=KEY)
    config, db = door_config(tmp_path, device.port), tmp_path / "events.db"
    cli = ["--config", str(config), "--db", str(db)]
    assert accessctl("roster", "import", str(REPO / "config" / "roster.example.csv"), *cli).returncode == 0
    for args, pin in ((["P001"], PIN), (["P001", "--duress"], DURESS_PIN)):
        done = accessctl("roster", "pin", "set", *args, *cli, stdin=pin + "\n")
        assert done.returncode == 0, done.stderr
    proc = subprocess.Popen([sys.executable, "-m", "firmware_py.cli.main", "run", "--simulate", *cli],
                            stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        wait_for(db, "SELECT 1 FROM events WHERE type = 'controller_started'")
        deadline = time.monotonic() + WAIT
        while not device.secure_channel_active:
            assert time.monotonic() < deadline and proc.poll() is None, "the keypad reader was not brought online"
            time.sleep(0.1)
        yield device, db, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)
        device.close()


def test_card_and_pin_at_a_keypad_reader_are_decided_by_the_service_over_the_secure_channel(door, tmp_path):
    device, db, proc = door
    device.present_card(BADGE)
    assert device.wait_for_command(lambda c: c.command == osdp.Command.LED
                                   and c.led_color == osdp.CommandLEDColor.Green, WAIT), "no PIN-wait light"
    device.press_keys(WRONG + "#")
    assert wait_for(db, "SELECT 1 FROM events WHERE json_extract(body, '$.reason') = 'pin_incorrect'")
    assert device.wait_for_command(lambda c: c.led_color == osdp.CommandLEDColor.Red, WAIT), "no denied light"

    device.present_card(BADGE)
    device.press_keys(DURESS_PIN[:3])
    device.press_keys(DURESS_PIN[3:] + "#")
    (person,) = wait_for(db, "SELECT json_extract(body, '$.person.person_id') FROM events WHERE type = 'duress'")[0]
    assert person == "P001"
    assert rows(db, "SELECT count(*) FROM events WHERE type = 'access_denied'") == [(1,)]

    proc.terminate()
    _, stderr = proc.communicate(timeout=20)
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("events.db"))
    for pin in (PIN, DURESS_PIN, WRONG):
        assert pin not in stderr and pin.encode() not in stored
