"""The alarm queue as a supervisor uses it, in Debian's Chromium (Playwright), against `accessctl
station serve`, real Mosquitto and real door links: filtering by door and type, paging back to the
oldest alarm of a 1,000-alarm backlog, and duress first with a sound of its own."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.fixtures.station import PublishingDoor
from tests.system.test_station_browser import DOOR, log_in, wait_archived

OTHER = "vault"
# the backlog's types, in turn (no state event: each stays open until acknowledged)
CYCLE = ("tailgating", "door_held_open", "screening_alarm", "tamper", "repeated_failures", "door_forced")
RANK = {"duress": 0, "door_forced": 0, "tamper": 1, "screening_alarm": 2}

# Every oscillator the page starts, with its wave form: what it sounds, read without an audio device.
RECORD_SOUNDS = """
window.startedOscillators = [];
const start = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...args) {
  window.startedOscillators.push(this.type);
  return start.apply(this, args);
};
"""


def detail(type_: str) -> dict:
    return {"device": "lid", "active": True} if type_ == "tamper" else {}


@pytest.fixture
def doors(mosquitto_broker, tmp_path: Path):
    made = [PublishingDoor(mosquitto_broker, tmp_path, DOOR), PublishingDoor(mosquitto_broker, tmp_path, OTHER)]
    yield made
    for d in made:
        d.close()


def queue_rows(page) -> list[dict]:
    return page.eval_on_selector_all("#open-alarms tbody tr", "rs => rs.map(r => ({door: r.dataset.door, "
                                     "seq: Number(r.dataset.seq), type: r.dataset.type, rank: Number(r.dataset.rank),"
                                     " id: Number(r.dataset.id)}))")


def test_a_supervisor_filters_by_door_and_type_and_pages_to_the_oldest_of_a_1000_alarm_backlog(
        mosquitto_broker, start_station, doors, browser):
    station = start_station(mosquitto_broker)
    main, other = doors
    published = {DOOR: 0, OTHER: 0}
    for i in range(1000):
        door = other if i % 10 == 9 else main
        type_ = CYCLE[i % len(CYCLE)] if i else "tailgating"  # the very first: of the lowest rank
        door.append("alarm", type_, detail=detail(type_))
        published[door is other and OTHER or DOOR] += 1
    wait_archived(station, published[DOOR], timeout=120)
    wait_archived(station, published[OTHER], door=OTHER, timeout=60)

    page = browser.new_page()
    log_in(page, station, "victor", path="/alarms")
    page.select_option("#alarm-filter select[name=door]", OTHER)
    page.select_option("#alarm-filter select[name=type]", "door_forced")
    page.click("#alarm-filter button[type=submit]")
    page.wait_for_url("**/alarms?*door=vault*")
    chosen = queue_rows(page)
    expected = sum(1 for i in range(1, 1000) if i % 10 == 9 and CYCLE[i % len(CYCLE)] == "door_forced")
    assert len(chosen) == expected > 0
    assert {(r["door"], r["type"]) for r in chosen} == {(OTHER, "door_forced")}
    assert page.locator('[data-page="first"]:visible').count() >= 1  # one page holds them

    page.goto(station.url + "/alarms")
    seen, pages = [], 0
    while True:
        seen += queue_rows(page)
        pages += 1
        earlier = page.locator('a[data-page="earlier"]:visible').first
        if earlier.count() == 0:
            break
        earlier.click()
        page.wait_for_load_state("load")
        assert pages < 20
    assert pages == 10 and len(seen) == 1000 and len({r["id"] for r in seen}) == 1000
    assert [(r["rank"], -r["id"]) for r in seen] == sorted((r["rank"], -r["id"]) for r in seen)
    assert (seen[-1]["door"], seen[-1]["seq"]) == (DOOR, 1)  # the oldest alarm of the lowest rank, last
    expect(page.locator('[data-page="first"]').first).to_be_visible()


def test_duress_comes_first_in_the_queue_with_a_sound_of_its_own(mosquitto_broker, start_station, doors, browser):
    station = start_station(mosquitto_broker)
    main, _ = doors
    first = main.append("alarm", "tamper", detail=detail("tamper"))
    wait_archived(station, first["seq"])
    page = browser.new_page()
    page.add_init_script(RECORD_SOUNDS)
    log_in(page, station, "olga", path="/alarms")
    page.locator("#sound-switch").click()  # enable sound: the click the browser asks for
    expect(page.locator("body[data-stream=live]")).to_have_count(1)
    time.sleep(1.6)  # the switch's own tone is past: the next alarm sounds
    page.evaluate("window.startedOscillators = []; delete document.body.dataset.sounds;"
                  " delete document.body.dataset.lastSound")

    main.append("alarm", "door_forced")
    expect(page.locator("body")).to_have_attribute("data-last-sound", "alarm")
    sounded = page.evaluate("window.startedOscillators.slice()")
    main.append("alarm", "duress", person={"person_id": "P002", "name": "测试员乙", "role": "staff"},
                detail={"reader": "entry"})  # within 1.5 s of the other: a duress is never held back
    expect(page.locator("body")).to_have_attribute("data-last-sound", "duress")
    assert page.locator("body").get_attribute("data-sounds") == "2"  # each alarm sounded once
    duress_sound = page.evaluate("window.startedOscillators.slice()")[len(sounded):]
    assert sounded == ["square"] * 3 and duress_sound == ["sawtooth"] * 4
    expect(page.locator("#alarm-news")).to_contain_text("胁迫报警 DURESS")
    time.sleep(1.2)  # the queue is read again at least each second
    rows = queue_rows(page)
    assert [r["type"] for r in rows] == ["duress", "door_forced", "tamper"]
    assert page.locator("#open-alarms tbody tr").first.get_attribute("data-sound") == "duress"
