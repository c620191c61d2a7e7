"""The supervision station end to end: real Mosquitto, a real door link, `accessctl station serve`
as a child process, and Debian's Chromium driven by Playwright.

The door is the controller's own MQTT link (firmware_py/link/door_link.py) over its own event store: an
event appended to the store goes out through the outbox exactly as on a Pi.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from playwright.sync_api import expect

from firmware_py.core.register import register_rows
from firmware_py.station.web.register import CSV_COLUMNS
from tests.fixtures.constants import REPO, TZ
from tests.fixtures.station import PASSWORD, PublishingDoor

SITE, DOOR = "hn-archive-1", "scan-room"
DOCS = REPO / "docs"
CMD = f"accessctl/{SITE}/+/cmd"
STAFF = {"person_id": "P001", "name": "测试员甲", "role": "staff"}
CARD = {"kind": "resident_id", "masked": "430102********0012"}


@pytest.fixture
def door(mosquitto_broker, tmp_path):
    d = PublishingDoor(mosquitto_broker, tmp_path)
    d.link.publish_status({"door": "closed", "lock": "locked", "lockdown": False, "occupancy": 0,
                           "version": "test", "faults": []})
    yield d
    d.close()


@pytest.fixture
def commands(mosquitto_broker):
    """A subscriber to every door's cmd topic: what the station sent to the doors."""
    client = mosquitto_broker.connect()
    client.subscribe(CMD)
    return client


def log_in(page, station, name: str, password: str = PASSWORD, path: str = "/"):
    page.goto(station.url + path)
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(station.url + path)


def tile(page, door: str = DOOR):
    return page.locator(f'.tile[data-site="{SITE}"][data-door="{door}"]')


def wait_archived(station, seq: int, door: str = DOOR, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    db = Path(station.config).parent / "archive.db"
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            if conn.execute("SELECT 1 FROM events WHERE site=? AND door=? AND seq=?", (SITE, door, seq)).fetchone():
                return
        time.sleep(0.05)
    raise AssertionError(f"#{seq} of {door} was not archived within {timeout} s")


# ---------------------------------------------------------------- log in, overview


def test_an_operator_logs_in_and_sees_the_door_online_with_its_state(mosquitto_broker, start_station, door, browser):
    station = start_station(mosquitto_broker)
    door.link.publish_status({"door": "closed", "lock": "locked", "lockdown": False, "occupancy": 1,
                              "version": "test", "faults": []})
    door.link.publish_occupancy({"count": 1, "inside": [{**STAFF, "since": "2026-11-23T08:55:03+08:00"}]})
    door.append("access", "access_granted", direction="in", person=STAFF, credential=CARD)
    page = browser.new_page()
    log_in(page, station, "olga")
    t = tile(page)
    t.wait_for()
    page.wait_for_selector(f'.tile[data-door="{DOOR}"][data-online="true"]')
    expect(page.locator(".tile [data-field=last_event]")).to_contain_text("#1")  # no eval: the page's CSP forbids it
    assert "已锁 locked" in t.locator('[data-field="lock"]').inner_text()
    assert "测试员甲" in t.locator(".inside").inner_text() and "2026-11-23T08:55:03+08:00" in t.inner_text()
    assert "verified #1–#1" in t.locator('[data-field="chain"]').inner_text()
    assert t.locator('[data-action="lockdown"]').count() == 1
    page.screenshot(path=str(DOCS / "station-overview.png"), full_page=True)


def test_a_wrong_password_in_the_browser_shows_an_error_and_no_session(mosquitto_broker, start_station, browser):
    station = start_station(mosquitto_broker)
    page = browser.new_page()
    page.goto(station.url + "/")
    page.fill("input[name=username]", "olga")
    page.fill("input[name=password]", "not it at all")
    page.click("button[type=submit]")
    page.wait_for_selector("p.error")
    assert browser.cookies() == []


# ---------------------------------------------------------------- live stream


def test_events_a_door_publishes_appear_in_the_live_stream_within_two_seconds(mosquitto_broker, start_station, door,
                                                                              browser):
    station = start_station(mosquitto_broker)
    page = browser.new_page()
    log_in(page, station, "victor", path="/events")
    expect(page.locator("#stream-state")).to_contain_text("live")
    for i in range(1, 6):
        e = door.append("access", "access_granted" if i % 2 else "passage", direction="in", person=STAFF,
                        credential=CARD)
        row = page.wait_for_selector(f'#stream tr[data-site="{SITE}"][data-door="{DOOR}"][data-seq="{e["seq"]}"]'
                                     f'[data-type="{e["type"]}"]', timeout=2000)
        assert "测试员甲" in row.inner_text()


def test_a_browser_reconnecting_after_a_station_restart_misses_nothing(mosquitto_broker, start_station, door, browser):
    station = start_station(mosquitto_broker)
    page = browser.new_page()
    log_in(page, station, "victor", path="/events")
    first = door.append("access", "passage", direction="in", person=STAFF)
    page.wait_for_selector(f'#stream tr[data-seq="{first["seq"]}"]')
    station.stop()
    during = [door.append("access", "passage", direction="in", person=STAFF) for _ in range(3)]  # broker keeps them
    station.start()
    after = door.append("access", "passage", direction="in", person=STAFF)
    page.wait_for_selector(f'#stream tr[data-seq="{after["seq"]}"]', timeout=15_000)
    seqs = page.eval_on_selector_all(f'#stream tr[data-door="{DOOR}"]', "rows => rows.map(r => Number(r.dataset.seq))")
    assert sorted(seqs) == [first["seq"]] + [e["seq"] for e in during] + [after["seq"]]


# ---------------------------------------------------------------- door offline


def test_a_door_going_offline_turns_its_tile_offline_without_a_reload(mosquitto_broker, start_station, browser,
                                                                       tmp_path):
    station = start_station(mosquitto_broker)
    account = mosquitto_broker.door(DOOR)
    args = {"database": str(tmp_path / "child.db"), "broker": mosquitto_broker.url,
            "ca_file": str(mosquitto_broker.ca_file), "username": account.username,
            "password_file": str(account.password_file), "cert_file": str(account.cert_file),
            "key_file": str(account.key_file), "count": 1}
    child = subprocess.Popen([sys.executable, "-m", "simulator.crash.link_child", json.dumps(args)], cwd=REPO,
                             stdout=subprocess.DEVNULL)
    try:
        page = browser.new_page()
        log_in(page, station, "victor")
        page.wait_for_selector(f'.tile[data-door="{DOOR}"][data-online="true"]', timeout=15_000)
        page.evaluate("window.stillTheSamePage = true")
    finally:
        child.kill()
        child.wait()
    page.wait_for_selector(f'.tile[data-door="{DOOR}"][data-online="false"]', timeout=15_000)
    assert page.evaluate("window.stillTheSamePage") is True
    assert "离线 OFFLINE" in tile(page).locator('[data-field="online"]').inner_text()


def test_a_door_s_refused_messages_show_on_its_tile_without_a_reload(station_web, browser):
    station_web.add_user("ada", "admin")
    station_web.archive.store_event(SITE, DOOR, f"accessctl/{SITE}/{DOOR}/events/access/access_granted", b"{}",
                                    {"seq": 1, "ts": "2026-11-23T09:00:00+08:00", "category": "access",
                                     "type": "access_granted"}, "2026-11-23T09:00:00+08:00")
    page = browser.new_page()
    log_in(page, station_web, "ada")
    page.wait_for_selector(f'.tile[data-door="{DOOR}"][data-problems="0"]')
    expect(tile(page).locator("[data-problems-badge]")).to_be_hidden()
    page.evaluate("window.stillTheSamePage = true")
    with sqlite3.connect(station_web.where) as conn:
        conn.execute("INSERT INTO ingest_rejects (received_at, site, door, topic, reason, payload)"
                     " VALUES (?, ?, ?, ?, ?, ?)", ("2026-11-23T09:00:01+08:00", SITE, DOOR,
                                                    f"accessctl/{SITE}/{DOOR}/events/x", "not JSON", b"{"))
    page.wait_for_selector(f'.tile[data-door="{DOOR}"][data-problems="1"]', timeout=15_000)
    expect(tile(page).locator("[data-problems-badge]")).to_have_text("1 异常 problems")
    assert page.evaluate("window.stillTheSamePage") is True
    tile(page).locator("[data-problems-badge]").click()
    page.wait_for_selector(f'section.door-problems[data-door="{DOOR}"][data-rejects="1"]')


# ---------------------------------------------------------------- alarms


def test_an_acknowledged_alarm_keeps_who_when_and_comment_across_a_station_restart(mosquitto_broker, start_station,
                                                                                   door, browser):
    station = start_station(mosquitto_broker)
    alarm = door.append("alarm", "door_forced", detail={"source": "door_contact"})
    wait_archived(station, alarm["seq"])
    page = browser.new_page()
    log_in(page, station, "olga", path="/alarms")
    row = page.locator(f'#open-alarms tr[data-seq="{alarm["seq"]}"][data-type="door_forced"]')
    row.locator("input[name=comment]").fill("巡查确认：门已关好 checked on site")
    row.locator('[data-action="acknowledge"]').click()
    page.wait_for_url(station.url + "/alarms")
    done = page.locator(f'#acknowledged tr[data-seq="{alarm["seq"]}"]')
    assert done.locator('[data-field="by"]').inner_text() == "olga"

    station.stop()
    station.start()
    page.goto(station.url + "/alarms")  # the session is in the archive: it survives the restart too
    done = page.locator(f'#acknowledged tr[data-seq="{alarm["seq"]}"]')
    assert done.locator('[data-field="by"]').inner_text() == "olga"
    assert done.locator('[data-field="comment"]').inner_text() == "巡查确认：门已关好 checked on site"
    assert datetime.fromisoformat(done.locator('[data-field="at"]').inner_text()).tzinfo is not None
    assert page.locator(f'#open-alarms tr[data-seq="{alarm["seq"]}"]').count() == 0
    exported = list(csv.DictReader(io.StringIO(page.request.get(station.url + "/alarms.csv").text())))
    assert [(r["seq"], r["acknowledged_by"], r["comment"]) for r in exported] == [
        (str(alarm["seq"]), "olga", "巡查确认：门已关好 checked on site")]


# ---------------------------------------------------------------- register


def test_the_register_csv_matches_the_archive(mosquitto_broker, start_station, door, browser):
    station = start_station(mosquitto_broker)
    door.append("access", "access_granted", direction="in", person=STAFF, credential=CARD)
    door.append("access", "passage", direction="in", person=STAFF, credential=CARD)
    door.append("access", "access_denied", direction="in", person={**STAFF, "person_id": "P002", "name": "测试员乙"},
                credential=CARD, reason="outside_working_hours")
    last = door.append("system", "lockdown_on")
    wait_archived(station, last["seq"])
    page = browser.new_page()
    log_in(page, station, "victor", path="/register")
    today = datetime.now(TZ).date().isoformat()
    assert page.locator("#register tbody tr").count() == 3
    page.screenshot(path=str(DOCS / "station-register.png"), full_page=True)

    body = page.request.get(f"{station.url}/register.csv?date={today}").body()
    assert body.startswith(b"\xef\xbb\xbf")  # the byte-order mark: a spreadsheet reads UTF-8
    got = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    with sqlite3.connect(Path(station.config).parent / "archive.db") as conn:
        archived = [(json.loads(p), epoch) for p, epoch in conn.execute(
            "SELECT payload, epoch FROM events WHERE local_date=? ORDER BY epoch, seq", (today,))]
    expected = [[str(r[c]) for c in CSV_COLUMNS] for r in
                ({"site": e["site"], "door": e["door"], **row, "epoch": epoch} for e, epoch in archived
                 for row in register_rows([e]))]
    assert got[0] == list(CSV_COLUMNS) and got[1:] == expected
    rows = page.eval_on_selector_all("#register tbody tr", "rs => rs.map(r => [r.dataset.site, r.dataset.door, "
                                                           "Number(r.dataset.seq), r.dataset.type])")
    assert rows == [[e["site"], e["door"], e["seq"], e["type"]] for e, _ in archived if e["category"] == "access"]


# ---------------------------------------------------------------- door commands: roles and forgery


def test_an_operator_locks_a_door_down_and_revokes_a_person_from_the_page(mosquitto_broker, start_station, door,
                                                                          commands, browser):
    station = start_station(mosquitto_broker)
    door.link.publish_occupancy({"count": 1, "inside": [{**STAFF, "since": "2026-11-23T08:55:03+08:00"}]})
    page = browser.new_page()
    log_in(page, station, "olga")
    tile(page).locator('[data-action="lockdown"]').click()
    page.locator("#confirm-command [data-confirm]").click()  # the page asks before it sends
    (msg,) = commands.wait_for_messages(1, CMD)
    lockdown = json.loads(msg.payload)
    assert msg.topic == f"accessctl/{SITE}/{DOOR}/cmd" and not msg.retain
    assert lockdown["action"] == "lockdown" and lockdown["by"] == "olga" and lockdown["id"].startswith("station-")
    page.wait_for_selector('.inside [data-action="revoke"]')
    tile(page).locator(".inside input[name=reason]").fill("离职 left the project")
    tile(page).locator('.inside [data-action="revoke"]').click()
    page.locator("#confirm-command [data-confirm]").click()
    revoke = json.loads(commands.wait_for_messages(2, CMD)[1].payload)
    assert {k: revoke[k] for k in ("action", "person_id", "reason", "by")} == {
        "action": "revoke", "person_id": "P001", "reason": "离职 left the project", "by": "olga"}


def test_a_viewer_can_neither_acknowledge_nor_lock_down(mosquitto_broker, start_station, door, commands, browser):
    station = start_station(mosquitto_broker)
    alarm = door.append("alarm", "door_forced")
    wait_archived(station, alarm["seq"])
    page = browser.new_page()
    log_in(page, station, "victor")
    tile(page).wait_for()
    assert page.locator("[data-action]").count() == 0
    token = page.get_attribute('meta[name="csrf-token"]', "content")
    for path, form in ((f"/doors/{SITE}/{DOOR}/lockdown", {}), (f"/doors/{SITE}/{DOOR}/release_lockdown", {}),
                       (f"/doors/{SITE}/{DOOR}/revoke", {"person_id": "P001", "reason": "x"}),
                       (f"/alarms/{SITE}/{DOOR}/{alarm['seq']}/acknowledge", {"comment": "x"})):
        r = page.request.post(station.url + path, form={**form, "csrf": token})
        assert r.status == 403, path
    # the same request from an operator goes out: the subscriber would have seen the viewer's
    operator = browser.browser.new_context()
    op = operator.new_page()
    log_in(op, station, "olga")
    token = op.get_attribute('meta[name="csrf-token"]', "content")
    assert op.request.post(station.url + f"/doors/{SITE}/{DOOR}/lockdown", form={"csrf": token}).status == 200
    commands.wait_for_messages(1, CMD)
    assert [json.loads(m.payload)["by"] for m in commands.received(CMD)] == ["olga"]
    operator.close()


def test_a_forged_cross_site_post_is_refused_and_nothing_reaches_the_door(mosquitto_broker, start_station, door,
                                                                         commands, browser):
    station = start_station(mosquitto_broker)
    door.append("system", "controller_started")
    page = browser.new_page()
    log_in(page, station, "olga")
    attacker = (f"<html><body><form id=f method=post action='{station.url}/doors/{SITE}/{DOOR}/lockdown'>"
                "<input name=csrf value=guessed></form><script>document.getElementById('f').submit()</script>"
                "</body></html>")
    page.route("http://attacker.example/", lambda route: route.fulfill(body=attacker, content_type="text/html"))
    with page.expect_response(lambda r: "/lockdown" in r.url) as answer:
        page.goto("http://attacker.example/")
    assert answer.value.status == 403
    # with the session cookie but no or a wrong token (a page that could send the cookie): 403 as well
    assert page.request.post(station.url + f"/doors/{SITE}/{DOOR}/lockdown", form={}).status == 403
    assert page.request.post(station.url + f"/doors/{SITE}/{DOOR}/lockdown", form={"csrf": "guessed"}).status == 403
    time.sleep(1.0)
    assert commands.received(CMD) == []
