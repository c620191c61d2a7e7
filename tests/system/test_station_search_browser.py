"""The register's search in Debian's Chromium (Playwright): a supervisor types part of a Chinese
name, chooses an event type and pages back, against `accessctl station serve`, real Mosquitto and
a real door link."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.station import PublishingDoor
from tests.system.test_station_browser import CARD, DOOR, SITE, log_in, wait_archived

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
