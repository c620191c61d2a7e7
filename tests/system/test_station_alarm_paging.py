"""The alarm queue searched and paged as the register is, over a real archive (SQLite file and
PostgreSQL alike), the web app served by uvicorn on loopback: the register's filters (dates, door,
type, person), keyset pages that keep the queue's priority order, duress first with its own sound."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import quote

import pytest

from firmware_py.station.web import alarms
from tests.system.test_station_alarms import DOOR, SITE, logged_in, read_messages, web  # noqa: F401
from tests.system.test_station_web import archive, chained, person

RANKS = {"duress": 0, "door_forced": 0, "tamper": 1, "screening_alarm": 2}
CYCLE = ("tailgating", "door_forced", "screening_alarm", "tamper", "duress", "door_held_open", "overstay")
ROW = re.compile(r'<tr class="alarm[^"]*" data-key="[^"]*" data-site="[^"]*" data-door="([^"]*)" data-epoch="\d+" '
                 r'data-seq="(\d+)" data-type="([^"]*)" data-rank="(\d)" data-id="(\d+)" data-sound="([a-z]+)"')


def alarm(type_: str, ts: str, **extra) -> tuple:
    detail = {"device": "lid", "active": True} if type_ == "tamper" else {}
    return (ts, type_, "alarm", {"detail": detail, **extra})


def page_of(c, path: str) -> tuple[list[tuple], str | None]:
    """(door, seq, type, rank, id, sound) of the queue's rows at ``path``, and the href of its earlier link."""
    text = c.get(path).text
    table = text[text.index('id="open-alarms"'):text.index('id="no-open-alarms"')]
    rows = [(d, int(s), t, int(r), int(i), snd) for d, s, t, r, i, snd in ROW.findall(table)]
    link = re.search(r'<a rel="next" data-page="earlier"( hidden)? href="([^"]*)"', text)
    return rows, (html.unescape(link.group(2)) if link and not link.group(1) else None)


def every_page(c, path: str) -> list[list[tuple]]:
    pages = []
    while path:
        rows, path = page_of(c, path)
        pages.append(rows)
        assert len(pages) < 50
    return pages


def test_paging_reaches_every_open_alarm_once_in_the_queues_order(web):  # noqa: F811
    n = 2 * alarms.PAGE + 37
    archive(web, chained([alarm(CYCLE[i % len(CYCLE)], f"2026-11-23T{8 + i // 3600:02d}:{i // 60 % 60:02d}:"
                                                       f"{i % 60:02d}.000+08:00") for i in range(n)]))
    c = logged_in(web, "victor")
    pages = every_page(c, "/alarms")
    assert [len(p) for p in pages] == [alarms.PAGE, alarms.PAGE, 37]
    rows = [r for p in pages for r in p]
    assert len({r[1] for r in rows}) == n  # none skipped, none twice
    assert [(r[3], -r[1]) for r in rows] == sorted((r[3], -r[1]) for r in rows)  # rank, then newest first
    assert rows[0][2] in ("duress", "door_forced") and rows[-1][1] == 1  # the oldest of the lowest rank ends it
    assert {r[3] for r in rows if r[2] == "duress"} == {0}
    last = c.get(f"/alarms?before={pages[1][-1][4]}").text
    assert '<span class="muted" data-page="first">' in last and 'data-page="newest"' in last


def test_a_page_whose_cursor_was_acknowledged_meanwhile_goes_on_where_it_was(web):  # noqa: F811
    archive(web, chained([alarm(CYCLE[i % 4], f"2026-11-23T09:{i // 60:02d}:{i % 60:02d}.000+08:00")
                          for i in range(alarms.PAGE + 20)]))
    c = logged_in(web)
    first, earlier = page_of(c, "/alarms")
    second, _ = page_of(c, earlier)
    cursor = first[-1]
    assert web.store.acknowledge(SITE, DOOR, 1, cursor[1], "olga", web.station.now(), "checked") == "ok"
    again, _ = page_of(c, earlier)
    assert again == second and cursor[1] not in {r[1] for r in again}


def test_the_queue_is_searched_as_the_register_is(web):  # noqa: F811
    archive(web, chained([alarm("tailgating", "2026-11-22T09:00:00.000+08:00", **person("P002", "测试员乙")),
                          alarm("door_forced", "2026-11-22T09:00:01.000+08:00"),
                          alarm("tailgating", "2026-11-23T09:00:00.000+08:00", **person("P003", "Anna Schmidt")),
                          alarm("duress", "2026-11-23T09:00:01.000+08:00", **person("P002", "测试员乙"))]))
    archive(web, chained([alarm("door_forced", "2026-11-23T09:00:02.000+08:00")], door="side-door"),
            door="side-door")
    c = logged_in(web)

    def found(query: str) -> list[tuple[str, int]]:
        return [(r[0], r[1]) for r in page_of(c, "/alarms?" + query)[0]]

    assert found("q=" + quote("员乙")) == [(DOOR, 4), (DOOR, 1)]  # part of a Chinese name
    assert found("q=SCHMI") == [(DOOR, 3)]  # a Latin one, any case
    assert found("q=p002&type=tailgating") == [(DOOR, 1)]
    assert found("from=2026-11-23&to=2026-11-23") == [("side-door", 1), (DOOR, 4), (DOOR, 3)]
    assert found("to=2026-11-22&from=2026-11-22") == [(DOOR, 2), (DOOR, 1)]
    assert found(f"site={SITE}&door=side-door&type=door_forced") == [("side-door", 1)]
    assert found("type=alarm") == found("") and len(found("")) == 5  # a category: every alarm type
    page = c.get("/alarms?door=side-door").text
    assert '<option value="side-door" selected>' in page and 'name="q"' in page and 'value=""' in page
    assert c.get("/alarms?before=x").status == 400 and c.get("/alarms?from=2026-13-01").status == 400


def test_duress_comes_first_with_its_own_sound(web):  # noqa: F811
    archive(web, chained([alarm("duress", "2026-11-23T09:00:00.000+08:00", **person("P002", "测试员乙")),
                          alarm("tamper", "2026-11-23T09:00:01.000+08:00"),
                          alarm("door_forced", "2026-11-23T09:00:02.000+08:00"),
                          alarm("tailgating", "2026-11-23T09:00:03.000+08:00")]))
    rows, _ = page_of(logged_in(web), "/alarms")
    assert [(r[2], r[5]) for r in rows] == [("door_forced", "alarm"), ("duress", "duress"), ("tamper", "alarm"),
                                            ("tailgating", "alarm")]


@pytest.mark.parametrize("cursor_page", [0, 1])
def test_the_stream_sends_the_rows_of_the_page_it_was_opened_for(web, cursor_page):  # noqa: F811
    archive(web, chained([alarm(CYCLE[i % 4], f"2026-11-23T09:{i // 60:02d}:{i % 60:02d}.000+08:00")
                          for i in range(alarms.PAGE + 20)]))
    c = logged_in(web)
    first, earlier = page_of(c, "/alarms?type=alarm")
    path, rows = ("/alarms?type=alarm", first) if cursor_page == 0 else (earlier, page_of(c, earlier)[0])
    query = path.partition("?")[2]
    got = read_messages(c, f"/api/stream?after=now&queue=1&{query}", {"alarms": 1})
    (summary,) = got["alarms"]
    assert [json.loads(r["key"])[3] for r in summary["rows"]] == [r[1] for r in rows]
    assert summary["before"] == (first[-1][4] if cursor_page == 0 else None)
