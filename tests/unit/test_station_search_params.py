"""The search's parameters and the page's short local times, as plain functions."""

from __future__ import annotations

from datetime import date

import pytest

from firmware_py.station.web import search, times
from firmware_py.station.web.guard import Refused
from tests.fixtures.constants import TZ

TODAY = date(2026, 11, 23)


def test_date_alone_is_one_day_and_from_alone_runs_to_itself():
    assert (search.parse({"date": "2026-11-20"}, TODAY).first, search.parse({"date": "2026-11-20"}, TODAY).last) == (
        date(2026, 11, 20), date(2026, 11, 20))
    f = search.parse({"from": "2026-11-01"}, TODAY)
    assert (f.first, f.last) == (date(2026, 11, 1), date(2026, 11, 1))
    assert search.parse({}, TODAY).first == TODAY


def test_a_category_stands_for_its_types_and_the_register_keeps_its_own():
    alarms = search.parse({"type": "alarm"}, TODAY).search(TZ)
    assert "door_forced" in alarms.types and "passage" not in alarms.types
    kept = search.parse({"type": "alarm"}, TODAY).search(TZ, within=("passage", "tailgating"))
    assert kept.types == ("tailgating",)
    assert search.parse({"type": "lockdown_on"}, TODAY).search(TZ, within=("passage",)).types == ("",)  # nothing


def test_the_text_is_searched_in_lower_case():
    assert search.parse({"q": " P002 "}, TODAY).search(TZ).text == "p002"


@pytest.mark.parametrize("params, words", [
    ({"before": "-1"}, "before="), ({"before": "12x"}, "before="), ({"type": "Robert'); DROP"}, "type="),
    ({"q": "a\x00b"}, "control character"), ({"door": "d" * 65}, "at most 64"),
    ({"from": "2025-01-01", "to": "2026-11-23"}, "at most 366 days"), ({"from": "2026-13-01"}, "from="),
])
def test_a_bad_parameter_is_refused_by_name(params, words):
    with pytest.raises(Refused) as refused:
        search.parse(params, TODAY)
    assert refused.value.status == 400 and words in refused.value.message


def test_a_time_today_shows_the_clock_another_day_the_date_another_year_the_year():
    assert times.short("2026-11-23T08:26:00.000+08:00", TZ, TODAY) == "08:26:00"
    assert times.short("2026-11-22T08:26:00.000+08:00", TZ, TODAY) == "11-22 08:26:00"
    assert times.short("2025-11-23T08:26:00.000+08:00", TZ, TODAY) == "2025-11-23 08:26:00"


def test_a_time_is_shown_in_the_stations_zone_with_the_full_time_as_tooltip():
    assert times.short("2026-11-23T00:26:00+00:00", TZ, TODAY) == "08:26:00"
    html = times.time_html("2026-11-23T00:26:00+00:00", TZ, TODAY)
    assert html == ('<time datetime="2026-11-23T08:26:00.000+08:00" '
                    'title="2026-11-23 08:26:00.000+08:00 Asia/Shanghai">08:26:00</time>')


def test_a_text_that_is_not_a_time_is_shown_as_it_is_escaped():
    assert times.short("yesterday", TZ, TODAY) == "yesterday"
    assert times.time_html("<b>", TZ, TODAY) == "&lt;b&gt;"


def test_an_event_held_in_memory_is_matched_as_the_archive_would_match_it():
    forced = {"ts": "2026-11-23T08:00:00+08:00", "type": "door_forced", "person": None}
    overstay = {"ts": "2026-11-23T09:00:00+08:00", "type": "overstay",
                "person": {"person_id": "P002", "name": "测试员乙", "organisation": "长沙安保"}}
    f = search.parse({"type": "alarm", "q": "安保"}, TODAY)
    assert not search.matches(f, "s", "d", forced, TZ) and search.matches(f, "s", "d", overstay, TZ)
    assert search.matches(search.parse({"door": "d", "type": "door_forced"}, TODAY), "s", "d", forced, TZ)
    assert not search.matches(search.parse({"date": "2026-11-22"}, TODAY), "s", "d", forced, TZ)
    assert not search.matches(search.parse({}, TODAY), "s", "d", {"ts": "not a time"}, TZ)


def test_the_alarm_queue_without_dates_searches_every_day_and_with_them_those_days():
    every = search.parse({"door": "d"}, TODAY, dates_optional=True)
    assert not every.dated and (every.search(TZ).start, every.search(TZ).end) == (None, None)
    assert every.params() == {"door": "d"}
    assert search.matches(every, "s", "d", {"ts": "2020-01-01T08:00:00+08:00", "type": "tamper"}, TZ)
    dated = search.parse({"from": "2026-11-20"}, TODAY, dates_optional=True)
    assert dated.dated and dated.params() == {"from": "2026-11-20", "to": "2026-11-20"}
    assert search.parse({}, TODAY).dated  # the register and the events default to today


def test_a_duress_alarm_has_its_own_sound_and_every_other_alarm_one():
    from firmware_py.station.web import alarm_page

    assert alarm_page.sound("duress") == "duress"
    assert {alarm_page.sound(t) for t in alarm_page.ALARM_TYPES if t != "duress"} == {"alarm"}
