"""The station's [roster.calendar]: the hours its bundles set at every door (docs/station.md)."""

from __future__ import annotations

import pytest

from firmware_py.errors import ConfigError
from firmware_py.station.config import load_station_config
from firmware_py.station.roster.publish import hours_note
from tests.fixtures.constants import STATION_EXAMPLE

BASE = '[broker]\nurl = "mqtt://127.0.0.1:1883"\n\n[archive]\npath = "archive.db"\n\n'
WEEK = '[roster.schedule.office]\nmon = ["08:30-12:00"]\n'


def station(tmp_path, roster: str):
    path = tmp_path / "station.toml"
    path.write_text(BASE + roster)
    return load_station_config(path)


def test_the_calendar_is_read_as_the_bundle_carries_it(tmp_path):
    cfg = station(tmp_path, '[roster.calendar]\nholidays = [2026-10-02, 2026-10-01]\nworking_days = [2026-10-10]\n'
                            'adjusted_day_schedule = "fri"\n\n' + WEEK)
    assert cfg.roster.calendar == {"holidays": ["2026-10-01", "2026-10-02"], "working_days": ["2026-10-10"],
                                   "adjusted_day_schedule": "fri"}
    assert "the doors take these: 1 schedule group(s) (office), 2 holiday(s)" in hours_note(cfg)


def test_without_a_calendar_each_door_keeps_its_own_hours(tmp_path):
    cfg = station(tmp_path, WEEK)
    assert cfg.roster.calendar is None
    assert hours_note(cfg).startswith("each door keeps the hours of its own [calendar]")


@pytest.mark.parametrize("calendar, why", [
    ('holidays = ["2026-02-30"]', r"\[roster.calendar\] holidays: '2026-02-30' is not a date"),
    ("holidays = [2026-10-01]\nworking_days = [2026-10-01]", r"working_days: 2026-10-01 also listed as holidays"),
    ('adjusted_day_schedule = "funday"', r"adjusted_day_schedule: 'funday' is not one of"),
    ("closed = []", r"\[roster.calendar\] closed: is not a known setting"),
])
def test_a_calendar_the_doors_could_not_use_stops_the_station_naming_the_key(tmp_path, calendar, why):
    with pytest.raises(ConfigError, match=why):
        station(tmp_path, f"[roster.calendar]\n{calendar}\n\n{WEEK}")


def test_a_calendar_without_schedule_groups_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"\[roster.calendar\]: the hours the doors take need the groups"):
        station(tmp_path, "[roster.calendar]\nholidays = []\n")


def test_the_example_station_sets_the_hours_of_its_doors():
    cfg = load_station_config(STATION_EXAMPLE)
    assert len(cfg.roster.calendar["holidays"]) == 33 and sorted(cfg.roster.schedules) == ["extended", "office"]
