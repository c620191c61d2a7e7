"""The register a supervisor can search, on both archives: filters by dates, door, type and person
(any part of an id, name or organisation, any case), keyset pages that reach the first event of a
busy day, readable local times, the CSV with its byte-order mark and Chinese headers, the printout's
signatures. The station's web app runs in-process under uvicorn (:class:`ThreadedStation`) over a
real SQLite file or a real PostgreSQL 15."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest

from bench.search import fill_pg, fill_sqlite
from tests.fixtures.station import ThreadedStation

SITE = "hn-archive-1"
DAY = "2026-11-23"
TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture(params=["sqlite", "pg"])
def web(request, tmp_path):
    if request.param == "pg":
        station = ThreadedStation(request.getfixturevalue("postgres_url"))
    else:
        station = ThreadedStation(tmp_path / "archive.db")
    station.add_user("victor", "viewer")
    yield station
    station.close()


def fill(web, items) -> None:
    """Archive (site, door, event) items as the ingest would (the SQLite file, or PostgreSQL's batch ingest)."""
    if str(web.where).startswith("postgresql"):
        fill_pg(web.where, items)
    else:
        fill_sqlite(web.where, items)


def event(seq, ts, type_="access_granted", *, door="scan-room", person=None, reason=None):
    category = "alarm" if type_ in ("door_forced", "tailgating") else "access"
    return SITE, door, {"seq": seq, "ts": ts, "site": SITE, "door": door, "category": category, "type": type_,
                        "direction": "in", "person": person, "credential": None, "reason": reason, "detail": {},
                        "prev_hash": "0" * 64, "hash": "1" * 64}


def person(pid, name, organisation="湖南省档案馆"):
    return {"person_id": pid, "name": name, "role": "staff", "organisation": organisation}


PEOPLE = [person("P001", "测试员甲"), person("P002", "测试员乙", "长沙安保服务有限公司"),
          person("P003", "Anna Schmidt", "Acme Cleaning Ltd")]


@pytest.fixture
def day(web):
    fill(web, [event(1, f"{DAY}T08:00:00.000+08:00", person=PEOPLE[0]),
               event(2, f"{DAY}T08:05:00.000+08:00", "passage", person=PEOPLE[0]),
               event(3, f"{DAY}T09:00:00.000+08:00", "access_denied", person=PEOPLE[1], reason="expired"),
               event(4, f"{DAY}T10:00:00.000+08:00", person=PEOPLE[2]),
               event(5, f"{DAY}T11:00:00.000+08:00", "door_forced"),
               event(1, f"{DAY}T12:00:00.000+08:00", person=PEOPLE[1], door="reading-room"),
               event(6, "2026-11-24T08:00:00.000+08:00", person=PEOPLE[0])])
    return web


def client(web):
    c = web.client()
    assert c.login("victor").status == 303
    return c


def get(c, path: str):
    """``path`` with its query's non-ASCII characters percent-encoded, as a browser sends it."""
    return c.get(quote(path, safe="/?=&%:"))


def found(c, query: str) -> list[tuple[str, int]]:
    """(door, seq) of the events ``/api/events?query`` gives, in order."""
    reply = get(c, f"/api/events?{query}")
    assert reply.status == 200, reply.text
    return [(e["door"], e["seq"]) for e in reply.json()["events"]]


def test_part_of_a_chinese_name_finds_its_rows(day):
    c = client(day)
    assert found(c, f"from={DAY}&q=测试员") == [("scan-room", 1), ("scan-room", 2), ("scan-room", 3),
                                                ("reading-room", 1)]
    assert found(c, f"from={DAY}&q=乙") == [("scan-room", 3), ("reading-room", 1)]


def test_a_person_id_or_a_latin_name_is_found_in_any_case(day):
    c = client(day)
    assert found(c, f"from={DAY}&q=p002") == [("scan-room", 3), ("reading-room", 1)]
    assert found(c, f"from={DAY}&q=SCHMI") == [("scan-room", 4)]


def test_an_organisation_is_found_by_any_part_of_it(day):
    c = client(day)
    assert found(c, f"from={DAY}&q=安保") == [("scan-room", 3), ("reading-room", 1)]
    assert found(c, f"from={DAY}&q=cleaning") == [("scan-room", 4)]


def test_a_search_text_is_not_a_pattern(day):
    c = client(day)
    assert found(c, f"from={DAY}&q=%25") == [] and found(c, f"from={DAY}&q=_") == []


def test_the_door_type_and_category_narrow_the_search(day):
    c = client(day)
    assert found(c, f"from={DAY}&door=reading-room") == [("reading-room", 1)]
    assert found(c, f"from={DAY}&type=access_denied") == [("scan-room", 3)]
    assert found(c, f"from={DAY}&type=alarm") == [("scan-room", 5)]
    assert found(c, f"from={DAY}&to=2026-11-24&site={SITE}&door=scan-room&q=甲") == [
        ("scan-room", 1), ("scan-room", 2), ("scan-room", 6)]


def test_the_register_page_searches_with_the_same_filters(day):
    c = client(day)
    page = get(c, f"/register?from={DAY}&to={DAY}&q=测试员乙").text
    rows = re.findall(r'<tr data-id="\d+" data-site="[^"]+" data-door="([^"]+)"[^>]*data-seq="(\d+)"', page)
    assert rows == [("scan-room", "3"), ("reading-room", "1")]
    assert '<input name="q" type="search" value="测试员乙"' in page
    assert '<option value="access_denied">拒绝通行 denied</option>' in page


def test_a_bad_filter_is_refused_with_its_name(day):
    c = client(day)
    for query, words in (("before=abc", "before="), ("type=DROP%20TABLE", "type="), ("q=" + "x" * 65, "q is 65"),
                         ("from=2026-11-24&to=2026-11-23", "before from"), ("limit=0", "limit=")):
        reply = c.get(f"/api/events?{query}")
        assert reply.status == 400 and words in reply.json()["error"], (query, reply.text)


def page_links(page: str) -> tuple[list[int], str | None]:
    seqs = [int(s) for s in re.findall(r'<tr data-id="\d+"[^>]*data-seq="(\d+)"', page)]
    earlier = re.search(r'<a rel="next" data-page="earlier" href="([^"]+)"', page)
    return seqs, html.unescape(earlier.group(1)) if earlier else None


def test_paging_the_register_reaches_the_first_event_of_a_10000_event_day(web):
    start = datetime.fromisoformat(f"{DAY}T08:00:00.000+08:00")
    fill(web, (event(i, (start + timedelta(seconds=max(0, i - 300) * 3)).isoformat(timespec="milliseconds"),
                     "passage") for i in range(1, 10001)))  # the first 300 share one instant
    c = client(web)
    path, seen, pages = f"/register?date={DAY}", [], 0
    while path:
        page = c.get(path).text
        seqs, path = page_links(page)
        assert len(seqs) == 200
        seen = seqs + seen
        pages += 1
    assert pages == 50 and seen == list(range(1, 10001))
    assert 'data-page="first"' in page and "已到最早" in page


def test_api_pages_go_back_with_before_and_never_repeat_a_row(web):
    fill(web, (event(i, f"{DAY}T08:00:{i // 100:02d}.000+08:00") for i in range(1, 1001)))
    c = client(web)
    reply = c.get(f"/api/events?from={DAY}&limit=300").json()
    got = [e["seq"] for e in reply["events"]]
    while "before" in reply:
        reply = c.get(f"/api/events?from={DAY}&limit=300&before={reply['before']}").json()
        got = [e["seq"] for e in reply["events"]] + got
    assert got == list(range(1, 1001))


def test_times_are_short_and_local_with_the_full_time_as_a_tooltip(day):
    page = client(day).get(f"/register?date={DAY}").text
    assert ('<time datetime="2026-11-23T08:00:00.000+08:00" title="2026-11-23 08:00:00.000+08:00 Asia/Shanghai">'
            "11-23 08:00:00</time>") in page
    assert "2026-11-23T08:00:00.000+08:00</td>" not in page


def test_the_csv_starts_with_a_byte_order_mark_and_has_chinese_headers_on_request(day):
    c = client(day)
    english = c.get(f"/register.csv?date={DAY}")
    assert english.body.startswith(b"\xef\xbb\xbfsite,door,seq,time,")
    chinese = get(c, f"/register.csv?date={DAY}&lang=zh&q=乙")
    assert chinese.body.startswith("\ufeff场所,门,序号,时间,方向,人员编号,姓名".encode())
    assert 'filename="register-2026-11-23-zh.csv"' in chinese.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(chinese.body.decode("utf-8-sig"))))
    assert [(r["姓名"], r["事件"], r["方向"], r["原因"], r["角色"]) for r in rows] == [
        ("测试员乙", "拒绝通行", "进", "授权已过期", "员工"), ("测试员乙", "准许通行", "进", "", "员工")]


def test_the_printout_has_a_signature_block(day):
    page = client(day).get(f"/register/print?date={DAY}").text
    assert 'data-signature="prepared"' in page and 'data-signature="checked"' in page
    assert "制表人 Prepared by" in page and "审核人 Checked by" in page and ">victor</span>" in page


def test_a_text_search_on_postgresql_holds_when_the_planner_goes_parallel(postgres_url):
    """The person's fields are read in a function with an exception block (a payload that is not
    JSON matches nothing): a parallel worker could not run it, so the search must never be planned
    into one."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(f'ALTER DATABASE "{name}" SET force_parallel_mode = on')
    station = ThreadedStation(postgres_url)
    try:
        station.add_user("victor", "viewer")
        fill(station, [event(1, f"{DAY}T08:00:00.000+08:00", person=PEOPLE[2]),
                       event(2, f"{DAY}T08:01:00.000+08:00", person=PEOPLE[1])])
        assert found(client(station), f"from={DAY}&q=schmidt") == [("scan-room", 1)]
    finally:
        station.close()


def test_the_events_page_is_live_until_a_search_then_a_page_of_the_archive(day):
    c = client(day)
    live = c.get("/events").text
    assert 'id="stream"' in live and 'data-page="earlier"' in live
    searched = get(c, f"/events?from={DAY}&to={DAY}&q=测试员乙").text
    assert 'id="stream"' not in searched
    rows = re.findall(r'<tr class="access" data-id="\d+" data-site="[^"]+" data-door="([^"]+)"[^>]*data-seq="(\d+)"',
                      searched)
    assert rows == [("reading-room", "1"), ("scan-room", "3")]  # newest first
    dates_only = c.get(f"/events?from={DAY}&to={DAY}").text
    assert 'id="stream"' not in dates_only and 'data-type="door_forced"' in dates_only


def test_a_postgresql_archive_of_an_earlier_version_gets_the_trigram_index_in_place(postgres_url):
    from firmware_py.station.archive.store_pg import PgStationStore
    from firmware_py.station.web import search

    fill_pg(postgres_url, [event(i, f"{DAY}T08:{i:02d}:00.000+08:00", person=PEOPLE[i % 3]) for i in range(1, 40)])
    store = PgStationStore(postgres_url)
    try:
        store.prepare_reads()
        store._run(lambda c: c.execute("DROP EXTENSION pg_trgm CASCADE"))  # as an archive made before it
        assert not store._one("SELECT count(*) FROM pg_indexes WHERE indexname = 'events_person_trgm'")[0]
    finally:
        store.close()
    store = PgStationStore(postgres_url)  # the next start of the station
    try:
        store.prepare_reads()
        assert store._one("SELECT count(*) FROM pg_indexes WHERE indexname = 'events_person_trgm'")[0] == 1
        filters = search.parse({"from": DAY, "q": "ANNA schm"}, datetime(2026, 11, 23).date())
        rows = search.page(store, filters, TZ, 100).rows
        assert sorted(r.event["seq"] for r in rows) == [i for i in range(1, 40) if i % 3 == 2]
        plan = store._run(lambda c: (c.execute("SET LOCAL enable_seqscan = off"), c.execute(
            "EXPLAIN SELECT 1 FROM events WHERE accessctl_person_text(accessctl_person(payload)) LIKE '%anna schm%'"
        ).fetchall())[1])
        assert "Bitmap Index Scan on events_2026_11_accessctl_person_text_idx" in str(plan)  # the partition's
    finally:
        store.close()
