"""Whatever a door stored, the page's functions make its row, its tile and its register line, and
show no full ID number (random payloads, statuses and occupancies; no server)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_py.station.accounts.accounts import Session
from firmware_py.station.archive import masking
from firmware_py.station.archive.chain import ChainResult
from firmware_py.station.web import alarm_page, alarms, chart, pages, queries, shown
from firmware_py.station.web import register as register_export
from tests.fixtures.constants import TZ

SITE, DOOR = "hn-archive-1", "scan-room"
FULL_ID = "430102199003070012"  # a fictional person, valid check digit
ADMIN = Session("t", "ada", "admin", "c")
CHAIN = ChainResult(True, 1, 1, None, None)
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=40), st.sampled_from([FULL_ID, int(FULL_ID), f"card {FULL_ID}",
                                                           "2026-11-23T09:00:00+08:00", "2026-11-23T09:00:00",
                                                           "access_granted", "in", "locked", "door_forced"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=16)
known = st.sampled_from(["seq", "ts", "type", "category", "direction", "reason", "person", "credential", "detail",
                         "site", "door", "inside", "online", "lock", "faults", "occupancy", "queued", "lockdown",
                         "person_id", "name", "since"])
objects = st.dictionaries(known, values, max_size=10)
payloads = st.one_of(objects.map(lambda v: json.dumps(v).encode()), values.map(lambda v: json.dumps(v).encode()),
                     st.binary(max_size=200), st.text(max_size=200).map(str.encode))


def no_full_id(text: str) -> bool:
    return FULL_ID not in text


@PROPERTY
@given(payloads)
def test_any_stored_payload_gives_an_event_row_a_register_line_and_the_chart(payload):
    row = queries.StreamRow(1, SITE, DOOR, queries.parse_payload(payload))
    alarm = alarms.alarm_from_row(SITE, DOOR, 1, "", "door_forced", payload, 1)
    html = pages.event_row(SITE, DOOR, row.shown, row.epoch) + alarm_page.queue_row(alarm, 0, ADMIN)
    csv = register_export.to_csv(register_export.rows([row])).decode("utf-8")
    chart.hours_svg(chart.entries_per_hour([row.shown], TZ))
    chart.reasons_svg(chart.denials_by_reason([row.shown]))
    api = json.dumps(row.event, ensure_ascii=False, allow_nan=False)
    stream = json.dumps(pages.event_cells(row.shown), ensure_ascii=False, allow_nan=False)
    assert all(no_full_id(text) for text in (html, csv, api, stream))


@PROPERTY
@given(st.one_of(objects, values).map(json.dumps) | st.text(max_size=100),
       st.one_of(objects, values).map(json.dumps) | st.text(max_size=100), st.one_of(st.none(), payloads))
def test_any_status_occupancy_and_last_event_give_a_tile(status_text, occupancy_text, last_payload):
    status, occupancy = queries._json(status_text), queries._json(occupancy_text)
    last = shown.event(queries.parse_payload(last_payload)) if last_payload is not None else None
    fields = pages.tile_fields(status if isinstance(status, dict) else None, last, CHAIN)
    people = shown.people_inside(occupancy)
    tile = {"site": SITE, "door": DOOR, "online": False, "fields": fields, "problems": 0,
            "inside_html": pages.inside_list(SITE, DOOR, people, ADMIN)}
    html = pages.tile(tile, ADMIN)
    api = json.dumps({**tile, "inside": people or []}, ensure_ascii=False, allow_nan=False)
    assert all(isinstance(v, str) for v in fields.values())
    assert no_full_id(html) and no_full_id(api)


@PROPERTY
@given(values)
def test_masked_json_is_valid_json_without_a_full_id_number(value):
    text = masking.masked_json(json.dumps(value, ensure_ascii=False))
    json.loads(text)
    assert no_full_id(text)
