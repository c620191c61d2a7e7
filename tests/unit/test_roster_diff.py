"""What a roster CSV changes against the rows last published (:mod:`firmware_py.station.roster.diff`)."""

from __future__ import annotations

from datetime import date

from firmware_py.station.roster import diff
from firmware_py.station.roster.bundle import check_roster
from tests.fixtures.roster import HEADER
from tests.fixtures.roster_bundle import GROUPS, SITE_KEY, person, person_number


def rows(*people: str):
    data = ("\n".join((HEADER, *people)) + "\n").encode()
    return check_roster(data, "roster.csv", site_key=SITE_KEY, schedule_groups=GROUPS, today=date(2026, 11, 23))


def test_against_nothing_published_every_person_is_added():
    found = diff.compare(diff.read_kept(None), rows(person(1), person(2)))
    assert [r["person_id"] for r in found.added] == ["P00001", "P00002"]
    assert (found.removed, found.changed, found.unchanged) == ([], [], 0)


def test_persons_added_removed_changed_and_unchanged_are_told_apart():
    before = diff.read_kept(diff.kept_rows(rows(person(1), person(2), person(3))))
    moved = person(3).replace("2026-12-31,office", "2026-12-31,extended")
    found = diff.compare(before, rows(person(1), moved, person(4)))
    assert [r["person_id"] for r in found.added] == ["P00004"]
    assert [r["person_id"] for r in found.removed] == ["P00002"]
    assert [(c.after["person_id"], c.fields) for c in found.changed] == [("P00003", ("schedule_group",))]
    assert found.unchanged == 1 and not found.empty


def test_a_new_id_number_is_a_change_of_id_number_shown_masked():
    other = person_number(9)
    found = diff.compare(diff.read_kept(diff.kept_rows(rows(person(1)))),
                         rows(person(1).replace(person_number(1), other)))
    (change,) = found.changed
    assert change.fields == ("id_number",)
    assert change.after["id_masked"] == other[:6] + "*" * 8 + other[-4:]


def test_the_kept_rows_hold_no_full_id_number():
    kept = diff.kept_rows(rows(person(1), person(2)))
    text = str(diff.read_kept(kept))
    assert person_number(1) not in text and person_number(2) not in text
    assert "430102********" in text


# ---------------------------------------------------------------- hours

WEEK = {"office": {"mon": ["08:30-12:00"], "wed": ["08:30-12:00"]}}
CALENDAR = {"holidays": ["2026-10-01"], "working_days": [], "adjusted_day_schedule": "mon"}


def test_the_hours_published_are_kept_beside_the_rows_and_read_back():
    kept = diff.kept_rows(rows(person(1)), {"schedules": WEEK, "calendar": CALENDAR})
    assert diff.kept_hours(kept) == {"schedules": WEEK, "calendar": CALENDAR}
    assert [r["person_id"] for r in diff.read_kept(kept)] == ["P00001"]
    assert diff.kept_hours(diff.kept_rows(rows(person(1)))) is None


def test_a_changed_window_and_an_added_holiday_are_told():
    after = {"schedules": {"office": {"mon": ["08:30-12:00"]}},
             "calendar": {**CALENDAR, "holidays": ["2026-10-01", "2026-10-02"]}}
    changes = diff.hours_changes({"schedules": WEEK, "calendar": CALENDAR}, after)
    assert changes == ("office wed: 08:30-12:00 → closed", "holiday added: 2026-10-02")
    found = diff.compare(diff.read_kept(diff.kept_rows(rows(person(1)))), rows(person(1)), changes)
    assert not found.empty and found.unchanged == 1


def test_unchanged_hours_change_nothing_and_the_first_hours_from_the_station_are_told():
    hours = {"schedules": WEEK, "calendar": CALENDAR}
    assert diff.hours_changes(hours, hours) == ()
    assert "from the station from this version on" in diff.hours_changes(None, hours)[0]
    assert diff.hours_changes(None, {"schedules": WEEK, "calendar": None}) == ()
