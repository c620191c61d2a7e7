"""The alarm queue over a real archive (SQLite file and PostgreSQL alike), the web app served by
uvicorn on loopback (no broker): priorities, filters, state events closing the alarm they answer,
acknowledging several at once, the tiles and the stream's count of open alarms."""

from __future__ import annotations

import json
import re
import threading
import urllib.request

import pytest

from tests.fixtures.station import ThreadedStation
from tests.system.test_station_web import archive, chained

SITE, DOOR = "hn-archive-1", "scan-room"
TS = "2026-11-23T09:00:{:02d}.000+08:00"


@pytest.fixture(params=["sqlite", "postgres"])
def web(request, tmp_path):
    where = tmp_path / "archive.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    station = ThreadedStation(where)
    station.add_user("olga", "operator")
    station.add_user("victor", "viewer")
    yield station
    station.close()


@pytest.fixture
def sqlite_web(tmp_path):
    station = ThreadedStation(tmp_path / "archive.db")
    station.add_user("olga", "operator")
    yield station
    station.close()


def alarms_of(specs):
    """Chained events from (type, category, detail) triples, one second apart."""
    return chained([(TS.format(i), t, c, {"detail": d}) for i, (t, c, d) in enumerate(specs)])


def logged_in(web, name="olga"):
    c = web.client()
    assert c.login(name).status == 303
    return c


def queue(c, query: str = "") -> list[tuple[str, int, str]]:
    """(door, seq, type) of the rows of the open queue, in the page's order."""
    page = c.get("/alarms" + query).text
    table = page[page.index('id="open-alarms"'):page.index('id="no-open-alarms"')]
    return [(d, int(s), t) for d, s, t in
            re.findall(r'<tr class="alarm[^"]*" data-key="[^"]*" data-site="[^"]*" data-door="([^"]*)" '
                       r'data-epoch="\d+" data-seq="(\d+)" data-type="([^"]*)"', table)]


def closed_rows(c) -> list[tuple[int, int]]:
    page = c.get("/alarms").text
    found = re.findall(r'data-seq="(\d+)" data-type="[^"]*" data-closed-by="(\d+)"', page)
    return sorted((int(s), int(by)) for s, by in found)


# ---------------------------------------------------------------- priorities and filters


def test_the_queue_puts_forced_doors_first_then_tamper_then_screening_newest_first(web):
    archive(web, alarms_of([("repeated_failures", "alarm", {}), ("screening_alarm", "alarm", {}),
                            ("door_forced", "alarm", {}), ("tamper", "alarm", {"device": "lid", "active": True}),
                            ("tailgating", "alarm", {}), ("door_forced", "alarm", {}),
                            ("screening_alarm", "alarm", {}), ("passage", "access", {})]))
    assert [(s, t) for _, s, t in queue(logged_in(web))] == [
        (6, "door_forced"), (3, "door_forced"), (4, "tamper"), (7, "screening_alarm"), (2, "screening_alarm"),
        (5, "tailgating"), (1, "repeated_failures")]


def test_the_queue_filters_by_door_and_by_type(web):
    archive(web, alarms_of([("door_forced", "alarm", {}), ("tailgating", "alarm", {})]))
    archive(web, alarms_of([("door_forced", "alarm", {})]), door="side-door")
    c = logged_in(web)
    assert queue(c, "?type=door_forced") == [("side-door", 1, "door_forced"), (DOOR, 1, "door_forced")]
    assert queue(c, f"?site={SITE}&door={DOOR}") == [(DOOR, 1, "door_forced"), (DOOR, 2, "tailgating")]
    page = c.get("/alarms").text
    assert '<option value="side-door">' in page and "(<span data-open-alarms>3</span>)" in page
    assert page.count('data-action="acknowledge"') == 3 and page.count('list="ack-comments"') == 4
    assert '<datalist id="ack-comments">' in page


def test_each_alarm_links_to_its_doors_events_around_it(web):
    archive(web, alarms_of([("passage", "access", {})] * 3 + [("door_forced", "alarm", {})]
                           + [("passage", "access", {})] * 12))
    c = logged_in(web, "victor")
    assert f'href="/alarms/{SITE}/{DOOR}/4?epoch=1"' in c.get("/alarms").text
    page = c.get(f"/alarms/{SITE}/{DOOR}/4?epoch=1").text
    assert re.findall(r'data-seq="(\d+)"', page) == [str(n) for n in range(1, 15)]
    assert 'aria-current="true" id="the-alarm"' in page
    assert c.get(f"/alarms/{SITE}/{DOOR}/400").status == 404
    assert c.get(f"/alarms/{SITE}/{DOOR}/{(1 << 63) - 5}").status == 404
    assert c.get(f"/alarms/{SITE}/{DOOR}/4?epoch=x").status == 400


# ---------------------------------------------------------------- state events close what they answer


def test_state_events_close_the_alarm_they_answer_and_no_person_acknowledges_them(web):
    archive(web, alarms_of([
        ("hardware_fault", "alarm", {"device": "reader", "state": "fault", "fault": "no answer"}),   # 1
        ("hardware_fault", "alarm", {"device": "gate", "state": "fault", "fault": "stuck"}),         # 2
        ("hardware_fault", "alarm", {"device": "reader", "state": "recovered"}),                     # 3
        ("tamper", "alarm", {"device": "lid", "active": True}),                                      # 4
        ("tamper", "alarm", {"device": "lid", "active": False}),                                     # 5
        ("link_down", "alarm", {"down_since": "2026-11-23T08:59:00+08:00", "bound_s": 60}),          # 6
        ("link_up", "system", {"down_since": "2026-11-23T08:59:00+08:00", "outage_s": 70.0}),        # 7
        ("door_held_open", "alarm", {"limit_s": 30}),                                                # 8
        ("door_held_open", "alarm", {"closed": True, "open_s": 41.5}),                               # 9
    ]))
    c = logged_in(web)
    assert queue(c) == [(DOOR, 2, "hardware_fault")]
    assert closed_rows(c) == [(1, 3), (3, 3), (4, 5), (5, 5), (6, 7), (8, 9), (9, 9)]
    page = c.get("/alarms").text
    assert "closed by the door's #3" in page and "a state event: nothing to acknowledge" in page
    assert web.store.acknowledge(SITE, DOOR, 1, 1, "olga", web.station.now(), "x") == "ok"  # a person still may
    assert queue(c) == [(DOOR, 2, "hardware_fault")]


def test_an_end_that_arrived_before_its_start_still_closes_it(web):
    fault, recovered = alarms_of([("hardware_fault", "alarm", {"device": "reader", "state": "fault"}),
                                  ("hardware_fault", "alarm", {"device": "reader", "state": "recovered"})])
    c = logged_in(web)
    archive(web, [recovered])  # a replayed gap: the door's #2 came first
    assert queue(c) == []
    archive(web, [fault])
    assert queue(c) == [] and closed_rows(c) == [(1, 2), (2, 2)]


def test_an_alarm_acknowledged_before_its_end_stays_acknowledged_by_the_person(web):
    fault, recovered = alarms_of([("tamper", "alarm", {"device": "lid", "active": True}),
                                  ("tamper", "alarm", {"device": "lid", "active": False})])
    archive(web, [fault])
    c = logged_in(web)
    assert c.post(f"/alarms/{SITE}/{DOOR}/1/acknowledge", {"csrf": c.csrf(), "comment": "seen"}).status == 303
    archive(web, [recovered])
    assert queue(c) == [] and closed_rows(c) == [(2, 2)]


def test_a_state_event_a_door_wrote_strangely_closes_nothing(web):
    archive(web, alarms_of([("hardware_fault", "alarm", {"device": "reader", "state": "fault"}),
                            ("hardware_fault", "alarm", {"device": ["reader"], "state": "recovered"}),
                            ("tamper", "alarm", {"device": "lid", "active": "no"})]))
    assert [s for _, s, _ in queue(logged_in(web))] == [3, 2, 1]


# ---------------------------------------------------------------- what an alarm says


def test_the_overstay_alarm_names_the_people_it_carries(sqlite_web):
    people = [{"person_id": "P001", "name": "测试员甲", "role": "staff"},
              {"person_id": "P002", "name": "测试员乙", "role": "visitor"}]
    archive(sqlite_web, alarms_of([("overstay", "alarm", {"persons": people, "count": 2}),
                                   ("tamper", "alarm", {"device": "event_log", "active": True, "expected_seq": 7,
                                                        "expected_hash": "ab" * 32, "found_seq": 5})]))
    page = logged_in(sqlite_web).get("/alarms").text
    assert "滞留人员 Still inside: P001 测试员甲, P002 测试员乙" in page and "count=2" not in page
    assert "expected #7, 实到 found #5" in page and "ab" * 32 not in page


# ---------------------------------------------------------------- several at once


def test_an_operator_acknowledges_several_alarms_with_one_comment(web):
    archive(web, alarms_of([("door_forced", "alarm", {}), ("tailgating", "alarm", {}), ("tamper", "alarm", {})]))
    c = logged_in(web)
    picks = {f"pick-{i}": json.dumps([SITE, DOOR, 1, seq]) for i, seq in enumerate((1, 3))}
    r = c.post("/alarms/acknowledge", {"csrf": c.csrf(), "comment": "误报 False alarm", **picks})
    assert r.status == 303 and r.headers["location"] == "/alarms"
    assert queue(c) == [(DOOR, 2, "tailgating")]
    done = sorted(a[:3] + (a[-1],) for a in web.store.alarms(True, 10))
    assert [(s, d, q, comment) for s, d, q, comment in done] == [(SITE, DOOR, 1, "误报 False alarm"),
                                                                  (SITE, DOOR, 3, "误报 False alarm")]
    again = c.post("/api/alarms/acknowledge", {"csrf": c.csrf(), "comment": "again",
                                               "pick-0": json.dumps([SITE, DOOR, 1, 1]),
                                               "pick-1": json.dumps([SITE, DOOR, 1, 2])})
    assert again.status == 200 and again.json()["ok"] == [f"{SITE}/{DOOR} #2"]
    assert again.json()["already_acknowledged"] == [f"{SITE}/{DOOR} #1"]
    assert queue(c) == []


@pytest.mark.parametrize("back, location", [("/alarms?type=tailgating", "/alarms?type=tailgating"),
                                            ("/register", "/alarms"), ("//elsewhere.example/", "/alarms")])
def test_an_acknowledgement_returns_to_the_queue_as_it_was_filtered(sqlite_web, back, location):
    archive(sqlite_web, alarms_of([("tailgating", "alarm", {}), ("tailgating", "alarm", {})]))
    c = logged_in(sqlite_web)
    assert 'name="next" value="/alarms?type=tailgating"' in c.get("/alarms?type=tailgating").text
    one = c.post(f"/alarms/{SITE}/{DOOR}/1/acknowledge", {"csrf": c.csrf(), "comment": "x", "next": back})
    chosen = c.post("/alarms/acknowledge", {"csrf": c.csrf(), "comment": "x", "next": back,
                                            "pick-0": json.dumps([SITE, DOOR, 1, 2])})
    assert (one.status, one.headers["location"]) == (chosen.status, chosen.headers["location"]) == (303, location)


@pytest.mark.parametrize("picks, error", [
    ({}, "choose at least one alarm"),
    ({"pick-0": '["hn-archive-1", "scan-room", 1]'}, "does not name an alarm"),
    ({"pick-0": '["hn-archive-1", "scan-room", 1, true]'}, "does not name an alarm"),
    ({"pick-0": "{not json"}, "does not name an alarm"),
])
def test_a_bulk_acknowledgement_that_names_no_alarm_is_refused_and_acknowledges_nothing(sqlite_web, picks, error):
    archive(sqlite_web, alarms_of([("door_forced", "alarm", {})]))
    c = logged_in(sqlite_web)
    r = c.post("/api/alarms/acknowledge", {"csrf": c.csrf(), "comment": "x",
                                           "pick-9": json.dumps([SITE, DOOR, 1, 1]) if picks else "", **picks})
    assert r.status == 400 and error in r.json()["error"]
    assert sqlite_web.store.alarms(True, 10) == []


def test_a_viewer_may_not_acknowledge_several_alarms(sqlite_web):
    sqlite_web.add_user("victor", "viewer")
    archive(sqlite_web, alarms_of([("door_forced", "alarm", {})]))
    c = logged_in(sqlite_web, "victor")
    r = c.post("/alarms/acknowledge", {"csrf": c.csrf(), "comment": "x", "pick-0": json.dumps([SITE, DOOR, 1, 1])})
    assert r.status == 403 and sqlite_web.store.alarms(True, 10) == []
    assert 'id="bulk-ack"' not in c.get("/alarms").text


# ---------------------------------------------------------------- the tiles, the title, the stream


def test_a_tile_with_an_open_alarm_says_which_and_the_title_counts(sqlite_web):
    archive(sqlite_web, alarms_of([("door_forced", "alarm", {}), ("tamper", "alarm", {"device": "lid",
                                                                                       "active": True})]))
    c = logged_in(sqlite_web)
    page = c.get("/").text
    assert f'data-door="{DOOR}" data-online="false" data-problems="0" data-alarm="true"' in page
    assert "告警 ALARM: 强行开门 door forced, 防拆报警 tamper" in page
    assert "<title data-title=\"总览 Overview" in page and ">(2) 总览 Overview" in page
    tiles = c.get("/api/doors").json()["doors"]
    assert tiles[0]["alarms"] == {"door_forced": 1, "tamper": 1} and tiles[0]["open_alarms"] == 2
    c.post("/alarms/acknowledge", {"csrf": c.csrf(), "comment": "ok", "pick-0": json.dumps([SITE, DOOR, 1, 1]),
                                   "pick-1": json.dumps([SITE, DOOR, 1, 2])})
    assert 'data-alarm="false"' in c.get("/").text


def test_the_stream_sends_the_count_of_open_alarms_and_marks_new_alarms(sqlite_web):
    c = logged_in(sqlite_web)
    archive(sqlite_web, alarms_of([("door_forced", "alarm", {}),
                                   ("hardware_fault", "alarm", {"device": "reader", "state": "recovered"})]))
    got = read_messages(c, "/api/stream?after=0&queue=1", {"event": 2, "alarms": 1})
    assert [(e["seq"], e["alarm"]) for e in got["event"]] == [(1, True), (2, False)]
    (summary,) = got["alarms"]
    assert summary["count"] == 1 and summary["doors"] == [
        {"site": SITE, "door": DOOR, "types": {"door_forced": 1}, "text": "告警 ALARM: 强行开门 door forced"}]
    assert [r["key"] for r in summary["rows"]] == [json.dumps([SITE, DOOR, 1, 1])]
    assert 'data-action="acknowledge"' in summary["rows"][0]["html"]


def test_a_page_that_shows_no_events_hears_only_of_alarms_after_it_opened(sqlite_web):
    events = alarms_of([("door_forced", "alarm", {}), ("passage", "access", {}), ("tamper", "alarm",
                                                                                   {"device": "lid", "active": True})])
    archive(sqlite_web, events[:2])
    c = logged_in(sqlite_web)
    later = threading.Timer(0.5, archive, (sqlite_web, events[2:]))
    later.start()
    try:
        got = read_messages(c, "/api/stream?after=now", {"event": 1, "alarms": 2})
    finally:
        later.join()
    assert [(e["seq"], e["alarm"]) for e in got["event"]] == [(3, True)]
    assert [m["count"] for m in got["alarms"]] == [1, 2] and "rows" not in got["alarms"][0]


def read_messages(client, path: str, want: dict[str, int], timeout: float = 10) -> dict[str, list]:
    """The first messages of each kind in ``want`` (how many of each) of the live stream at ``path``."""
    got: dict[str, list] = {k: [] for k in want}
    block: dict = {}
    with client.opener.open(urllib.request.Request(client.base + path), timeout=timeout) as r:
        for raw in r:
            line = raw.decode().rstrip("\n")
            if not line:
                kind = block.get("event")
                if kind in got and len(got[kind]) < want[kind]:
                    got[kind].append(json.loads(block["data"]))
                if all(len(got[k]) >= n for k, n in want.items()):
                    return got
                block = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                block[key] = value
    return got


# ---------------------------------------------------------------- door commands


def test_a_command_to_an_offline_door_is_refused_and_nothing_is_sent(sqlite_web):
    archive(sqlite_web, alarms_of([("controller_started", "system", {})]))
    sqlite_web.archive.store_status(SITE, DOOR, "status", {"online": False}, "2026-11-23T09:01:00+08:00")
    c = logged_in(sqlite_web)
    r = c.post(f"/api/doors/{SITE}/{DOOR}/lockdown", {"csrf": c.csrf()})
    assert r.status == 409 and "offline: nothing was sent" in r.json()["error"]
    (result,) = sqlite_web.store.query("SELECT result FROM audit WHERE action LIKE '%/lockdown'")[0]
    assert result == "409 not sent: the door is offline"


def test_a_command_the_station_did_not_send_has_no_answer(sqlite_web):
    c = logged_in(sqlite_web)
    assert c.get("/api/commands/station-0000").status == 404
