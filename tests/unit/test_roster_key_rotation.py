"""A key rotation seen from a door (docs/commissioning.md, "Roster keys", "Rotate"): a door on the old key
refuses what the new key signed, says why, and keeps deciding on the roster it has."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.core.clock import SimulatedClock
from firmware_py.link.roster_keys import DoorKeys
from firmware_py.link.roster_receiver import RosterReceiver
from firmware_py.link.signed_commands import open_command, sign_command
from firmware_py.storage import roster
from firmware_py.storage.door_database import open_store
from tests.fixtures.roster import TZ
from tests.fixtures.roster_bundle import SITE_KEY, person, signed

OLD, NEW = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
NEW_SITE_KEY = bytes(range(100, 132))
NOW = datetime(2026, 11, 23, 9, tzinfo=TZ)


@pytest.fixture
def door_config(roster_config):
    return replace(roster_config, site=replace(roster_config.site, site="hn-archive-1"))


def receiver(cfg, key, site_key=SITE_KEY) -> RosterReceiver:
    """The door's receiver as it is after a (re)start with these keys."""
    return RosterReceiver(cfg, DoorKeys(key.public_key(), site_key), clock=SimulatedClock(NOW))


def feed(r: RosterReceiver, bundle) -> None:
    for message in (*bundle.chunks, bundle.manifest):
        r.handle(message)


def roster_events(cfg) -> list[tuple[str, dict]]:
    store = open_store(cfg)
    try:
        return [(e["type"], e["detail"]) for e in store.events() if e["type"].startswith("roster_")]
    finally:
        store.db.conn.close()


def persons(r: RosterReceiver) -> list[str]:
    return [p.person_id for p in roster.list_persons(r._store.db)]


@pytest.fixture
def door_on_the_old_keys(door_config, tmp_path):
    r = receiver(door_config, OLD)
    feed(r, signed(tmp_path, [person(1)], key=OLD, version=1))
    yield r
    r.close()


def test_a_door_on_the_old_signing_key_rejects_the_new_keys_bundle_as_bad_signature_and_keeps_its_roster(
        door_on_the_old_keys, door_config, tmp_path):
    feed(door_on_the_old_keys, signed(tmp_path, [person(1), person(2)], key=NEW, version=2))
    kind, detail = roster_events(door_config)[-1]
    assert (kind, detail["reason"]) == ("roster_rejected", "bad_signature")
    assert "does not verify with the station's public key" in detail["message"]
    assert door_on_the_old_keys.version == 1 and persons(door_on_the_old_keys) == ["P00001"]


def test_once_the_new_public_key_is_installed_the_bundle_handed_again_is_applied(door_on_the_old_keys, door_config,
                                                                                tmp_path):
    new_bundle = signed(tmp_path, [person(1), person(2)], key=NEW, version=2)
    feed(door_on_the_old_keys, new_bundle)
    door_on_the_old_keys.close()  # the technician installs the new roster-signing.pub and restarts the door
    restarted = receiver(door_config, NEW)
    try:
        feed(restarted, new_bundle)  # the broker hands the retained bundle again at the reconnect
        assert restarted.version == 2 and persons(restarted) == ["P00001", "P00002"]
        assert roster_events(door_config)[-1][0] == "roster_applied"
    finally:
        restarted.close()


def test_a_door_on_the_new_key_rejects_a_bundle_the_station_still_signs_with_the_old_one(door_config, tmp_path):
    r = receiver(door_config, NEW)
    try:
        bundle = signed(tmp_path, [person(1)], key=OLD, version=3)
        feed(r, bundle)
        # each message of it is refused on its own signature: one event per chunk and one for the manifest
        assert [(k, d["reason"]) for k, d in roster_events(door_config)] == \
            [("roster_rejected", "bad_signature")] * (len(bundle.chunks) + 1)
        assert r.version == 0 and persons(r) == []
    finally:
        r.close()


def test_a_door_on_the_old_site_key_rejects_rows_hashed_under_the_new_one_as_other_key_and_keeps_its_roster(
        door_on_the_old_keys, door_config, tmp_path):
    feed(door_on_the_old_keys, signed(tmp_path, [person(1), person(2)], key=OLD, version=2, site_key=NEW_SITE_KEY))
    kind, detail = roster_events(door_config)[-1]
    assert (kind, detail["reason"], detail["version"]) == ("roster_rejected", "other_key", 2)
    assert door_on_the_old_keys.version == 1 and persons(door_on_the_old_keys) == ["P00001"]


def test_a_door_on_the_old_signing_key_refuses_a_command_the_station_signed_with_the_new_one():
    payload = sign_command(NEW, {"id": "station-1", "action": "lockdown"}, site="hn-archive-1", door="scan-room",
                           issued_at=NOW)
    opened = open_command(payload, OLD.public_key(), site="hn-archive-1", door="scan-room", now=NOW)
    assert (opened.id, opened.action) == ("station-1", "lockdown")
    assert opened.error.startswith("the command's signature does not verify with the station's public key")
    assert json.loads(payload)["door"] == "hn-archive-1/scan-room"
