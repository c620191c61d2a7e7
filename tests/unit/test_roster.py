"""The roster store: add, look up, revoke, reinstate, each with its roster_changed event."""

from datetime import date, datetime

import pytest

from firmware_py.core.idnumber import id_hash
from firmware_py.errors import RosterError
from firmware_py.storage import roster
from firmware_py.storage.db import transaction
from firmware_py.storage.eventstore import verify
from tests.fixtures.roster import START, TZ, id_number

ZHAO = id_number("43010219850312123")
QIAN = id_number("43010319900715202")


def add(world, **changes):
    fields = dict(person_id="P001", name="赵一", id_number=ZHAO, role="staff", organisation="示例档案馆",
                  employer_type="own", badge_uids=["04a1b2c3"], review_date=date(2025, 12, 10),
                  training_hours=48, commitment_date=date(2025, 12, 15), valid_from=date(2026, 1, 1),
                  valid_until=date(2026, 12, 31), schedule_group="office")
    fields.update(changes)
    return roster.add(world.db, world.store, secret=world.secret,
                      schedule_groups=world.config.calendar.schedules, **fields)


def test_an_added_person_is_found_by_the_hash_of_their_id_number(roster_world):
    add(roster_world)
    person = roster.get_by_id_hash(roster_world.db, id_hash(roster_world.secret, ZHAO))
    assert person.person_id == "P001"
    assert person.name == "赵一"


def test_an_added_person_is_found_by_badge_in_any_case_and_with_separators(roster_world):
    add(roster_world)
    assert roster.get_by_badge(roster_world.db, "04:a1:b2:c3").person_id == "P001"
    assert roster.get_by_badge(roster_world.db, "04A1B2C3").person_id == "P001"


def test_a_malformed_badge_uid_finds_nobody(roster_world):
    add(roster_world)
    assert roster.get_by_badge(roster_world.db, "not hex") is None


def test_an_unknown_id_hash_finds_nobody(roster_world):
    add(roster_world)
    assert roster.get_by_id_hash(roster_world.db, id_hash(roster_world.secret, QIAN)) is None


def test_an_added_person_keeps_every_fact(roster_world):
    person = add(roster_world, badge_uids="04A1B2C5;04a1b2c4", training_hours="39.5", commitment_date=None)
    assert person == roster.get(roster_world.db, "P001")
    assert person.badge_uids == ("04A1B2C4", "04A1B2C5")
    assert person.id_masked == "430102********123X"
    assert person.training_hours == 39.5
    assert person.commitment_date is None
    assert person.review_date == date(2025, 12, 10)
    assert (person.valid_from, person.valid_until) == (date(2026, 1, 1), date(2026, 12, 31))
    assert (person.status, person.revoked_at, person.revoked_reason) == ("active", None, None)


def test_the_full_id_number_is_nowhere_in_the_database_file(roster_world):
    add(roster_world)
    roster_world.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    dump = "\n".join(roster_world.db.conn.iterdump())
    assert ZHAO not in dump
    assert ZHAO.encode() not in roster_world.config.storage.database.read_bytes()


def test_adding_records_a_roster_changed_event_with_the_masked_id_only(roster_world):
    add(roster_world)
    [event] = roster_world.events()
    assert event["category"] == "system"
    assert event["person"] == {"person_id": "P001", "name": "赵一", "role": "staff"}
    assert event["detail"] == {"action": "add", "person_id": "P001", "id_masked": "430102********123X",
                               "badges": 1, "count": 1}
    assert ZHAO not in str(event)


def test_list_persons_returns_everyone_in_person_id_order(roster_world):
    add(roster_world, person_id="P002", id_number=QIAN, badge_uids=[])
    add(roster_world)
    assert [p.person_id for p in roster.list_persons(roster_world.db)] == ["P001", "P002"]
    assert roster.list_persons(roster_world.db)[1].badge_uids == ()


def test_adding_an_existing_person_id_is_refused(roster_world):
    add(roster_world)
    with pytest.raises(RosterError, match="P001: already in the roster"):
        add(roster_world, id_number=QIAN, badge_uids=[])


def test_adding_someone_elses_id_number_is_refused_without_writing(roster_world):
    add(roster_world)
    with pytest.raises(RosterError, match=r"430102\*{8}123X is already in the roster as P001"):
        add(roster_world, person_id="P002", badge_uids=[])
    assert roster_world.count("persons") == 1
    assert len(roster_world.events()) == 1


def test_adding_someone_elses_badge_is_refused(roster_world):
    add(roster_world)
    with pytest.raises(RosterError, match="04A1B2C3 already belongs to P001"):
        add(roster_world, person_id="P002", id_number=QIAN)


def test_a_bad_add_names_every_bad_field_and_writes_nothing(roster_world):
    with pytest.raises(RosterError) as caught:
        add(roster_world, role="cleaner", id_number=ZHAO[:17] + "0", schedule_group="night", badge_uids=["12"])
    message = str(caught.value)
    for field in ("role: 'cleaner'", "id_number: ID number 430102********1230: check digit", "schedule_group: 'night'",
                  "badge_uids: '12'"):
        assert field in message
    assert ZHAO[:17] not in message
    assert roster_world.count("persons") == 0
    assert roster_world.events() == []


def test_an_agency_worker_must_name_the_agency(roster_world):
    with pytest.raises(RosterError, match="organisation: is empty; an agency worker"):
        add(roster_world, employer_type="agency", organisation="")


def test_a_validity_ending_before_it_starts_is_refused(roster_world):
    with pytest.raises(RosterError, match="valid_until: 2025-12-31 is before valid_from 2026-01-01"):
        add(roster_world, valid_until=date(2025, 12, 31))


def test_revoking_records_time_and_reason(roster_world):
    add(roster_world)
    at = datetime(2026, 11, 23, 10, 15, tzinfo=TZ)
    person = roster.revoke(roster_world.db, roster_world.store, "P001", "left the project", at)
    assert (person.status, person.revoked_at, person.revoked_reason) == ("revoked", at, "left the project")


def test_revoking_records_a_roster_changed_event(roster_world):
    add(roster_world)
    at = datetime(2026, 11, 23, 10, 15, tzinfo=TZ)
    roster.revoke(roster_world.db, roster_world.store, "P001", "left the project", at)
    event = roster_world.events()[-1]
    assert event["detail"] == {"action": "revoke", "person_id": "P001", "reason": "left the project",
                               "revoked_at": "2026-11-23T10:15:00+08:00", "count": 1}
    assert event["reason"] is None  # the event's reason field is for denials only


def test_a_revoked_person_is_still_found_by_badge_so_the_policy_can_say_revoked(roster_world):
    add(roster_world)
    roster.revoke(roster_world.db, roster_world.store, "P001", "lost badge", START)
    assert roster.get_by_badge(roster_world.db, "04A1B2C3").status == "revoked"


def test_revoking_an_unknown_person_is_refused(roster_world):
    with pytest.raises(RosterError, match="cannot revoke P404: no such person"):
        roster.revoke(roster_world.db, roster_world.store, "P404", "gone", START)


def test_revoking_twice_is_refused_and_keeps_the_first_reason(roster_world):
    add(roster_world)
    roster.revoke(roster_world.db, roster_world.store, "P001", "first", START)
    with pytest.raises(RosterError, match=r"already revoked since 2026-11-23 09:00 \(first\)"):
        roster.revoke(roster_world.db, roster_world.store, "P001", "second", START)
    assert roster.get(roster_world.db, "P001").revoked_reason == "first"


def test_revoking_needs_a_reason(roster_world):
    add(roster_world)
    with pytest.raises(RosterError, match="give a reason"):
        roster.revoke(roster_world.db, roster_world.store, "P001", "  ", START)


def test_a_reason_carrying_an_id_number_is_refused(roster_world):
    add(roster_world)
    with pytest.raises(RosterError, match="must not contain an ID number"):
        roster.revoke(roster_world.db, roster_world.store, "P001", f"card {ZHAO} reported stolen", START)


def test_reinstating_lifts_a_revocation_and_is_recorded(roster_world):
    add(roster_world)
    roster.revoke(roster_world.db, roster_world.store, "P001", "suspended", START)
    person = roster.reinstate(roster_world.db, roster_world.store, "P001", "review passed")
    assert (person.status, person.revoked_at, person.revoked_reason) == ("active", None, None)
    assert roster_world.events()[-1]["detail"]["action"] == "reinstate"


def test_reinstating_an_active_person_is_refused(roster_world):
    add(roster_world)
    with pytest.raises(RosterError, match="not revoked"):
        roster.reinstate(roster_world.db, roster_world.store, "P001", "why")


def test_a_change_and_its_event_roll_back_together_inside_a_callers_transaction(roster_world):
    with pytest.raises(RuntimeError):
        with transaction(roster_world.db):
            add(roster_world)
            raise RuntimeError("the caller failed after the add")
    assert roster_world.count("persons") == 0
    assert roster_world.count("badges") == 0
    assert roster_world.events() == []


def test_roster_changes_keep_the_event_chain_intact(roster_world):
    add(roster_world)
    roster.revoke(roster_world.db, roster_world.store, "P001", "suspended", START)
    roster.reinstate(roster_world.db, roster_world.store, "P001", "review passed")
    assert str(verify(roster_world.db)) == "ok 3 events"
