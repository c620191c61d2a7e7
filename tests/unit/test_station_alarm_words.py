"""What the alarm queue reads of a door's words (no server): which events start and end a state,
what an alarm says, the names of alarms, the backlog on a tile and the doors' answers to commands.
Whatever a door wrote, these functions answer and show no full ID number."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_py.errors import AlarmError
from firmware_py.station.archive.chain import ChainResult
from firmware_py.station.web import alarms, answers, pages
from firmware_py.station.web.door_answers import DoorAnswers

FULL_ID = "430102199003070012"  # a fictional person, valid check digit
CHAIN = ChainResult(True, 1, 1, None, None)
values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.just(FULL_ID)),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=3), max_leaves=12)


@pytest.mark.parametrize("type_, detail, expected", [
    ("hardware_fault", {"device": "reader", "state": "fault"}, ("start", ("hardware_fault", "reader"))),
    ("hardware_fault", {"device": "reader", "state": "recovered"}, ("end", ("hardware_fault", "reader"))),
    ("tamper", {"device": "lid", "active": True}, ("start", ("tamper", "lid"))),
    ("tamper", {"device": "lid", "active": False}, ("end", ("tamper", "lid"))),
    ("door_held_open", {"limit_s": 30}, ("start", ("door_held_open",))),
    ("door_held_open", {"closed": True, "open_s": 40}, ("end", ("door_held_open",))),
    ("link_down", {}, ("start", ("link",))),
    ("link_up", {"outage_s": 3}, ("end", ("link",))),
    ("tamper", {"device": "lid", "active": 0}, None),
    ("hardware_fault", {"device": 7, "state": "recovered"}, None),
    ("hardware_fault", "recovered", None),
    ("door_forced", {}, None),
])
def test_which_events_start_and_end_a_state(type_, detail, expected):
    assert answers.role(type_, detail) == expected


@given(type_=st.sampled_from(list(answers.TYPES) + ["door_forced", 3, None]), detail=values)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_whatever_a_door_wrote_its_role_and_description_are_read_without_error(type_, detail):
    answers.role(type_, detail)
    text = alarms.describe({"type": type_, "detail": detail, "person": detail})
    assert isinstance(text, str)


def test_an_overstay_says_who_is_still_inside():
    event = {"type": "overstay", "detail": {"count": 2, "persons": [
        {"person_id": "P001", "name": "测试员甲", "role": "staff"}, {"person_id": "P002", "name": "测试员乙"}]}}
    assert alarms.describe(event) == "滞留人员 Still inside: P001 测试员甲, P002 测试员乙"
    assert [p["person_id"] for p in alarms.named_people(event)] == ["P001", "P002"]


def test_a_fault_says_its_device_and_state_and_leaves_hashes_out():
    assert alarms.describe({"type": "hardware_fault", "detail": {"device": "gate", "state": "fault",
                                                                 "fault": "no heartbeat"}}) == \
        "gate: 故障 fault (no heartbeat)"
    assert "hash" not in alarms.describe({"type": "clock_unsynchronised",
                                          "detail": {"cause": "stepped_back", "prev_hash": "ab"}})


def test_an_alarm_key_names_it_and_a_strange_key_is_refused_with_what_is_wrong():
    a = alarms.Alarm("hn-archive-1", "scan-room", 7, "", "door_forced", {}, 2)
    assert alarms.parse_key(a.key) == ("hn-archive-1", "scan-room", 2, 7)
    for bad in ('["s", "d", 1]', '["s", "", 1, 2]', '["s", "d", 0, 2]', '["s", "d", 1, 1.5]', "[[[[", "null"):
        with pytest.raises(AlarmError, match="does not name an alarm"):
            alarms.parse_key(bad)


def test_forced_doors_rank_before_tamper_before_screening_before_the_rest():
    ranks = [alarms.Alarm("s", "d", 1, "", t, {}).rank for t in
             ("duress", "door_forced", "tamper", "screening_alarm", "tailgating", "link_down")]
    assert ranks == [0, 0, 1, 2, 3, 3]


@pytest.mark.parametrize("status, last_seq, shown", [
    ({"queued": 2, "last_seq": 10}, 10, "0"),     # the station has every event the status announced
    ({"queued": 2, "last_seq": 10}, 12, "0"),
    ({"queued": 2, "last_seq": 10}, 8, "2"),      # two still to come
    ({"queued": 2}, 8, "2"),
    ({"queued": "2", "last_seq": 10}, 10, "?"),
    ({}, 3, "?"),
])
def test_the_backlog_is_the_doors_latest_count_until_the_station_has_every_event(status, last_seq, shown):
    last = {"seq": last_seq, "ts": "2026-11-23T09:00:00+08:00", "type": "passage"}
    assert pages.tile_fields(status, last, CHAIN)["queued"] == shown


def test_a_doors_answer_counts_only_for_a_command_sent_to_that_door():
    book = DoorAnswers("accessctl")
    book.sent("station-1", "hn-archive-1", "scan-room", "lockdown", "olga")
    topic = "accessctl/hn-archive-1/scan-room/cmd/result"
    assert not book.take("accessctl/hn-archive-1/other-door/cmd/result", b'{"id": "station-1", "ok": true}')
    assert not book.take(topic, b'{"id": "station-2", "ok": true}')
    assert not book.take(topic, b'{"id": "station-1", "ok": "yes"}')
    assert not book.take(topic, b"\xff{not json")
    assert not book.take(topic, json.dumps({"id": "station-1", "ok": False, "error": "x" * 5000}).encode())
    assert book.get("station-1").ok is None
    assert book.take(topic, json.dumps({"id": "station-1", "ok": False, "error": f"no {FULL_ID}"}).encode())
    sent = book.get("station-1")
    assert sent.ok is False and FULL_ID not in sent.error
    assert not book.take(topic, b'{"id": "station-1", "ok": true}')  # the first answer stands
