"""The door's roster receiver (firmware_py/link/roster_receiver.py), fed messages by hand, on a real SQLite file."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.core.clock import SimulatedClock
from firmware_py.link.roster_keys import DoorKeys
from firmware_py.link.roster_receiver import RosterReceiver
from firmware_py.storage import roster
from firmware_py.storage.door_database import open_store
from tests.fixtures.roster import TZ
from tests.fixtures.roster_bundle import SITE_KEY, person, signed

KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def receiver(roster_config):
    cfg = replace(roster_config, site=replace(roster_config.site, site="hn-archive-1"))
    r = RosterReceiver(cfg, DoorKeys(KEY.public_key(), SITE_KEY), clock=SimulatedClock(datetime(2026, 11, 23, 9,
                                                                                                   tzinfo=TZ)))
    yield r
    r.close()


def feed(receiver, bundle) -> None:
    for message in (*bundle.chunks, bundle.manifest):
        receiver.handle(message)


def types(receiver) -> list[str]:
    store = open_store(receiver.cfg)
    try:
        return [e["type"] for e in store.events()]
    finally:
        store.db.conn.close()


def test_a_complete_bundle_is_applied_and_its_version_kept(receiver, tmp_path):
    feed(receiver, signed(tmp_path, [person(1)], key=KEY, version=3))
    assert receiver.version == 3 and types(receiver) == ["roster_applied"]
    assert [p.person_id for p in roster.list_persons(receiver._store.db)] == ["P00001"]


def test_the_applied_bundle_handed_again_at_a_reconnect_records_nothing(receiver, tmp_path):
    bundle = signed(tmp_path, [person(1)], key=KEY, version=3)
    feed(receiver, bundle)
    feed(receiver, bundle)
    assert types(receiver) == ["roster_applied"]


def test_a_refused_bundle_handed_again_is_recorded_once(receiver, tmp_path):
    other = signed(tmp_path, [person(1)], key=KEY, version=3, site="other-site")
    feed(receiver, other)
    feed(receiver, other)
    assert types(receiver) == ["roster_rejected"]


def test_chunks_of_an_older_version_than_the_applied_one_are_ignored(receiver, tmp_path):
    feed(receiver, signed(tmp_path, [person(1)], key=KEY, version=3))
    for chunk in signed(tmp_path, [person(2)], key=KEY, version=2).chunks:
        receiver.handle(chunk)
    assert types(receiver) == ["roster_applied"]


def test_garbage_on_the_roster_topic_is_recorded_as_malformed_and_the_roster_stays(receiver, tmp_path):
    feed(receiver, signed(tmp_path, [person(1)], key=KEY, version=3))
    receiver.handle(b"\x00" * 100)
    assert types(receiver) == ["roster_applied", "roster_rejected"]
    assert receiver.version == 3
