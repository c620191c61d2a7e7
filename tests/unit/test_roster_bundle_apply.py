"""A signed bundle applied to the door's roster (firmware_py/storage/roster_bundle.py), on a real SQLite file."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.core import idnumber
from firmware_py.errors import BundleError
from firmware_py.link import roster_bundle as rb
from firmware_py.storage import roster
from firmware_py.storage import roster_bundle as applying
from tests.fixtures.roster import TZ
from tests.fixtures.roster_bundle import (
    GROUPS,
    SITE_KEY,
    assembled,
    bundle_rows,
    person,
    person_number,
    signed,
    signed_rows,
)

KEY = Ed25519PrivateKey.generate()


def apply(world, people, version=1, **kw):
    manifest, payload = assembled(signed(world.tmp, people, key=KEY, version=version, **kw), KEY.public_key())
    return applying.apply_bundle(world.db, world.store, manifest, payload, schedule_groups=GROUPS)


def ids(world) -> list[str]:
    return [p.person_id for p in roster.list_persons(world.db)]


def test_the_bundle_becomes_the_roster_and_its_event_says_what_changed(roster_world):
    event = apply(roster_world, [person(1), person(2)])

    assert ids(roster_world) == ["P00001", "P00002"]
    assert event["type"] == "roster_applied"
    assert {k: event["detail"][k] for k in ("version", "count", "added", "removed")} == {
        "version": 1, "count": 2, "added": 2, "removed": 0}
    assert applying.applied_version(roster_world.db) == 1


def test_a_card_read_at_the_door_matches_its_row_under_the_site_roster_key(roster_world):
    apply(roster_world, [person(1)])
    found = roster.get_by_id_hash(roster_world.db, idnumber.id_hash(SITE_KEY, person_number(1)))
    assert found.person_id == "P00001" and found.badge_uids == ("04000001",)


def test_persons_left_out_of_a_newer_bundle_are_removed_and_the_event_names_them(roster_world):
    apply(roster_world, [person(1), person(2), person(3)])
    event = apply(roster_world, [person(1), person(4)], version=2)

    assert ids(roster_world) == ["P00001", "P00004"]
    assert (event["detail"]["added"], event["detail"]["removed"]) == (1, 2)
    assert event["detail"]["removed_ids"] == ["P00002", "P00003"]


def test_a_person_revoked_at_the_door_stays_revoked_when_the_bundle_lists_them(roster_world):
    apply(roster_world, [person(1), person(2)])
    roster.revoke(roster_world.db, roster_world.store, "P00002", "badge lost", datetime(2026, 11, 23, 10, tzinfo=TZ))
    event = apply(roster_world, [person(1), person(2)], version=2)

    assert roster.get(roster_world.db, "P00002").status == "revoked"
    assert event["detail"]["still_revoked"] == ["P00002"]


def test_a_bundle_giving_one_badge_to_two_persons_changes_nothing_and_names_the_row(roster_world):
    apply(roster_world, [person(1)])
    rows = bundle_rows(roster_world.tmp, [person(1), person(2), person(3)])
    rows[2][rb.COLUMNS.index("badge_uids")] = ["04000002"]
    manifest_bytes, chunks = signed_rows(rows, key=KEY, version=2)
    assembler = rb.Assembler()
    for message in (*chunks, manifest_bytes):
        done = assembler.add(rb.read_message(message, KEY.public_key())) or None
    with pytest.raises(BundleError, match="row 3 .*badge 04000002 is given twice") as caught:
        applying.apply_bundle(roster_world.db, roster_world.store, *done, schedule_groups=GROUPS)

    assert caught.value.reason == "malformed"
    assert ids(roster_world) == ["P00001"]
    assert applying.applied_version(roster_world.db) == 1
    assert roster_world.count("sqlite_master WHERE name LIKE '%_next'") == 0


def test_a_row_naming_a_schedule_group_this_door_lacks_changes_nothing(roster_world):
    manifest, payload = assembled(signed(roster_world.tmp, [person(1), person(2, group="extended")], key=KEY),
                                  KEY.public_key())
    with pytest.raises(BundleError, match="row 2 .*'extended' is not a group of this door"):
        applying.apply_bundle(roster_world.db, roster_world.store, manifest, payload, schedule_groups=("office",))
    assert ids(roster_world) == []


def test_a_refusal_is_recorded_with_its_reason_and_what_was_wrong(roster_world):
    manifest, _ = assembled(signed(roster_world.tmp, [person(1)], key=KEY, site="other"), KEY.public_key())
    event = applying.record_rejection(roster_world.store, BundleError("other_site", "for site 'other'"), manifest)

    assert event["type"] == "roster_rejected"
    assert event["detail"] == {"reason": "other_site", "message": "for site 'other'", "version": 1, "site": "other"}


def test_a_rejection_message_quoting_an_id_number_is_stored_masked(roster_world):
    event = applying.record_rejection(roster_world.store, BundleError("malformed", f"x {person_number(1)} y"))
    assert person_number(1) not in str(event) and idnumber.mask(person_number(1)) in event["detail"]["message"]


def test_a_bundle_past_its_validity_stays_in_use_and_warns_once_a_day(roster_world):
    apply(roster_world, [person(1)], valid_for=timedelta(days=1))
    later = datetime(2026, 11, 25, 9, 0, tzinfo=TZ)

    first = applying.warn_if_expired(roster_world.store, later)
    again = applying.warn_if_expired(roster_world.store, later + timedelta(hours=3))
    next_day = applying.warn_if_expired(roster_world.store, later + timedelta(days=1))

    assert first["type"] == "roster_expired" and first["detail"]["version"] == 1
    assert again is None and next_day["type"] == "roster_expired"
    assert ids(roster_world) == ["P00001"]


def test_a_bundle_within_its_validity_raises_no_warning(roster_world):
    apply(roster_world, [person(1)])
    assert applying.warn_if_expired(roster_world.store, datetime(2026, 11, 24, tzinfo=TZ)) is None


def test_persons_added_locally_after_a_bundle_are_replaced_by_the_next_bundle(roster_world):
    apply(roster_world, [person(1)])
    roster.add(roster_world.db, roster_world.store, person_id="L1", name="本地人员", id_number=person_number(9),
               role="staff", employer_type="own", valid_from="2026-01-01", valid_until="2026-12-31",
               schedule_group="office", secret=SITE_KEY, schedule_groups=GROUPS)
    apply(roster_world, [person(1), person(2)], version=2)
    assert ids(roster_world) == ["P00001", "P00002"]


def test_a_pin_set_at_the_door_stays_when_a_bundle_lists_the_person(roster_world):
    from firmware_py.core.pin import verify_pin

    apply(roster_world, [person(1), person(2)])
    roster.set_pin(roster_world.db, roster_world.store, "P00002", "739146")
    apply(roster_world, [person(1), person(2)], version=2)
    assert verify_pin("739146", roster.get(roster_world.db, "P00002").pin_hash)
