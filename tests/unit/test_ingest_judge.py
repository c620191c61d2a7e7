"""Every message judged once where it enters the station (firmware_py/station/ingest/judge.py): one
pure function, the same for both archives, that accepts DESIGN.md's messages and refuses the rest
with a reason a technician can act on."""

from __future__ import annotations

import json

from firmware_py.core.events import GENESIS_HASH, event_hash
from firmware_py.station.ingest.judge import MAX_PAYLOAD, Accepted, Rejected, judge, kept_payload

PREFIX, SITE, DOOR = "accessctl", "hn-archive-1", "scan-room"
EVENT_TOPIC = f"{PREFIX}/{SITE}/{DOOR}/events/access/access_granted"
STATUS_TOPIC = f"{PREFIX}/{SITE}/{DOOR}/status"
OCCUPANCY_TOPIC = f"{PREFIX}/{SITE}/{DOOR}/occupancy"
RESULT_TOPIC = f"{PREFIX}/{SITE}/{DOOR}/cmd/result"
FULL_ID = "11010519491231002X"  # a valid checksum, fictional person


def event(**changes) -> dict:
    e = {"seq": 1, "ts": "2026-11-23T08:55:03.120+08:00", "site": SITE, "door": DOOR, "category": "access",
         "type": "access_granted", "direction": "in",
         "person": {"person_id": "P001", "name": "测试员甲", "role": "staff"},
         "credential": {"kind": "resident_id", "masked": "430102********123X"}, "reason": None, "detail": {},
         "prev_hash": GENESIS_HASH}
    e.update(changes)
    e["hash"] = event_hash(e)
    return e


def body(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def reason_for(payload: bytes, topic: str = EVENT_TOPIC, **kw) -> str:
    verdict = judge(PREFIX, topic, payload, **kw)
    assert isinstance(verdict, Rejected), verdict
    return verdict.reason


def status(**changes) -> bytes:
    s = {"online": True, "door": "closed", "lock": "locked", "lockdown": False, "occupancy": 0, "last_seq": 3,
         "last_hash": "a" * 64, "queued": 0, "version": "1.0", "state": "idle", "faults": []}
    s.update(changes)
    return body(s)


# ---------------------------------------------------------------- what passes

def test_a_doors_event_is_accepted_with_its_parsed_value():
    e = event()
    verdict = judge(PREFIX, EVENT_TOPIC, body(e))
    assert verdict == Accepted("event", SITE, DOOR, EVENT_TOPIC, e)


def test_an_event_whose_hash_is_wrong_is_accepted_for_the_chain_check_to_report():
    e = event()
    e["reason"] = "anti_passback"  # changed after hashing: evidence, not a malformed message
    assert isinstance(judge(PREFIX, EVENT_TOPIC, body(e)), Accepted)


def test_a_name_with_control_characters_is_accepted_it_is_not_an_identifier():
    e = event(person={"person_id": "P001", "name": "赵一\x1b[2J\n", "role": "staff"})
    assert isinstance(judge(PREFIX, EVENT_TOPIC, body(e)), Accepted)


def test_a_bare_18_digit_number_that_is_no_id_number_shape_is_accepted_as_a_json_number():
    e = event(detail={"n": 1234567890123456789})  # 19 digits: not an ID number's shape
    assert judge(PREFIX, EVENT_TOPIC, body(e)).value["detail"]["n"] == 1234567890123456789


def test_the_vocabulary_of_design_not_built_yet_at_the_door_is_accepted():
    e = event(category="alarm", type="duress", direction=None, person=None, credential=None)
    assert isinstance(judge(PREFIX, f"{PREFIX}/{SITE}/{DOOR}/events/alarm/duress", body(e)), Accepted)


def test_a_status_of_this_version_is_accepted():
    assert judge(PREFIX, STATUS_TOPIC, status(), retained=True).value["faults"] == []


def test_the_will_message_is_a_valid_status():
    assert judge(PREFIX, STATUS_TOPIC, b'{"online": false}', retained=True).value == {"online": False}


def test_an_empty_retained_status_is_the_status_being_cleared():
    assert judge(PREFIX, STATUS_TOPIC, b"", retained=True) == Accepted("status", SITE, DOOR, STATUS_TOPIC, None)


def test_an_occupancy_of_this_version_is_accepted():
    occ = {"count": 1, "inside": [{"person_id": "P001", "name": "测试员甲", "role": "staff",
                                   "since": "2026-11-23T08:55:03+08:00"}]}
    assert judge(PREFIX, OCCUPANCY_TOPIC, body(occ), retained=True).value == occ


def test_a_command_result_is_accepted():
    assert judge(PREFIX, RESULT_TOPIC, b'{"id": "x", "ok": false, "error": "no"}').kind == "result"


# ---------------------------------------------------------------- strict JSON, size

def test_nan_is_refused():
    assert reason_for(body(event()).replace(b'"detail": {}', b'"detail": {"x": NaN}')) == \
        "NaN is not a number strict JSON allows"


def test_infinity_is_refused():
    assert "Infinity" in reason_for(body(event()).replace(b'"detail": {}', b'"detail": {"x": -Infinity}'))


def test_a_number_too_large_for_a_float_is_refused():
    assert "too large for a float" in reason_for(body(event()).replace(b'"detail": {}', b'"detail": {"x": 1e400}'))


def test_a_key_twice_in_one_object_is_refused():
    assert reason_for(body(event())[:-1] + b', "seq": 2}') == "key 'seq' appears twice in one object"


def test_bytes_that_are_not_utf8_are_refused():
    assert reason_for(b'{"seq": "\xff"}').startswith("not UTF-8")


def test_a_lone_surrogate_is_refused():
    assert "lone surrogate" in reason_for(body(event()).replace(b'"detail": {}', b'"detail": {"x": "\\ud800"}'))


def test_text_that_is_not_json_is_refused():
    assert reason_for(b"not json").startswith("not JSON:")


def test_json_nested_too_deeply_is_refused():
    assert "nested too deeply" in reason_for(b"[" * 20_000 + b"]" * 20_000, STATUS_TOPIC)


def test_a_3_mb_event_is_refused_for_its_size():
    e = event(detail={"junk": "x" * 3_000_000})
    assert reason_for(body(e)) == f"{len(body(e))} bytes, over the {MAX_PAYLOAD}-byte limit of a message"


def test_an_event_that_is_not_an_object_is_refused():
    assert reason_for(b"[1, 2]") == "an event is a JSON object, not a list"


# ---------------------------------------------------------------- seq and ts

def test_seq_2_to_the_63_is_refused():
    assert reason_for(body(event(seq=2 ** 63))) == "seq 9223372036854775808 is outside 1..2^53"


def test_seq_0_is_refused():
    assert reason_for(body(event(seq=0))) == "seq 0 is outside 1..2^53"


def test_seq_2_to_the_53_is_the_last_accepted():
    assert isinstance(judge(PREFIX, EVENT_TOPIC, body(event(seq=2 ** 53))), Accepted)
    assert reason_for(body(event(seq=2 ** 53 + 1))) == "seq 9007199254740993 is outside 1..2^53"


def test_seq_that_is_a_float_or_a_bool_is_refused():
    assert reason_for(body(event(seq=1.0))) == "seq 1.0 is not an integer"
    assert reason_for(body(event(seq=True))) == "seq True is not an integer"


def test_ts_nan_is_refused():
    assert reason_for(body(event(ts="NaN"))) == "ts 'NaN' is not an ISO 8601 time"


def test_ts_that_is_a_bare_nan_is_refused():
    payload = body(event()).replace(b'"ts": "2026-11-23T08:55:03.120+08:00"', b'"ts": NaN')
    assert reason_for(payload) == "NaN is not a number strict JSON allows"


def test_ts_in_year_9999_is_refused():
    assert reason_for(body(event(ts="9999-12-31T23:59:59+08:00"))) == \
        "ts '9999-12-31T23:59:59+08:00' is outside the years 1970..2199 the archives keep"


def test_ts_at_the_first_year_with_an_offset_that_overflows_is_refused():
    assert "outside the years" in reason_for(body(event(ts="0001-01-01T00:00:00+08:00")))


def test_ts_of_a_door_whose_clock_fell_back_to_1970_is_accepted():
    assert isinstance(judge(PREFIX, EVENT_TOPIC, body(event(ts="1970-01-01T08:00:05+08:00"))), Accepted)


def test_ts_without_offset_is_refused():
    assert reason_for(body(event(ts="2026-11-23T08:55:03"))) == "ts '2026-11-23T08:55:03' has no UTC offset"


# ---------------------------------------------------------------- vocabulary and identifiers

def test_a_nul_in_type_is_refused():
    e = event(type="access_granted\x00")
    assert reason_for(body(e), EVENT_TOPIC + "\x00") == "type 'access_granted\\x00' holds a NUL"


def test_a_control_character_in_the_door_is_refused():
    assert "U+001B" in reason_for(body(event(door="scan\x1broom")))


def test_a_nul_in_a_person_id_is_refused():
    e = event(person={"person_id": "P0\x0001", "name": "x", "role": "staff"})
    assert reason_for(body(e)) == "person_id 'P0\\x0001' holds a NUL"


def test_an_unknown_type_is_refused():
    assert reason_for(body(event(type="open_sesame")), f"{PREFIX}/{SITE}/{DOOR}/events/access/open_sesame") == \
        "type 'open_sesame' is not in the event vocabulary"


def test_a_type_of_another_category_is_refused():
    e = event(category="access", type="door_forced")
    assert reason_for(body(e), f"{PREFIX}/{SITE}/{DOOR}/events/access/door_forced") == \
        "type 'door_forced' belongs to category alarm, not access"


def test_an_unknown_denial_reason_is_refused():
    assert reason_for(body(event(reason="because"))) == "reason 'because' is not a denial reason of the vocabulary"


def test_a_reason_or_direction_that_is_a_list_is_refused_not_a_crash():
    assert reason_for(body(event(reason=[]))) == "reason [] is not a denial reason of the vocabulary"
    assert reason_for(body(event(direction={"a": 1}))) == "direction {'a': 1} is not in or out"


def test_a_field_outside_the_vocabulary_is_refused():
    assert reason_for(body(event(extra=1))) == "field 'extra' is not in the event vocabulary"


def test_a_missing_field_is_refused():
    e = event()
    del e["prev_hash"]
    assert reason_for(body(e)) == "the event has no prev_hash"


def test_a_hash_that_is_not_hex_is_refused():
    e = event()
    e["hash"] = "ZZ" * 32
    assert reason_for(body(e)).startswith("hash 'ZZZZ")


def test_detail_that_is_not_an_object_is_refused():
    assert reason_for(body(event(detail=[1]))) == "detail is a list, not a JSON object"


def test_a_full_id_number_in_detail_is_refused():
    e = event(detail={"note": FULL_ID})
    assert reason_for(body(e)) == \
        "the event carries what looks like a full resident ID number (doors publish masked numbers only)"


def test_an_18_digit_bare_number_in_detail_shaped_like_an_id_number_is_refused():
    payload = body(event()).replace(b'"detail": {}', f'"detail": {{"n": {FULL_ID[:17]}1}}'.encode())
    assert "full resident ID number" in reason_for(payload)


# ---------------------------------------------------------------- topic and body, retained

def test_another_doors_event_on_this_doors_topic_is_refused():
    assert reason_for(body(event(door="vault"))) == f"the event on {SITE}/{DOOR}'s topic names door 'vault'"


def test_an_event_whose_type_differs_from_its_topic_is_refused():
    topic = f"{PREFIX}/{SITE}/{DOOR}/events/access/passage"
    assert reason_for(body(event()), topic) == \
        f"the event on {SITE}/{DOOR}'s topic names type 'access_granted'"


def test_a_retained_event_is_refused():
    assert reason_for(body(event()), retained=True).startswith("an event arrived retained")


def test_a_topic_with_too_many_levels_is_refused_with_its_door():
    verdict = judge(PREFIX, EVENT_TOPIC + "/extra", body(event()))
    assert isinstance(verdict, Rejected) and (verdict.site, verdict.door) == (SITE, DOOR)
    assert "is not a door's events" in verdict.reason


def test_a_reject_names_a_topic_with_a_nul_with_the_nul_escaped():
    verdict = judge(PREFIX, f"{PREFIX}/{SITE}/scan\x00room/status", b"{}")
    assert (verdict.door, verdict.topic) == ("scan\\x00room", f"{PREFIX}/{SITE}/scan\\x00room/status")
    assert verdict.reason == "the topic's door 'scan\\x00room' holds a NUL"


def test_a_reject_names_the_site_and_door_of_its_topic():
    verdict = judge(PREFIX, EVENT_TOPIC, b"x")
    assert (verdict.site, verdict.door, verdict.topic) == (SITE, DOOR, EVENT_TOPIC)


# ---------------------------------------------------------------- status and occupancy

def test_a_status_whose_faults_is_a_number_is_refused_as_a_whole():
    assert reason_for(status(faults=1), STATUS_TOPIC, retained=True) == \
        "status field faults: 1 is not a list of device names"


def test_a_status_whose_lock_is_a_list_is_refused():
    assert reason_for(status(lock=["x"]), STATUS_TOPIC, retained=True) == \
        "status field lock: ['x'] is not locked or released"


def test_a_status_whose_online_is_text_is_refused():
    assert reason_for(status(online="yes"), STATUS_TOPIC) == "status field online: 'yes' is not true or false"


def test_a_status_whose_last_seq_is_beyond_2_to_the_53_is_refused():
    assert reason_for(status(last_seq=2 ** 63), STATUS_TOPIC) == \
        "status field last_seq: 9223372036854775808 is outside 0..2^53"


def test_a_status_that_is_a_list_is_refused():
    assert reason_for(b"[]", STATUS_TOPIC) == "a status is a JSON object, not a list"


def test_an_occupancy_whose_inside_is_not_a_list_is_refused():
    assert reason_for(b'{"count": 1, "inside": "P001"}', OCCUPANCY_TOPIC) == \
        "occupancy inside: 'P001' is not a list of people"


def test_a_command_result_without_a_text_id_is_refused():
    assert reason_for(b'{"id": 5, "ok": true}', RESULT_TOPIC) == "command result id 5 is not text"


# ---------------------------------------------------------------- what is kept of a refused payload

def test_a_refused_payload_is_kept_as_received():
    assert kept_payload(b"\xff not json") == b"\xff not json"


def test_a_refused_payload_is_kept_with_its_id_numbers_masked():
    assert kept_payload(f'{{"n": "{FULL_ID}"}}'.encode()) == b'{"n": "110105********002X"}'


def test_a_refused_payload_is_cut_to_a_little_more_than_the_limit():
    assert len(kept_payload(b"x" * 3_000_000)) == MAX_PAYLOAD + 1024
