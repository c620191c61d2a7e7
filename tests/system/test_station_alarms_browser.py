"""Alarms that call, end to end: real Mosquitto, a real door link, `accessctl station serve` as a
child process, and Debian's Chromium driven by Playwright. An alarm a door publishes reaches the
open pages without a reload; the door commands ask first and show the door's answer; the page says
so when it loses the station."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import expect

from tests.fixtures.constants import REPO
from tests.system.test_station_browser import CMD, DOOR, log_in, tile, wait_archived

DOCS = REPO / "docs"


@pytest.fixture
def door(mosquitto_broker, tmp_path):
    from tests.fixtures.station import PublishingDoor

    d = PublishingDoor(mosquitto_broker, tmp_path)
    d.link.publish_status({"door": "closed", "lock": "locked", "lockdown": False, "occupancy": 0,
                           "version": "test", "faults": [], "queued": 0, "last_seq": 0})
    yield d
    d.close()


@pytest.fixture
def commands(mosquitto_broker):
    client = mosquitto_broker.connect()
    client.subscribe(CMD)
    return client


def wait_until(check, timeout: float) -> float:
    """Seconds until ``check()`` held (polled every 10 ms); AssertionError after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - start


def test_an_alarm_reaches_the_open_queue_and_overview_within_a_second_without_a_reload(mosquitto_broker,
                                                                                      start_station, door, browser):
    station = start_station(mosquitto_broker)
    first = door.append("system", "controller_started")
    wait_archived(station, first["seq"])
    queue_page = browser.new_page()
    log_in(queue_page, station, "olga", path="/alarms")
    overview = browser.new_page()  # the same browser: the session's cookie
    overview.goto(station.url + "/")
    tile(overview).wait_for()
    for page in (queue_page, overview):
        page.evaluate("window.notReloaded = true")
        expect(page.locator("body[data-stream=live]")).to_have_count(1)
    assert not overview.title().startswith("(")

    start = time.monotonic()
    alarm = door.append("alarm", "door_forced", detail={"source": "door_contact"})
    row = f'#open-alarms tr[data-seq="{alarm["seq"]}"][data-type="door_forced"]'
    seen: dict[str, float] = {}
    while len(seen) < 2 and time.monotonic() - start < 5:
        if "queue" not in seen and queue_page.locator(row).count() == 1:
            seen["queue"] = time.monotonic() - start
        if "tile" not in seen and tile(overview).get_attribute("data-alarm") == "true":
            seen["tile"] = time.monotonic() - start
        time.sleep(0.01)
    assert seen.get("queue", 9) <= 1.0 and seen.get("tile", 9) <= 1.0, seen
    expect(tile(overview).locator('[data-field="alarm"]')).to_have_text("告警 ALARM: 强行开门 door forced")
    for page in (queue_page, overview):
        assert page.title().startswith("(1) ")
        expect(page.locator("nav [data-open-alarms]")).to_have_text("1")
        expect(page.locator("#alarm-news")).to_contain_text("强行开门 door forced")
        assert page.evaluate("window.notReloaded") is True
    assert queue_page.locator("#alarm-news").get_attribute("aria-live") == "assertive"
    overview.screenshot(path=str(DOCS / "station-alarm-tile.png"), full_page=True)

    tamper = door.append("alarm", "tamper", detail={"device": "lid", "active": True})
    urgent_first = wait_until(lambda: queue_page.eval_on_selector_all(
        "#open-alarms tbody tr", "rs => rs.map(r => r.dataset.type).join()") == "door_forced,tamper", 5)
    assert urgent_first <= 1.0
    queue_page.screenshot(path=str(DOCS / "station-alarms.png"), full_page=True)
    door.append("alarm", "tamper", detail={"device": "lid", "active": False})  # the door says it is over
    expect(queue_page.locator(f'#open-alarms tr[data-seq="{tamper["seq"]}"]')).to_have_count(0)
    assert queue_page.title().startswith("(1) ") and queue_page.evaluate("window.notReloaded") is True


def test_an_operator_acknowledges_the_chosen_alarms_with_a_standard_comment(mosquitto_broker, start_station, door,
                                                                          browser):
    station = start_station(mosquitto_broker)
    alarms = [door.append("alarm", t) for t in ("tailgating", "door_forced", "screening_alarm")]
    wait_archived(station, alarms[-1]["seq"])
    page = browser.new_page()
    log_in(page, station, "olga", path="/alarms")
    assert page.eval_on_selector_all("#open-alarms tbody tr", "rs => rs.map(r => r.dataset.type)") == [
        "door_forced", "screening_alarm", "tailgating"]
    page.locator('#open-alarms tr[data-type="door_forced"] input[type=checkbox]').check()
    page.locator('#open-alarms tr[data-type="tailgating"] input[type=checkbox]').check()
    options = page.eval_on_selector_all("#ack-comments option", "os => os.map(o => o.value)")
    assert "误报 False alarm" in options
    page.locator("#bulk-ack input[name=comment]").fill("误报 False alarm")
    page.locator("#bulk-ack [data-action=acknowledge_chosen]").click()
    page.wait_for_url(station.url + "/alarms")
    assert page.eval_on_selector_all("#open-alarms tbody tr", "rs => rs.map(r => r.dataset.type)") == [
        "screening_alarm"]
    expect(page.locator('#acknowledged [data-field="comment"]')).to_have_text(["误报 False alarm"] * 2)


def test_the_alarm_sound_once_enabled_is_remembered_and_plays_on_a_new_alarm(mosquitto_broker, start_station, door,
                                                                           browser):
    station = start_station(mosquitto_broker)
    page = browser.new_page()
    log_in(page, station, "victor", path="/alarms")
    switch = page.locator("#sound-switch")
    assert switch.get_attribute("aria-pressed") == "false"
    switch.click()
    page.reload()  # remembered in the browser
    expect(page.locator("#sound-switch")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("body[data-stream=live]")).to_have_count(1)
    page.locator("main h2").first.click()  # the browser's rule: a page sounds after a click on it
    door.append("alarm", "door_forced")
    expect(page.locator("body")).to_have_attribute("data-sounds", "1")
    assert page.evaluate("window.localStorage.getItem('station.alarm-sound')") == "on"


def test_lockdown_asks_first_and_shows_the_doors_answer(mosquitto_broker, start_station, door, commands, browser):
    station = start_station(mosquitto_broker)
    page = browser.new_page()
    log_in(page, station, "olga")
    tile(page).locator('[data-action="lockdown"]').click()
    page.locator("#confirm-command [data-cancel]").click()
    time.sleep(0.5)
    assert commands.received(CMD) == []  # cancelled: nothing sent

    tile(page).locator('[data-action="lockdown"]').click()
    expect(page.locator("#confirm-command")).to_contain_text(DOOR)
    page.locator("#confirm-command [data-confirm]").click()
    (msg,) = commands.wait_for_messages(1, CMD)
    state = tile(page).locator("[data-command-state]")
    expect(state).to_have_attribute("data-state", "sent")
    door.link.command_result(json.loads(msg.payload)["id"], False, "already in lockdown")
    expect(state).to_have_attribute("data-state", "refused")
    expect(state).to_contain_text("already in lockdown")


def test_a_command_to_an_offline_door_is_refused_on_the_page(mosquitto_broker, start_station, door, commands, browser):
    station = start_station(mosquitto_broker)
    page = browser.new_page()
    log_in(page, station, "olga")
    door.link.close()  # a clean stop publishes "online": false
    expect(tile(page)).to_have_attribute("data-online", "false")
    tile(page).locator('[data-action="lockdown"]').click()
    state = tile(page).locator("[data-command-state]")
    expect(state).to_have_attribute("data-state", "not-sent")
    expect(state).to_contain_text("offline")
    time.sleep(0.5)
    assert commands.received(CMD) == []


def test_the_page_says_so_when_it_loses_the_station(mosquitto_broker, start_station, door, browser):
    station = start_station(mosquitto_broker)
    page = browser.new_page()
    log_in(page, station, "victor")
    expect(page.locator("#broker")).to_have_attribute("data-connected", "true")
    station.stop()
    expect(page.locator("#broker")).to_have_attribute("data-connected", "unknown")
    expect(page.locator("#stream-lost")).to_be_visible()
    station.start()
    expect(page.locator("#broker")).to_have_attribute("data-connected", "true", timeout=15_000)
    expect(page.locator("#stream-lost")).to_be_hidden()
