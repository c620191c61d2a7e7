"""The station's pages on a phone and to assistive technology, in Debian's Chromium (Playwright):
a 390×844 screen, an archive with real rows (a door with events and open alarms, a long Chinese
name, a refused message), against `accessctl station serve`, real Mosquitto and a real door link."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.fixtures.station import PublishingDoor
from tests.system.test_station_browser import CARD, DOCS, DOOR, SITE, log_in, wait_archived

PHONE = {"width": 390, "height": 844}
LONG_NAME = "欧阳测试员甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥"  # no space to break at
PERSON = {"person_id": "P042", "name": LONG_NAME, "role": "contractor_with_a_rather_long_role_name"}
PAGES = ["/", "/events", "/alarms", "/register", "/accounts", "/problems", "/audit"]

# Every form control a person fills in or picks, and whether it has an accessible name: a <label>
# around it or pointing at it, aria-label, or aria-labelledby (the part of an axe check that matters here).
UNNAMED_CONTROLS = """() => [...document.querySelectorAll('input, select, textarea')]
    .filter(el => el.type !== 'hidden')
    .filter(el => !((el.labels && el.labels.length && [...el.labels].some(l => l.textContent.trim()))
                    || (el.getAttribute('aria-label') || '').trim()
                    || (el.getAttribute('aria-labelledby') || '').split(/\\s+/).some(
                          id => id && document.getElementById(id)
                                && document.getElementById(id).textContent.trim())))
    .map(el => el.outerHTML.slice(0, 120))"""

# What sticks out of the page on the right, for the message when the page scrolls sideways.
WIDEST = """() => [...document.querySelectorAll('body *')]
    .filter(el => el.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
    .slice(0, 5).map(el => el.tagName + '.' + el.className + ' ' + Math.round(el.getBoundingClientRect().right))"""


@pytest.fixture
def phone(chromium):
    context = chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                                   locale="zh-CN")
    context.set_default_timeout(10_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def busy_station(mosquitto_broker, start_station, tmp_path: Path):
    """A station whose archive has a door's day: entries of a person with a long Chinese name,
    who is inside, two open alarms and a refused message."""
    station = start_station(mosquitto_broker, accounts=(("ada", "admin"), ("victor", "viewer")))
    door = PublishingDoor(mosquitto_broker, tmp_path)
    try:
        door.link.publish_status({"door": "closed", "lock": "locked", "lockdown": False, "occupancy": 1,
                                  "version": "test", "faults": []})
        door.link.publish_occupancy({"count": 1, "inside": [{**PERSON, "since": "2026-11-23T08:55:03+08:00"}]})
        door.append("access", "access_granted", direction="in", person=PERSON, credential=CARD)
        door.append("access", "access_denied", reason="training_incomplete", person=PERSON, credential=CARD)
        door.append("alarm", "door_forced", detail={"source": "door_contact"})
        last = door.append("alarm", "tamper", detail={"device": "lid", "active": True})
        wait_archived(station, last["seq"])
        with sqlite3.connect(Path(station.config).parent / "archive.db") as conn:
            conn.execute("INSERT INTO ingest_rejects (received_at, site, door, topic, reason, payload)"
                         " VALUES (?, ?, ?, ?, ?, ?)", ("2026-11-23T09:00:01+08:00", SITE, DOOR,
                                                        f"accessctl/{SITE}/{DOOR}/events/x", "not JSON", b"{" * 300))
        yield station  # the door stays online while the pages are read
    finally:
        door.close()


def test_every_page_fits_a_phone_without_scrolling_sideways_and_names_every_input(busy_station, phone):
    page = phone.new_page()
    page.goto(busy_station.url + "/login")
    wide = {}
    checked = {"/login": (page.evaluate("document.documentElement.scrollWidth"), page.evaluate(UNNAMED_CONTROLS))}
    log_in(page, busy_station, "ada")
    page.wait_for_selector(f'.tile[data-door="{DOOR}"][data-alarm="true"][data-online="true"]')
    assert LONG_NAME in page.locator(".inside").inner_text()
    page.screenshot(path=str(DOCS / "station-phone.png"), full_page=True)
    for path in PAGES:
        page.goto(busy_station.url + path)
        page.wait_for_load_state("load")
        if path == "/register":
            assert page.locator("#register tbody tr").count() == 2
        if path == "/alarms":
            assert page.locator("#open-alarms tbody tr").count() == 2
        checked[path] = (page.evaluate("document.documentElement.scrollWidth"), page.evaluate(UNNAMED_CONTROLS))
        if checked[path][0] > PHONE["width"]:
            wide[path] = (checked[path][0], page.evaluate(WIDEST))
    assert {path: width for path, (width, _) in checked.items() if width > PHONE["width"]} == {}, wide
    assert {path: unnamed for path, (_, unnamed) in checked.items() if unnamed} == {}


def test_the_charts_have_a_title_and_the_live_regions_stay_on_a_phone(busy_station, phone):
    page = phone.new_page()
    log_in(page, busy_station, "victor", path="/register")
    titles = page.eval_on_selector_all("svg.chart", "svgs => svgs.map(s => s.querySelector(':scope > title')"
                                                    " ? s.querySelector(':scope > title').textContent : null)")
    assert titles and all(titles), titles
    assert page.locator("#alarm-news").get_attribute("aria-live") == "assertive"
    page.goto(busy_station.url + "/events")
    assert page.locator("#stream-state").get_attribute("aria-live") == "polite"
    assert page.locator("#alarm-news").get_attribute("aria-live") == "assertive"


@pytest.fixture
def roster_station(mosquitto_broker, tmp_path: Path):
    """A station that may publish a roster (signing key, site key, site) and an admin."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from simulator.lab_station import StationProcess, add_user_cli, write_station_config
    from simulator.lab_tier import free_port
    from tests.fixtures.roster_bundle import write_keys

    private, _, site_key = write_keys(tmp_path / "keys", Ed25519PrivateKey.generate())
    port = free_port()
    config = write_station_config(tmp_path / "station.toml", mosquitto_broker, tmp_path / "archive.db", port=port,
                                  client_id=f"station-phone-{port}", signing_key=private)
    with config.open("a") as f:
        f.write(f'site_key = "{site_key}"\nsite = "{SITE}"\n\n[roster.schedule.office]\nmon = ["08:30-12:00"]\n')
    assert add_user_cli(config, "ada", "admin").returncode == 0
    station = StationProcess(config, port, tmp_path / "station.log").start()
    door = PublishingDoor(mosquitto_broker, tmp_path)  # a door in the list of doors
    try:
        wait_archived(station, door.append("system", "controller_started")["seq"])
        yield station
    finally:
        door.close()
        station.stop()


def test_the_roster_page_reflows_on_a_phone_with_what_an_upload_changes(roster_station, phone, tmp_path: Path):
    from tests.fixtures.roster_bundle import person, write_csv

    csv = write_csv(tmp_path / "roster.csv", *(person(n) for n in range(1, 6)),
                    person(6).replace("测试人员6", LONG_NAME))
    page = phone.new_page()
    log_in(page, roster_station, "ada", path="/roster")
    page.set_input_files("input[name=roster]", str(csv))
    page.click("[data-action=check_roster]")
    page.wait_for_selector("section.roster-diff")
    assert page.locator('table.roster tr[data-change="added"]').count() == 6
    assert page.locator(f'table.roster-doors tr[data-door="{DOOR}"]').count() == 1
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], page.evaluate(WIDEST)
    assert page.evaluate(UNNAMED_CONTROLS) == []
    assert LONG_NAME in page.locator("table.roster").inner_text()
