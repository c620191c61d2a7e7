"""Commands signed by the station (firmware_py/link/signed_commands.py): id, time and door under the signature."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.link.signed_commands import open_command, sign_command
from tests.fixtures.roster import TZ

KEY = Ed25519PrivateKey.generate()
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)
LOCKDOWN = {"id": "station-1", "action": "lockdown", "by": "operator"}


def opened(payload: bytes, *, key=KEY, door="scan-room", now=NOW):
    return open_command(payload, key.public_key(), site="hn-archive-1", door=door, now=now, claimed_by="station")


def signed(command=LOCKDOWN, *, door="scan-room", at=NOW, key=KEY) -> bytes:
    return sign_command(key, command, site="hn-archive-1", door=door, issued_at=at)


def test_a_command_signed_for_this_door_is_the_plain_command():
    cmd = opened(signed())
    assert (cmd.id, cmd.action, cmd.error, cmd.args) == ("station-1", "lockdown", None, {"by": "operator"})


def test_an_unsigned_command_is_refused_and_keeps_its_id_for_the_audit():
    cmd = opened(json.dumps(LOCKDOWN).encode())
    assert cmd.id == "station-1" and cmd.action == "lockdown"
    assert cmd.error.startswith("an unsigned command is refused")


def test_a_signed_command_whose_action_was_changed_is_refused():
    data = json.loads(signed())
    data["action"] = "release_lockdown"
    assert "signature does not verify" in opened(json.dumps(data).encode()).error


def test_a_command_signed_with_another_key_is_refused():
    assert "signature does not verify" in opened(signed(key=Ed25519PrivateKey.generate())).error


def test_a_command_signed_for_another_door_is_refused():
    assert "signed for door 'hn-archive-1/vault'" in opened(signed(door="vault")).error


def test_a_command_issued_long_ago_is_refused_even_with_a_good_signature():
    assert "at most 600 s old" in opened(signed(at=NOW - timedelta(hours=1))).error


def test_a_signed_command_with_a_bad_field_is_refused_as_the_plain_command_would_be():
    cmd = opened(signed({"id": "station-2", "action": "replay", "from_seq": 0}))
    assert cmd.error == "field 'from_seq' must be from 1 to 9223372036854775807"
