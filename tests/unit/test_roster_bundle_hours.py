"""Hours from the centre: a roster bundle's schedule groups and holiday calendar decide at the door.

The policy on a bundle's calendar (pure), the controller taking a new calendar from its roster port,
and a bundle applied to a real SQLite file: recorded with the rows, read back after a restart,
rows naming its groups accepted, and an older bundle leaving the configured hours in force.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.core.clock import SimulatedClock
from firmware_py.core.controller import DoorController
from firmware_py.core.inputs import BadgeRead
from firmware_py.core.people import Credential
from firmware_py.core.policy import DoorContext, decide
from firmware_py.core.working_hours import WorkingHours
from firmware_py.errors import BundleError
from firmware_py.link import roster_bundle as rb
from firmware_py.link.roster_keys import key_id
from firmware_py.storage import roster
from firmware_py.storage import roster_bundle as applying
from firmware_py.storage.db import open_db
from tests.fixtures.memory_ports import (
    SECRET,
    MemoryEventLog,
    MemoryIndicators,
    MemoryLock,
    example_config,
    memory_door,
    person,
)
from tests.fixtures.roster import TZ
from tests.fixtures.roster_bundle import GROUPS, MADE_AT, SITE_KEY, assembled, read_roster, signed, write_csv
from tests.fixtures.roster_bundle import person as csv_person

KEY = Ed25519PrivateKey.generate()
MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)
WEDNESDAY_9 = datetime(2026, 11, 25, 9, 0, tzinfo=TZ)
SATURDAY_9 = datetime(2026, 11, 28, 9, 0, tzinfo=TZ)
# The centre cuts the office group to Mondays; a night group the doors' configs do not have.
SCHEDULES = {"office": {"mon": ["08:30-17:30"]}, "night": {"mon": ["20:00-24:00"], "wed": ["20:00-24:00"]}}
CALENDAR = {"holidays": ["2026-11-30"], "working_days": ["2026-11-28"], "adjusted_day_schedule": "mon"}
BADGE = "04000001"  # csv_person(1)'s badge


def hours(schedules=SCHEDULES, calendar=CALENDAR) -> WorkingHours:
    return WorkingHours(rb.bundle_calendar(schedules, calendar), TZ)


def judged(at: datetime, hours_: WorkingHours, group: str = "office"):
    return decide(person(schedule_group=group), Credential("badge", BADGE), "in", at, DoorContext(),
                  example_config().policy, hours_)


# ---------------------------------------------------------------- the policy on a bundle's hours


def test_a_group_the_bundle_opens_on_monday_only_is_allowed_on_monday_and_refused_on_wednesday():
    assert judged(MONDAY_9, hours()).allowed
    assert judged(WEDNESDAY_9, hours()).reason == "non_working_day"


def test_the_configured_hours_would_have_let_the_same_person_in_on_wednesday():
    assert judged(WEDNESDAY_9, WorkingHours(example_config().calendar, TZ)).allowed


def test_a_holiday_the_bundle_adds_closes_a_monday():
    assert judged(datetime(2026, 11, 30, 9, 0, tzinfo=TZ), hours()).reason == "non_working_day"


def test_an_adjusted_working_day_of_the_bundle_opens_a_saturday_with_the_named_weekdays_windows():
    assert judged(SATURDAY_9, hours()).allowed
    assert judged(SATURDAY_9, hours(calendar={**CALENDAR, "working_days": []})).reason == "non_working_day"


def test_a_group_only_the_bundle_has_is_judged_on_its_windows():
    assert judged(datetime(2026, 11, 25, 21, 0, tzinfo=TZ), hours(), group="night").allowed
    assert judged(WEDNESDAY_9, hours(), group="night").reason == "outside_working_hours"


@pytest.mark.parametrize("schedules, calendar, why", [
    ({"office": {"mon": ["12:00-08:30"]}}, CALENDAR, "ends before it starts"),
    ({"office": {"mon": ["08:00-12:00", "11:00-13:00"]}}, CALENDAR, "overlap"),
    ({"office": {"mon": ["25:00-26:00"]}}, CALENDAR, "impossible time"),
    ({"Office!": {"mon": ["08:00-12:00"]}}, CALENDAR, "lower-case"),
    (SCHEDULES, {**CALENDAR, "holidays": ["2026-02-30"]}, "not a real date"),
    (SCHEDULES, {**CALENDAR, "holidays": "2026-11-30"}, "must be a list"),
    (SCHEDULES, {**CALENDAR, "holidays": ["2026-11-28"]}, "both a holiday and a working day"),
    (SCHEDULES, {**CALENDAR, "adjusted_day_schedule": "someday"}, "adjusted_day_schedule"),
    (SCHEDULES, {**CALENDAR, "closed": []}, "calendar must be an object"),
    ({}, CALENDAR, "at least one schedule group"),
])
def test_hours_a_door_cannot_use_are_malformed_with_what_is_wrong(schedules, calendar, why):
    with pytest.raises(BundleError, match=why) as caught:
        rb.bundle_calendar(schedules, calendar)
    assert caught.value.reason == "malformed"


# ---------------------------------------------------------------- the controller takes them from its roster


def test_the_controller_decides_on_the_hours_its_roster_brings_from_the_next_credential():
    door = memory_door(person("P001", badge=BADGE), start=WEDNESDAY_9)
    door.controller.handle(BadgeRead("outside", BADGE))
    assert door.controller.state == "screening"  # the config's hours: Wednesday is worked
    door.clock.advance(600)  # nobody walks through the gate: screening_timeout
    door.controller.tick()
    assert door.controller.state == "idle" and door.log.events[-2]["reason"] == "screening_timeout"

    door.roster.hours = rb.bundle_calendar(SCHEDULES, CALENDAR)  # a bundle applied: Mondays only now
    door.controller.handle(BadgeRead("outside", BADGE))
    assert (door.log.events[-1]["type"], door.log.events[-1]["reason"]) == ("access_denied", "non_working_day")


def test_a_controller_plans_its_overstay_check_on_the_bundles_windows():
    door = memory_door(person("P001", badge=BADGE), start=MONDAY_9)
    assert door.controller._next_overstay_check == datetime(2026, 11, 23, 12, 0, tzinfo=TZ)  # the config's
    door.roster.hours = rb.bundle_calendar(SCHEDULES, CALENDAR)
    door.controller.tick()
    assert door.controller._next_overstay_check == datetime(2026, 11, 23, 17, 30, tzinfo=TZ)  # the bundle's


# ---------------------------------------------------------------- applied with the rows, on a real database


def apply(world, people, version=1, schedules=SCHEDULES, calendar=CALENDAR):
    bundle = signed(world.tmp, people, key=KEY, version=version, schedules=schedules, calendar=calendar)
    manifest, payload = assembled(bundle, KEY.public_key())
    return applying.apply_bundle(world.db, world.store, manifest, payload, schedule_groups=GROUPS)


def test_the_hours_are_recorded_with_the_rows_and_the_event_says_they_came_with_the_bundle(roster_world):
    event = apply(roster_world, [csv_person(1)])
    assert event["detail"]["hours"] == "bundle"
    calendar = applying.applied_calendar(roster_world.db)
    assert sorted(calendar.schedules) == ["night", "office"]
    assert [str(w) for w in calendar.schedules["office"]["mon"]] == ["08:30-17:30"]
    assert calendar.schedules["office"]["wed"] == ()
    assert {d.isoformat() for d in calendar.holidays} == {"2026-11-30"}


def test_the_door_reads_the_bundles_hours_back_after_a_restart(roster_world):
    apply(roster_world, [csv_person(1)])
    roster_world.db.conn.close()
    db = open_db(roster_world.config.storage.database)
    try:
        calendar = roster.SqliteRoster(db, roster_world.store).calendar()
        assert sorted(calendar.schedules) == ["night", "office"]
    finally:
        db.conn.close()
    roster_world.db = open_db(roster_world.config.storage.database)


def test_the_roster_port_gives_the_same_calendar_until_a_bundle_changes_it(roster_world):
    port = roster.SqliteRoster(roster_world.db, roster_world.store)
    assert port.calendar() is None
    apply(roster_world, [csv_person(1)])
    first = port.calendar()
    assert first is not None and port.calendar() is first
    apply(roster_world, [csv_person(1)], version=2, schedules={**SCHEDULES, "office": {"tue": ["08:30-17:30"]}})
    assert port.calendar() is not first and [str(w) for w in port.calendar().schedules["office"]["tue"]] == [
        "08:30-17:30"]


def test_a_row_naming_a_group_only_the_bundle_has_is_accepted(roster_world):
    apply(roster_world, [csv_person(1, group="night")])
    assert roster.get(roster_world.db, "P00001").schedule_group == "night"


def test_an_older_bundle_without_a_calendar_leaves_the_configured_hours_in_force(roster_world):
    event = apply(roster_world, [csv_person(1)], schedules={"office": {"mon": ["08:30-17:30"]}}, calendar=None)
    assert event["detail"]["hours"] == "config"
    assert applying.applied_calendar(roster_world.db) is None
    assert roster.SqliteRoster(roster_world.db, roster_world.store).calendar() is None


def test_a_bundle_without_a_calendar_after_one_with_returns_the_door_to_its_configured_hours(roster_world):
    apply(roster_world, [csv_person(1)])
    apply(roster_world, [csv_person(1)], version=2, calendar=None)
    assert applying.applied_calendar(roster_world.db) is None


def test_without_the_bundles_hours_a_row_naming_a_group_the_config_lacks_is_refused(roster_world, tmp_path):
    rows = [rb.bundle_row(r) for r in signed_rows_of(tmp_path)]
    header = {"site": "hn-archive-1", "version": 1, "made_at": MADE_AT.isoformat(),
              "valid_until": MADE_AT.replace(year=2027).isoformat(), "key_id": key_id(SITE_KEY),
              "schedules": SCHEDULES}
    with pytest.raises(BundleError, match=r"row 1 .*schedule_group: 'night' is not a group") as caught:
        apply_raw(roster_world, header, rows)
    assert caught.value.reason == "malformed" and roster.list_persons(roster_world.db) == []


def test_a_signed_bundle_with_unusable_hours_changes_nothing(roster_world, tmp_path):
    apply(roster_world, [csv_person(1)])
    rows = [rb.bundle_row(r) for r in signed_rows_of(tmp_path)]
    header = {"site": "hn-archive-1", "version": 2, "made_at": MADE_AT.isoformat(),
              "valid_until": MADE_AT.replace(year=2027).isoformat(), "key_id": key_id(SITE_KEY),
              "schedules": SCHEDULES, "calendar": {**CALENDAR, "holidays": ["2026-13-01"]}}
    with pytest.raises(BundleError, match="holidays") as caught:
        apply_raw(roster_world, header, rows)
    assert caught.value.reason == "malformed"
    assert applying.applied_version(roster_world.db) == 1
    assert [p.schedule_group for p in roster.list_persons(roster_world.db)] == ["office"]


def test_a_controller_started_on_the_database_decides_on_the_applied_bundles_hours(roster_world):
    apply(roster_world, [csv_person(1)])
    cfg = replace(example_config(), site=roster_world.config.site)
    clock = SimulatedClock(WEDNESDAY_9)
    log = MemoryEventLog(clock)
    controller = DoorController(cfg, roster=roster.SqliteRoster(roster_world.db, roster_world.store), event_log=log,
                                lock=MemoryLock(), indicators=MemoryIndicators(), clock=clock, secret=SECRET)
    controller.start()
    controller.handle(BadgeRead("outside", BADGE))
    assert (log.events[-1]["type"], log.events[-1]["reason"]) == ("access_denied", "non_working_day")


def signed_rows_of(tmp_path):
    return read_roster(write_csv(tmp_path / "night.csv", csv_person(1, group="night")), site_key=SITE_KEY,
                       schedule_groups=("night",), today=date(2026, 11, 23))


def apply_raw(world, header: dict, rows: list[list]):
    payload = rb.build_payload(header, rows)
    manifest_bytes, chunks = rb.sign_bundle(KEY, {**header, "count": len(rows)}, payload)
    assembler = rb.Assembler()
    done = None
    for message in (*chunks, manifest_bytes):
        done = assembler.add(rb.read_message(message, KEY.public_key())) or done
    return applying.apply_bundle(world.db, world.store, *done, schedule_groups=GROUPS)


def test_a_local_import_may_name_the_groups_of_the_hours_the_bundle_set(roster_world, tmp_path, capsys):
    from firmware_py.cli.main import main

    apply(roster_world, [csv_person(1)])
    config = tmp_path / "venue.toml"
    text = roster_world.config.path.read_text(encoding="utf-8")
    config.write_text(text.replace('"/var/lib/accessctl/events.db"', f'"{roster_world.config.storage.database}"')
                      .replace('"/var/lib/accessctl/device.key"', f'"{roster_world.config.storage.secret}"'),
                      encoding="utf-8")
    night = write_csv(tmp_path / "night.csv", csv_person(2, group="night"))
    assert main(["roster", "import", str(night), "--config", str(config)]) == 0, capsys.readouterr().err
    assert roster.get(roster_world.db, "P00002").schedule_group == "night"
