"""PINs in the door's roster (storage/roster.py set_pin, storage/roster_pin.py): hashes only, on a real SQLite file."""

from __future__ import annotations

import sqlite3
from datetime import date

import pytest

from firmware_py.core.pin import verify_pin
from firmware_py.errors import RosterError
from firmware_py.storage import roster
from firmware_py.storage.db import SCHEMA, open_db
from tests.fixtures.roster import id_number

PIN, DURESS_PIN = "739146", "739147"


def add(world):
    return roster.add(world.db, world.store, secret=world.secret, schedule_groups=world.config.calendar.schedules,
                      person_id="P001", name="赵一", id_number=id_number("43010219850312123"), role="staff",
                      employer_type="own", badge_uids=["04a1b2c3"], review_date=date(2025, 12, 10),
                      training_hours=48, commitment_date=date(2025, 12, 15), valid_from=date(2026, 1, 1),
                      valid_until=date(2026, 12, 31), schedule_group="office")


def test_a_pin_set_is_stored_as_a_hash_the_door_checks(roster_world):
    add(roster_world)
    roster.set_pin(roster_world.db, roster_world.store, "P001", PIN)
    roster.set_pin(roster_world.db, roster_world.store, "P001", DURESS_PIN, duress=True)
    person = roster.get_by_badge(roster_world.db, "04A1B2C3")
    assert verify_pin(PIN, person.pin_hash) and verify_pin(DURESS_PIN, person.duress_pin_hash)
    assert not verify_pin(DURESS_PIN, person.pin_hash)


def test_setting_a_pin_records_whose_and_which_never_the_pin(roster_world):
    add(roster_world)
    roster.set_pin(roster_world.db, roster_world.store, "P001", PIN)
    event = roster_world.events()[-1]
    assert event["detail"] == {"action": "pin_set", "person_id": "P001", "count": 1}


def test_the_duress_pin_must_differ_from_the_pin(roster_world):
    add(roster_world)
    roster.set_pin(roster_world.db, roster_world.store, "P001", PIN)
    with pytest.raises(RosterError, match="the two must differ") as err:
        roster.set_pin(roster_world.db, roster_world.store, "P001", PIN, duress=True)
    assert PIN not in str(err.value)


def test_a_pin_for_nobody_or_a_weak_pin_is_refused(roster_world):
    with pytest.raises(RosterError, match="no such person"):
        roster.set_pin(roster_world.db, roster_world.store, "P404", PIN)
    add(roster_world)
    with pytest.raises(RosterError, match="digits only"):
        roster.set_pin(roster_world.db, roster_world.store, "P001", "12ab")


def test_a_roster_import_keeps_the_pins(roster_world):
    add(roster_world)
    roster.set_pin(roster_world.db, roster_world.store, "P001", PIN)
    csv = roster_world.write_csv(f"P001,赵一改,{id_number('43010219850312123')},04A1B2C3,staff,,own,2025-12-10,48,"
                                 "2025-12-15,2026-01-01,2026-12-31,office")
    roster.import_csv(roster_world.db, roster_world.store, csv, secret=roster_world.secret,
                      schedule_groups=roster_world.config.calendar.schedules, tz=roster_world.config.site.timezone)
    person = roster.get(roster_world.db, "P001")
    assert person.name == "赵一改" and verify_pin(PIN, person.pin_hash)


def test_a_database_made_before_pins_is_given_the_pin_columns(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA.replace("    pin_hash        TEXT,          -- scrypt hashes of the PINs "
                                      "(storage/roster_pin.py), never a PIN\n    duress_pin_hash TEXT\n", "")
                       .replace("revoked_reason  TEXT,\n", "revoked_reason  TEXT\n"))
    conn.execute("INSERT INTO persons (person_id, name, role, employer_type, valid_from, valid_until, "
                 "schedule_group) VALUES ('P001', 'x', 'staff', 'own', '2026-01-01', '2026-12-31', 'office')")
    conn.commit()
    assert "pin_hash" not in {r[1] for r in conn.execute("PRAGMA table_info(persons)")}
    conn.close()
    db = open_db(path)
    person = roster.get(db, "P001")
    assert person is not None and person.pin_hash is None and person.duress_pin_hash is None
    db.conn.close()
