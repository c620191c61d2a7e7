"""What an attacker tried against the station's page (a black-box pass over HTTP), each a defect
found then: no request may end in a 500, fill the audit trail from outside, out-guess the login
throttle, or forge the address the audit trail records."""

from __future__ import annotations

import http.client
import threading
import urllib.parse

import pytest

from firmware_py.station.web.throttle import LoginThrottle
from tests.fixtures.station import PASSWORD, Http
from tests.system.test_station_web import DOOR, SITE, archive, chained, logged_in


@pytest.fixture
def web(station_web):
    station_web.add_user("olga", "operator")
    return station_web


@pytest.fixture
def alarm(web):
    archive(web, chained([("2026-11-23T09:00:00.000+08:00", "door_forced", "alarm", {})]))
    return f"/api/alarms/{SITE}/{DOOR}/1/acknowledge"


def raw(web, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, bytes]:
    """One request as sent (no client-side encoding); the status and the first bytes of the answer."""
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read(2000) if reply.status != 200 or "stream" not in path else b""
    finally:
        conn.close()


# ---------------------------------------------------------------- no 500


@pytest.mark.parametrize("path", [
    "/api/events?from=0001-01-01", "/api/events?from=9999-12-31", "/api/events?from=9999-12-30&to=9999-12-31",
    "/register?date=0001-01-01", "/register?date=9999-12-31", "/register.csv?date=9999-12-31",
    "/register/print?date=0001-01-01",
])
def test_a_date_at_the_ends_of_the_calendar_is_a_400_not_a_500(web, path):
    c = logged_in(web, "olga")
    reply = c.get(path)
    assert reply.status == 400, (reply.status, reply.text[:300])
    assert "date" in reply.text


def test_a_superscript_digit_in_the_stream_cursor_starts_the_stream_instead_of_failing(web):
    c = logged_in(web, "olga")
    cookie = "; ".join(f"{k.name}={k.value}" for k in c.jar)
    for path, headers in (("/api/stream?after=%C2%B2", {}), ("/api/stream", {"Last-Event-ID": "\u00b2"})):
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
        conn.putrequest("GET", path)
        for name, value in {"Cookie": cookie, **headers}.items():
            conn.putheader(name, value.encode("latin-1"))
        conn.endheaders()
        reply = conn.getresponse()
        assert reply.status == 200 and reply.getheader("content-type").startswith("text/event-stream"), path
        conn.close()


@pytest.mark.parametrize("epoch", ["\u00b2", "\uff19\uff19"])  # a superscript two; full-width 99
def test_an_epoch_that_is_not_plain_digits_is_a_400(web, alarm, epoch):
    c = logged_in(web, "olga")
    reply = c.post(alarm, {"csrf": c.csrf(), "comment": "x", "epoch": epoch})
    assert reply.status == 400 and "epoch" in reply.text


def test_a_sequence_number_beyond_sqlite_integers_is_a_404(web, alarm):
    c = logged_in(web, "olga")
    reply = c.post(f"/api/alarms/{SITE}/{DOOR}/{1 << 63}/acknowledge", {"csrf": c.csrf(), "comment": "x"})
    assert reply.status == 404, (reply.status, reply.text[:300])


@pytest.mark.parametrize("path", ["/login", "/logout", f"/doors/{SITE}/{DOOR}/lockdown"])
def test_deeply_nested_json_is_a_400_and_audited(web, path):
    status, _ = raw(web, "POST", path, b"[" * 30000, {"Content-Type": "application/json"})
    assert status in (400, 403)
    (last,) = web.store.query("SELECT action, result FROM audit ORDER BY id DESC LIMIT 1")
    assert last[0] == f"POST {path}" and last[1].startswith(str(status))


# ---------------------------------------------------------------- the audit trail


def test_a_post_without_a_session_is_refused_before_its_body_is_read_and_audited_small(web):
    junk = urllib.parse.urlencode({f"x{i}": "y" * 60 for i in range(900)}).encode()
    for _ in range(5):
        status, _ = raw(web, "POST", f"/doors/{SITE}/{DOOR}/lockdown", junk,
                        {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 403
    rows = web.store.query("SELECT detail, result FROM audit WHERE action LIKE '%/lockdown'")
    assert len(rows) == 5 and all(len(detail) < 200 for detail, _ in rows), rows[0]
    assert all("not logged in" in result for _, result in rows)


def test_the_audit_trail_keeps_only_the_fields_a_route_uses(web, alarm):
    c = logged_in(web, "olga")
    c.post(alarm, {"csrf": c.csrf(), "comment": "camera checked", **{f"junk{i}": "z" * 50 for i in range(50)}})
    (detail,) = web.store.query("SELECT detail FROM audit WHERE action LIKE '%/acknowledge'")[0]
    assert "camera checked" in detail and "junk" not in detail


# ---------------------------------------------------------------- the login throttle


def test_simultaneous_wrong_passwords_get_no_more_checks_than_the_throttle_allows(station_web):
    station_web.station.throttle = LoginThrottle(max_failures=5, window_s=300, lockout_s=60)
    station_web.add_user("eve", "viewer")
    statuses: list[int] = []

    def guess(i: int) -> None:
        statuses.append(Http(station_web.url).login("eve", f"guess{i:04d}").status)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(statuses) == 30
    # at most five passwords checked; the rest waited (429) or found every check slot taken (503)
    assert statuses.count(401) <= 5 and set(statuses) <= {401, 429, 503}, sorted(statuses)


def test_logging_in_again_ends_the_session_the_browser_had(web):
    c = logged_in(web, "olga")
    old = {k.name: k.value for k in c.jar}
    assert c.login("olga").status == 303
    stale = Http(web.url)
    status, _ = raw(web, "GET", "/api/doors", headers={"Cookie": "; ".join(f"{k}={v}" for k, v in old.items())})
    assert status == 401 and stale is not None
    assert c.get("/api/doors").status == 200


def test_a_forwarded_for_header_does_not_change_the_audited_address(web):
    status, _ = raw(web, "POST", "/login", urllib.parse.urlencode({"username": "olga", "password": PASSWORD}).encode(),
                    {"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": "203.0.113.7"})
    assert status == 303
    (addr,) = web.store.query("SELECT address FROM audit WHERE action = 'POST /login' ORDER BY id DESC LIMIT 1")[0]
    assert addr == "127.0.0.1"
