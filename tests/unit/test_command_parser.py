"""The supervisor's command parser: every payload becomes a RemoteCommand, refused ones with a reason."""

import json

import pytest

from firmware_py.core import commands
from firmware_py.core.inputs import RemoteCommand


def parse(payload, claimed_by=None) -> RemoteCommand:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return commands.parse(raw, claimed_by)


def test_a_well_formed_lockdown_is_accepted_with_its_sender_claim():
    cmd = parse({"id": "c1", "action": "lockdown", "by": "duty officer"}, claimed_by="station")
    assert (cmd.id, cmd.action, cmd.error, cmd.claimed_by) == ("c1", "lockdown", None, "station")


def test_a_revoke_keeps_its_arguments():
    cmd = parse({"id": "c2", "action": "revoke", "person_id": "P001", "reason": "left"})
    assert cmd.error is None and cmd.args == {"person_id": "P001", "reason": "left"}


@pytest.mark.parametrize("payload, error", [
    (b"not json", "not a JSON object"),
    (b"[1, 2]", "not a JSON object"),
    ({"action": "status"}, "field 'id' is missing"),
    ({"id": "c", "action": "open_sesame"}, "unknown action 'open_sesame'"),
    ({"id": "c", "action": "revoke", "person_id": "P001"}, "field 'reason' is missing for revoke"),
    ({"id": "c", "action": "replay", "from_seq": "1"}, "field 'from_seq' must be a whole number"),
    ({"id": "c", "action": "replay", "from_seq": True}, "field 'from_seq' must be a whole number"),
    ({"id": "c", "action": "replay", "from_seq": 0}, "field 'from_seq' must be from 1"),
    ({"id": "c", "action": "status", "extra": 1}, "unknown field(s) for status: extra"),
    ({"id": "c", "action": "status", "by": ""}, "field 'by' must be 1 to"),
])
def test_a_malformed_command_is_refused_with_the_reason(payload, error):
    assert error in parse(payload).error


def test_nan_is_refused_as_not_strict_json():
    assert "not a number strict JSON allows" in parse(b'{"id": "c", "action": "replay", "from_seq": NaN}').error


def test_a_payload_over_the_limit_is_refused_before_it_is_read():
    cmd = parse(b"{" + b" " * commands.MAX_PAYLOAD + b"}")
    assert cmd.error.startswith(f"payload of {commands.MAX_PAYLOAD + 2} bytes")


def test_deep_nesting_is_refused_not_raised():
    assert "nested too deeply" in parse(b"[" * 2000 + b"]" * 2000).error


def test_a_retained_command_is_refused_and_keeps_its_first_error():
    cmd = commands.refuse_retained(parse({"id": "c", "action": "bogus"}))
    assert cmd.error.startswith("a retained command is refused") and "unknown action" in cmd.error


def test_the_audit_masks_an_id_number_in_any_field():
    number = "430102199001011238"
    detail = commands.audit_detail(parse({"id": number, "action": "status", "by": number}), True, None)
    assert number not in json.dumps(detail) and detail["claimed_by"] == "430102********1238"


def test_a_command_id_is_remembered_as_a_keyed_hash():
    key = commands.executed_key(b"s" * 32, "c1")
    assert len(key) == 64 and key != commands.executed_key(b"t" * 32, "c1")
