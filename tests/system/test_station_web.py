"""The station's web app over a real archive file, served by uvicorn on loopback (no broker):
sessions, CSRF, roles, throttling, the register export and the events API."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import pytest

from firmware_py.core.events import GENESIS_HASH, event_hash
from firmware_py.station.web.throttle import LoginThrottle
from tests.fixtures.station import ThreadedStation, read_event_stream

SITE, DOOR = "hn-archive-1", "scan-room"
FULL_ID = "430102199003070012"  # a fictional person, valid check digit


def chained(specs, *, site=SITE, door=DOOR):
    """Hash-chained events from (ts, type, category, extra fields) tuples, seq from 1."""
    prev, out = GENESIS_HASH, []
    for seq, (ts, type_, category, extra) in enumerate(specs, 1):
        e = {"seq": seq, "ts": ts, "site": site, "door": door, "category": category, "type": type_,
             "direction": None, "person": None, "credential": None, "reason": None, "detail": {}, "prev_hash": prev,
             **extra}
        e["hash"] = event_hash(e)
        prev = e["hash"]
        out.append(e)
    return out


def archive(station: ThreadedStation, events, *, site=SITE, door=DOOR):
    for e in events:
        station.archive.store_event(site, door, f"accessctl/{site}/{door}/events/{e['category']}/{e['type']}",
                                    json.dumps(e, ensure_ascii=False).encode(), e, "2026-11-23T09:00:00+08:00")


def person(pid, name):
    return {"person": {"person_id": pid, "name": name, "role": "staff"},
            "credential": {"kind": "resident_id", "masked": "430102********0012"}}


@pytest.fixture
def web(station_web):
    station_web.add_user("olga", "operator")
    station_web.add_user("victor", "viewer")
    return station_web


def logged_in(web, name):
    c = web.client()
    assert c.login(name).status == 303
    return c


# ---------------------------------------------------------------- sessions


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/events"), ("GET", "/api/events?from=2026-11-01&to=2026-11-30"), ("GET", "/api/doors"),
    ("GET", "/api/stream"), ("POST", f"/api/doors/{SITE}/{DOOR}/lockdown"),
    ("POST", f"/api/doors/{SITE}/{DOOR}/release_lockdown"), ("POST", f"/api/doors/{SITE}/{DOOR}/revoke"),
    ("POST", f"/api/alarms/{SITE}/{DOOR}/1/acknowledge"), ("GET", "/api/no-such-thing"), ("POST", "/api/events"),
])
def test_every_api_call_without_a_session_answers_401(web, method, path):
    assert web.client().request(method, path, {} if method == "POST" else None).status == 401


@pytest.mark.parametrize("body, content_type", [
    (b"x" * (70 * 1024), "application/x-www-form-urlencoded"),  # over the body limit
    (b"<lockdown/>", "application/xml"),  # a kind of body the station does not read
    (b"{not json", "application/json"),  # unreadable
])
def test_an_api_call_without_a_session_answers_401_whatever_its_body(web, body, content_type):
    """The session is checked before the body is read: nobody learns anything about the endpoint first."""
    reply = web.client().request("POST", f"/api/doors/{SITE}/{DOOR}/lockdown", raw=body,
                                 headers={"Content-Type": content_type})
    assert reply.status == 401, reply.text


def test_a_page_without_a_session_sends_the_browser_to_the_login_page(web):
    r = web.client().get("/register?date=2026-11-23")
    assert r.status == 303 and r.headers["location"] == "/login?next=%2Fregister%3Fdate%3D2026-11-23"


def test_logging_in_sets_an_http_only_same_site_strict_session_cookie(web):
    r = web.client().login("olga")
    cookie = r.headers["set-cookie"]
    assert r.status == 303 and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie


def test_a_wrong_password_is_refused_and_audited_without_the_password(web):
    r = web.client().login("olga", "not the password")
    assert r.status == 401 and "Wrong user name or password" in r.text
    (entry,) = web.store.query("SELECT who, action, detail, result FROM audit")
    assert entry[0] == "olga" and entry[1] == "POST /login" and entry[3].startswith("401")
    assert "not the password" not in entry[2]


def test_after_five_failed_logins_even_the_right_password_waits_with_429(web):
    c = web.client()
    for _ in range(5):
        assert c.login("olga", "guess guess").status == 401
    r = c.login("olga")
    assert r.status == 429 and int(r.headers["retry-after"]) > 0


def test_failed_logins_from_one_address_throttle_every_name_tried_from_it(tmp_path):
    station = ThreadedStation(tmp_path / "a.db", throttle=LoginThrottle(max_failures=3))
    try:
        station.add_user("olga", "operator")
        c = station.client()
        for name in ("alpha", "beta", "gamma"):
            assert c.login(name, "guess guess").status == 401
        assert c.login("olga").status == 429
    finally:
        station.close()


def test_logging_out_ends_the_session(web):
    c = logged_in(web, "olga")
    assert c.post("/logout", {"csrf": c.csrf()}).status == 303
    assert c.get("/api/doors").status == 401


# ---------------------------------------------------------------- CSRF and roles


@pytest.fixture
def alarm(web):
    archive(web, chained([("2026-11-23T09:00:00.000+08:00", "door_forced", "alarm", {})]))
    return f"/alarms/{SITE}/{DOOR}/1/acknowledge"


def audit_results(web):
    return [r for (r,) in web.store.query("SELECT result FROM audit WHERE action NOT LIKE '%/login' ORDER BY id")]


def test_a_state_changing_request_without_the_csrf_token_is_403_and_audited(web, alarm):
    c = logged_in(web, "olga")
    r = c.post(alarm, {"comment": "checked"})
    assert r.status == 403
    assert web.store.query("SELECT count(*) FROM acknowledgements")[0][0] == 0
    assert audit_results(web) == ["403 missing or invalid CSRF token 跨站请求校验失败"]


def test_a_state_changing_request_with_another_sessions_csrf_token_is_403(web, alarm):
    other = logged_in(web, "victor").csrf()
    c = logged_in(web, "olga")
    assert c.post(alarm, {"comment": "checked", "csrf": other}).status == 403


def test_the_csrf_token_is_accepted_as_a_header_as_well_as_a_form_field(web, alarm):
    c = logged_in(web, "olga")
    r = c.post("/api" + alarm, {"comment": "checked"}, headers={"X-CSRF-Token": c.csrf()})
    assert r.status == 200 and r.json() == {"ok": True}
    assert web.store.query("SELECT by, comment FROM acknowledgements") == [("olga", "checked")]


def test_a_request_from_another_origin_is_403_even_with_a_valid_token(web, alarm):
    c = logged_in(web, "olga")
    r = c.post(alarm, {"comment": "checked", "csrf": c.csrf()}, headers={"Origin": "http://evil.example"})
    assert r.status == 403
    assert web.store.query("SELECT count(*) FROM acknowledgements")[0][0] == 0


def test_a_viewer_may_read_but_not_acknowledge(web, alarm):
    c = logged_in(web, "victor")
    assert c.get("/alarms").status == 200 and 'data-action="acknowledge"' not in c.get("/alarms").text
    assert c.post(alarm, {"comment": "checked", "csrf": c.csrf()}).status == 403
    assert web.store.query("SELECT count(*) FROM acknowledgements")[0][0] == 0


def test_only_an_admin_sees_the_audit_trail(web):
    web.add_user("ada", "admin")
    assert logged_in(web, "olga").get("/audit").status == 403
    assert logged_in(web, "ada").get("/audit").status == 200


def test_a_door_command_without_a_broker_is_503_and_audited_as_not_sent(web):
    archive(web, chained([("2026-11-23T09:00:00.000+08:00", "controller_started", "system", {})]))
    c = logged_in(web, "olga")
    r = c.post(f"/doors/{SITE}/{DOOR}/lockdown", {"csrf": c.csrf()})
    assert r.status == 503
    assert audit_results(web)[-1].startswith("503 not sent")


# ---------------------------------------------------------------- register and API


def test_api_events_returns_the_stored_events_of_the_days_in_the_sites_zone(web):
    events = chained([("2026-11-22T15:59:59.000+00:00", "passage", "access", {}),   # 23:59:59 on the 22nd in Shanghai
                      ("2026-11-22T16:00:00.000+00:00", "passage", "access", {}),   # 00:00 on the 23rd
                      ("2026-11-23T23:59:00.000+08:00", "passage", "access", person("P002", "乙"))])
    archive(web, events)
    c = logged_in(web, "victor")
    assert c.get("/api/events?from=2026-11-23&to=2026-11-23").json() == {"events": events[1:]}
    assert c.get("/api/events?from=2026-11-22&to=2026-11-23&person=P002").json() == {"events": events[2:]}
    assert c.get(f"/api/events?from=2026-11-22&to=2026-11-22&site={SITE}&door={DOOR}").json() == {"events": events[:1]}
    assert c.get("/api/events?from=2026-11-23&to=2026-11-22").status == 400


def test_the_register_csv_neutralises_formulas_and_never_holds_a_full_id_number(web):
    archive(web, chained([("2026-11-23T09:00:00.000+08:00", "access_granted", "access",
                           {"direction": "in", "person": {"person_id": "=HYPERLINK(\"x\")", "name": "@SUM(1)",
                                                          "role": "-staff"},
                            "credential": {"kind": "resident_id", "masked": FULL_ID}})]))
    c = logged_in(web, "victor")
    r = c.get("/register.csv?date=2026-11-23")
    assert r.status == 200 and FULL_ID not in r.text
    (row,) = list(csv.DictReader(io.StringIO(r.text)))
    assert row["person_id"] == "'=HYPERLINK(\"x\")" and row["name"] == "'@SUM(1)" and row["role"] == "'-staff"
    assert row["credential"] == "430102********0012"
    assert r.headers["x-content-sha256"] == hashlib.sha256(r.body).hexdigest()
    page = c.get("/register?date=2026-11-23").text
    assert FULL_ID not in page and "430102********0012" in page


def test_the_printable_register_shows_the_digest_of_the_csv_and_the_chain_result(web):
    archive(web, chained([("2026-11-23T09:00:00.000+08:00", "access_granted", "access", person("P001", "甲")),
                          ("2026-11-23T09:00:05.000+08:00", "passage", "access", person("P001", "甲"))]))
    c = logged_in(web, "victor")
    data = c.get("/register.csv?date=2026-11-23").body
    page = c.get("/register/print?date=2026-11-23").text
    assert hashlib.sha256(data).hexdigest() in page
    assert "verified #1–#2" in page and 'data-chain-ok="true"' in page


def test_an_altered_archived_event_shows_as_a_broken_chain(web):
    events = chained([("2026-11-23T09:00:00.000+08:00", "access_granted", "access", person("P001", "甲")),
                      ("2026-11-23T09:00:05.000+08:00", "passage", "access", person("P001", "甲"))])
    events[1]["person"]["name"] = "乙"  # altered after hashing
    archive(web, events)
    page = logged_in(web, "victor").get("/register/print?date=2026-11-23").text
    assert 'data-chain-ok="false"' in page and "#2: its hash is not the SHA-256" in page


def test_the_chart_counts_entries_per_hour_and_denials_by_reason(web):
    archive(web, chained([("2026-11-23T09:10:00.000+08:00", "access_granted", "access", {"direction": "in"}),
                          ("2026-11-23T09:20:00.000+08:00", "access_granted", "access", {"direction": "in"}),
                          ("2026-11-23T10:00:00.000+08:00", "access_denied", "access",
                           {"direction": "in", "reason": "outside_working_hours"})]))
    page = logged_in(web, "victor").get("/register?date=2026-11-23").text
    assert 'data-hour="9" data-count="2"' in page and 'data-hour="10" data-count="0"' in page
    assert 'data-reason="outside_working_hours" data-count="1"' in page


# ---------------------------------------------------------------- live stream


def read_stream(web, client, headers, count, path="/api/stream"):
    """The first ``count`` event messages of the live stream as (id, data) pairs."""
    return read_event_stream(client.opener, web.url + path, count, headers=headers, timeout=10)


def test_the_live_stream_resumes_after_the_last_event_id_the_browser_saw(web):
    archive(web, chained([(f"2026-11-23T09:00:0{i}.000+08:00", "passage", "access", {}) for i in range(5)]))
    ids = [i for (i,) in web.store.query("SELECT rowid FROM events ORDER BY rowid")]
    c = logged_in(web, "victor")
    first = read_stream(web, c, {}, 5)
    assert [(i, d["seq"], d["type"]) for i, d in first] == [(ids[n], n + 1, "passage") for n in range(5)]
    resumed = read_stream(web, c, {"Last-Event-ID": str(ids[2])}, 2, path=f"/api/stream?after={ids[0]}")
    assert [d["seq"] for _, d in resumed] == [4, 5]  # the header wins over the page's starting point
