"""The page's door commands as the door reads them: signed for one door when the station has its key."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.link.signed_commands import command_payload, open_command
from firmware_py.station.web import commands

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)
SITE, DOOR = "hn-archive-1", "scan-room"


def test_a_command_from_a_station_with_its_key_is_run_by_a_door_that_runs_only_signed_ones():
    key = Ed25519PrivateKey.generate()
    command = commands.build("lockdown", "op")
    opened = open_command(command_payload(command, site=SITE, door=DOOR, key=key, now=NOW), key.public_key(),
                          site=SITE, door=DOOR, now=NOW + timedelta(seconds=2))
    assert opened.error is None and opened.action == "lockdown" and opened.id == command["id"]


def test_a_signed_command_is_refused_by_another_door():
    key = Ed25519PrivateKey.generate()
    signed = command_payload(commands.build("lockdown", "op"), site=SITE, door=DOOR, key=key, now=NOW)
    opened = open_command(signed, key.public_key(), site=SITE, door="vault", now=NOW)
    assert "signed for door" in opened.error


def test_a_station_without_a_key_sends_plain_json_that_a_signing_door_refuses():
    key = Ed25519PrivateKey.generate()
    plain = command_payload(commands.build("lockdown", "op"), site=SITE, door=DOOR)
    assert b'"sig"' not in plain
    assert "unsigned" in open_command(plain, key.public_key(), site=SITE, door=DOOR, now=NOW).error
