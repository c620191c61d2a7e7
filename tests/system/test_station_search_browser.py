"""The register's search in Debian's Chromium (Playwright): a supervisor types part of a Chinese
name, chooses an event type and pages back, against `accessctl station serve`, real Mosquitto and
a real door link."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.station import PublishingDoor
from tests.system.test_station_browser import CARD, DOCS, DOOR, SITE, log_in, wait_archived

PEOPLE = {"P001": "测试员甲", "P002": "测试员乙", "P003": "Anna Schmidt"}


def test_a_supervisor_finds_the_rows_of_a_person_by_part_of_a_chinese_name(mosquitto_broker, start_station,
                                                                          tmp_path: Path, browser):
    station = start_station(mosquitto_broker)
    door = PublishingDoor(mosquitto_broker, tmp_path)
    try:
        last = None
        for pid in ("P001", "P002", "P003", "P002"):
            last = door.append("access", "access_granted", direction="in",
                               person={"person_id": pid, "name": PEOPLE[pid], "role": "staff"}, credential=CARD)
        wait_archived(station, last["seq"])
    finally:
        door.close()
    page = browser.new_page()
    log_in(page, station, "victor", path="/register")
    assert page.locator("#register tbody tr").count() == 4
    page.fill("input[name=q]", "员乙")
    page.select_option("select[name=type]", "access_granted")
    page.click("form.search button[type=submit]")
    page.wait_for_url("**/register?*q=*")
    rows = page.eval_on_selector_all("#register tbody tr", "rs => rs.map(r => [r.dataset.site, r.dataset.door, "
                                                           "Number(r.dataset.seq), r.cells[5].textContent])")
    assert rows == [[SITE, DOOR, 2, "P002 测试员乙"], [SITE, DOOR, 4, "P002 测试员乙"]]
    time_cell = page.locator("#register tbody tr time").first
    assert time_cell.get_attribute("title").endswith("Asia/Shanghai") and len(time_cell.inner_text()) == 8  # today
    assert page.input_value("input[name=q]") == "员乙"


def test_an_admin_adds_an_account_on_the_page_and_a_viewer_cannot_reach_it(mosquitto_broker, start_station,
                                                                          chromium, browser):
    station = start_station(mosquitto_broker, accounts=(("ada", "admin"), ("victor", "viewer")))
    page = browser.new_page()
    log_in(page, station, "ada", path="/accounts")
    page.fill("input[name=username]", "vera")
    page.select_option("form[action='/accounts'] select[name=role]", "operator")
    page.click("[data-action=add_account]")
    password = page.locator("#new-password").inner_text()
    assert len(password) >= 16
    assert page.locator('tr[data-account="vera"]').get_attribute("data-role") == "operator"
    page.screenshot(path=str(DOCS / "station-accounts.png"), full_page=True)
    others = [chromium.new_context(), chromium.new_context()]  # other browsers: sessions of their own
    try:
        viewer = others[0].new_page()
        log_in(viewer, station, "victor")
        assert viewer.locator('nav a[href="/accounts"]').count() == 0
        assert viewer.goto(station.url + "/accounts").status == 403
        newcomer = others[1].new_page()
        log_in(newcomer, station, "vera", password=password)
        assert "vera (operator)" in newcomer.locator("nav .who").inner_text()
    finally:
        for context in others:
            context.close()
