"""One door spoils only its own row (issue 17, the web side), on both archives: whatever one door
stored (old rows, hostile rows, written here straight into the archive), every page and API call
answers 200 and shows every other door intact; ID numbers are masked on parsed values; the audit
trail keeps what it is given and shows every row; admins see each door's rejects and conflicts."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
import urllib.request
import uuid
from datetime import datetime

import psycopg
import pytest

from firmware_py.core.events import event_hash
from tests.fixtures.station import Http, ThreadedStation
from tests.system.test_station_web import FULL_ID, SITE, chained

DAY = "2026-11-23"
RECEIVED = f"{DAY}T09:00:00+08:00"
MASKED = "430102********0012"
FULL_WIDTH = "".join(chr(ord(c) + 0xFEE0) for c in FULL_ID)
ARABIC_INDIC = "".join(chr(0x660 + int(c)) for c in FULL_ID)
LEAKS = (FULL_ID, FULL_WIDTH, ARABIC_INDIC, FULL_ID[6:14])
GOOD = "good-door"
STAFF = {"person_id": "P001", "name": "测试员甲", "role": "staff"}
CARD = {"kind": "resident_id", "masked": MASKED}
DEEP = b"[" * 100_000 + b"]" * 100_000


def ts(second: int) -> str:
    return f"{DAY}T09:00:{second:02d}.000+08:00"


# ---------------------------------------------------------------- writing straight into the archive


def sql(web: ThreadedStation, statement: str, params: tuple = ()) -> list[tuple]:
    """One statement on the archive behind ``web`` (``?`` placeholders on both backends)."""
    if isinstance(web.where, str):
        with psycopg.connect(web.where, autocommit=True) as conn:
            cur = conn.execute(statement.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []
    conn = sqlite3.connect(web.where)
    try:
        with conn:
            return conn.execute(statement, params).fetchall()
    finally:
        conn.close()


def store(web: ThreadedStation, door: str, seq: int, payload: bytes, *, category: str = "access",
          type_: str = "access_granted", second: int = 1, hash_: str = "0" * 64) -> None:
    """An event row whose columns are sound and whose payload is ``payload``, whatever it is."""
    event = {"seq": seq, "ts": ts(second), "category": category, "type": type_, "hash": hash_, "prev_hash": "0" * 64}
    web.archive.store_event(SITE, door, f"accessctl/{SITE}/{door}/events/{category}/{type_}", payload, event,
                            RECEIVED)
    known(web, door)


def store_events(web: ThreadedStation, door: str, events: list[dict]) -> None:
    for e in events:
        web.archive.store_event(SITE, door, f"accessctl/{SITE}/{door}/events/{e['category']}/{e['type']}",
                                json.dumps(e, ensure_ascii=False).encode(), e, RECEIVED)
    known(web, door)


def known(web: ThreadedStation, door: str) -> None:
    """The door in the PostgreSQL ingest's ``door_state``, as the ingest puts every door it stores events of
    (the SQLite archive keeps its doors as it stores)."""
    if isinstance(web.where, str):
        sql(web, "INSERT INTO door_state (site, door) VALUES (?, ?) ON CONFLICT DO NOTHING", (SITE, door))


def door_state(web: ThreadedStation, door: str, status: str | None, occupancy: str | None) -> None:
    """The door's retained status and occupancy as stored text (JSON or not)."""
    pg = isinstance(web.where, str)
    at = datetime.fromisoformat(RECEIVED) if pg else RECEIVED
    sql(web, f"INSERT INTO {'door_state' if pg else 'doors'} (site, door, status, status_at, occupancy, occupancy_at)"
             " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (site, door) DO UPDATE SET status = excluded.status,"
             " status_at = excluded.status_at, occupancy = excluded.occupancy, occupancy_at = excluded.occupancy_at",
        (SITE, door, status, at, occupancy, at))


def reject(web: ThreadedStation, door: str, reason: str, payload: bytes) -> None:
    at = datetime.fromisoformat(RECEIVED) if isinstance(web.where, str) else RECEIVED
    sql(web, "INSERT INTO ingest_rejects (received_at, site, door, topic, reason, payload) VALUES (?, ?, ?, ?, ?, ?)",
        (at, SITE, door, f"accessctl/{SITE}/{door}/events/access/access_granted", reason, payload))


# ---------------------------------------------------------------- the stations


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def web(request, tmp_path_factory):
    """A station (web app, no broker) on each archive, with one sound door and many strange ones."""
    cluster = name = None
    if request.param == "sqlite":
        where = tmp_path_factory.mktemp("one-door") / "archive.db"
    else:
        cluster = request.getfixturevalue("postgres_cluster")
        name = f"t_{uuid.uuid4().hex[:12]}"
        where = cluster.create_database(name)
    s = ThreadedStation(where)
    for user, role in (("ada", "admin"), ("olga", "operator"), ("victor", "viewer")):
        s.add_user(user, role)
    fill(s)
    yield s
    s.close()
    if cluster is not None:
        cluster.drop_database(name)


def fill(web: ThreadedStation) -> None:
    # the sound door: three chained events, an online status, one person inside
    good = chained([
        (ts(1), "access_granted", "access", {"direction": "in", **person()}),
        (ts(2), "access_denied", "access", {"direction": "in", **person(), "reason": "outside_working_hours"}),
        (ts(3), "door_forced", "alarm", {}),
    ], door=GOOD)
    store_events(web, GOOD, good)
    if isinstance(web.where, str):  # the PostgreSQL ingest verifies each chain as it stores
        sql(web, "INSERT INTO door_chains (site, door, verified_to, last_hash) VALUES (?, ?, 3, ?)",
            (SITE, GOOD, good[-1]["hash"]))
    door_state(web, GOOD, json.dumps({"online": True, "lock": "locked", "door": "closed", "lockdown": False,
                                      "occupancy": 1, "faults": [], "queued": 0}),
               json.dumps({"count": 1, "inside": [{**STAFF, "since": ts(1)}]}))
    # events of every strange shape, one door
    strange = [
        json.dumps({"seq": 1, "ts": ts(1), "category": "access", "type": "access_granted", "direction": "in",
                    "person": {"person_id": "P9", "name": f"名 {FULL_WIDTH}"}}).replace(
            '"direction"', f'"detail": {FULL_ID}, "note": "{ARABIC_INDIC}", "direction"').encode(),
        b"\xff\xfe{ not json",
        b"[1, 2, 3]",
        b'"just a string"',
        b'{"seq": NaN, "ts": "' + ts(5).encode() + b'", "type": "access_denied", "reason": "lockdown"}',
        DEEP,
        json.dumps({"seq": 7, "ts": ts(7), "type": "access_granted", "direction": "in",
                    "person": {"person_id": "P7", "name": "x" * 200_000}}).encode(),
        json.dumps({"seq": 8, "ts": f"{DAY}T09:00:08", "type": "access_granted", "direction": "in"}).encode(),
        json.dumps({"seq": 9, "ts": "not a time", "type": "access_granted", "direction": "in"}).encode(),
        b'{"seq": ' + b"9" * 5000 + b', "ts": "' + ts(10).encode() + b'", "type": "passage"}',
        b'{"seq": 11, "ts": "' + ts(11).encode() + b'", "type": "exit_button", "person": {"name": "\\ud800"}}',
        json.dumps({"seq": "12", "ts": 5, "type": ["x"], "category": {"a": 1}, "person": "P001", "credential": [1],
                    "detail": [FULL_ID], "reason": {"r": 1}, "direction": 3}).encode(),
    ]
    for seq, payload in enumerate(strange, 1):
        store(web, "bad-events", seq, payload, second=seq)
    for seq, payload in enumerate([b'{"type": "door_forced", "ts": 7, "detail": {"card": ' + FULL_ID.encode()
                                   + b', "deep": {"a": [1, {"b": null}]}}}', DEEP, b"{broken"], 1):
        store(web, "bad-alarms", seq, payload, category="alarm", type_="door_forced", second=seq)
    store(web, "bad-deep", 1, DEEP)  # the chain check reads it first
    door_state(web, "bad-deep", DEEP.decode(), DEEP.decode())
    for i, (status, occupancy) in enumerate([
        ({"faults": 1, "lock": ["x"], "online": "yes", "door": {"a": {"b": 1}}, "lockdown": "maybe",
          "occupancy": [1], "queued": "x" * 100_000, "last_seq": "9"}, 5),
        ("{broken", [1, "x", {"person_id": ["a"], "name": int(FULL_ID)}, None]),
        ([1, 2], {"inside": "P001"}),
        ({"online": True, "faults": ["a", {"b": 1}, None], "lock": None, "door": 7},
         {"inside": [{"person_id": "P1", "name": "x" * 100_000, "since": 5}, {"person_id": {"x": 1}}]}),
        ("text", None),
        ('{"online": NaN, "faults": "' + FULL_ID + '"}', '{"inside": [' + "{}," * 1000 + "{}]}"),
    ], 1):
        door_state(web, f"bad-status-{i}", status if isinstance(status, str) else json.dumps(status),
                   occupancy if isinstance(occupancy, str) or occupancy is None else json.dumps(occupancy))


def person():
    return {"person": STAFF, "credential": CARD}


@pytest.fixture(scope="module")
def admin(web) -> Http:
    return logged_in(web, "ada")


def logged_in(web, name: str) -> Http:
    c = web.client()
    assert c.login(name).status == 303
    return c


# ---------------------------------------------------------------- every page renders every other door

PAGES = ("/", "/events", "/alarms", "/alarms.csv", f"/register?date={DAY}", f"/register.csv?date={DAY}",
         f"/register/print?date={DAY}", "/audit", "/problems", f"/api/events?from={DAY}&to={DAY}", "/api/doors",
         f"/api/events?from={DAY}&to={DAY}&person=P001")


@pytest.mark.parametrize("path", PAGES)
def test_every_page_answers_200_whatever_one_door_stored_and_shows_no_full_id_number(web, admin, path):
    reply = admin.get(path)
    assert reply.status == 200, reply.text[:2000]
    assert not [leak for leak in LEAKS if leak in reply.text], path


def test_the_overview_shows_the_sound_door_intact_and_the_strange_ones_as_unknown(web, admin):
    page = admin.get("/").text
    tile = page[page.index(f'data-door="{GOOD}"'):]
    tile = tile[:tile.index("</article>")]
    assert 'data-online="true"' in tile and "已锁 locked" in tile and "关 closed" in tile
    assert 'data-person="P001"' in tile and "verified #1–#3" in tile
    for door in ("bad-events", "bad-alarms", "bad-deep", *(f"bad-status-{i}" for i in range(1, 7))):
        assert f'data-site="{SITE}" data-door="{door}"' in page, door
    assert 'data-door="bad-status-1" data-online="false"' in page


def test_api_doors_gives_the_sound_door_as_it_is(web, admin):
    tiles = {t["door"]: t for t in admin.get("/api/doors").json()["doors"]}
    good = tiles[GOOD]
    assert good["online"] is True and good["chain_ok"] is True and good["inside"][0]["person_id"] == "P001"
    assert good["fields"]["lock"] == "已锁 locked" and good["fields"]["faults"] == "无 none"
    assert tiles["bad-status-1"]["online"] is False and tiles["bad-status-1"]["fields"]["faults"] == "?"
    assert all(isinstance(t["inside"], list) for t in tiles.values())


def test_the_events_and_the_register_keep_the_sound_door_s_rows(web, admin):
    for path in ("/events", f"/register?date={DAY}", f"/register/print?date={DAY}"):
        page = admin.get(path).text
        for seq, type_ in ((1, "access_granted"), (2, "access_denied")):
            assert f'data-door="{GOOD}" data-epoch="1" data-seq="{seq}" data-type="{type_}"' in page, path
    rows = list(csv.DictReader(io.StringIO(admin.get(f"/register.csv?date={DAY}").body.decode("utf-8-sig"))))
    assert [(r["seq"], r["decision"]) for r in rows if r["door"] == GOOD] == \
        [("1", "access_granted"), ("2", "access_denied")]
    alarms = admin.get("/alarms").text
    assert f'data-door="{GOOD}" data-epoch="1" data-seq="3" data-type="door_forced"' in alarms
    assert GOOD in admin.get("/alarms.csv").body.decode("utf-8-sig")


def test_api_events_masks_id_numbers_on_parsed_values(web, admin):
    events = admin.get(f"/api/events?from={DAY}&to={DAY}").json()["events"]
    assert [e["seq"] for e in events if e.get("door") == GOOD] == [1, 2, 3]
    first = next(e for e in events if isinstance(e.get("person"), dict) and e["person"].get("person_id") == "P9")
    assert first["detail"] == MASKED and first["note"] == MASKED and first["person"]["name"] == f"名 {MASKED}"
    assert [e["seq"] for e in admin.get(f"/api/events?from={DAY}&to={DAY}&person=P001").json()["events"]] == [1, 2]


def test_the_live_stream_carries_the_sound_door_after_the_strange_ones(web, admin):
    seen, doors = set(), None
    request = urllib.request.Request(admin.base + "/api/stream?after=0&doors=1")
    deadline = time.monotonic() + 20
    with admin.opener.open(request, timeout=20) as r:
        block = {}
        for raw in r:
            line = raw.decode().rstrip("\n")
            if not line:
                data = json.loads(block["data"]) if "data" in block else None
                if block.get("event") == "event" and data["door"] == GOOD:
                    seen.add(data["seq"])
                elif block.get("event") == "doors":
                    doors = {t["door"]: t for t in data["doors"]}
                block = {}
                if seen == {1, 2, 3} and doors is not None or time.monotonic() > deadline:
                    break
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                block[key] = value
    assert seen == {1, 2, 3} and doors[GOOD]["online"] is True


# ---------------------------------------------------------------- the audit trail cannot be hidden


def test_an_anonymous_login_with_a_5_kb_next_leaves_a_row_audit_shows(web, admin):
    anonymous = web.client()
    assert anonymous.post("/login", {"username": "mallory", "password": "x", "next": "/" + "a" * 5000}).status == 401
    page = admin.get("/audit")
    assert page.status == 200
    assert "mallory" in page.text and "/aaaaaaaaaa" in page.text


def test_a_broken_old_audit_row_is_shown_masked(web, admin):
    pg = isinstance(web.where, str)
    sql(web, "INSERT INTO audit (at, who, address, action, detail, result) VALUES (?, ?, ?, ?, ?, ?)",
        (datetime.fromisoformat(RECEIVED) if pg else RECEIVED, "old", "10.0.0.1", "POST /login",
         '{"next": "/x ' + FULL_ID + ' yyy', "401 old row"))
    page = admin.get("/audit")
    assert page.status == 200 and "401 old row" in page.text and MASKED in page.text


def test_id_numbers_typed_into_a_reason_or_a_comment_are_masked_before_they_are_kept(web):
    store_events(web, "ack-door", chained([(ts(1), "door_forced", "alarm", {})], door="ack-door"))
    olga = logged_in(web, "olga")
    token = olga.csrf()
    assert olga.post(f"/doors/{SITE}/{GOOD}/revoke", {"csrf": token, "person_id": "P001",
                                                     "reason": f"card {FULL_WIDTH} lost"}).status == 503
    assert olga.post(f"/alarms/{SITE}/ack-door/1/acknowledge", {"csrf": token, "epoch": "1",
                                                               "comment": f"checked {FULL_ID}"}).status == 303
    stored = sql(web, "SELECT comment FROM acknowledgements WHERE door = ?", ("ack-door",))
    assert stored == [(f"checked {MASKED}",)]
    admin = logged_in(web, "ada")
    audit, alarms = admin.get("/audit").text, admin.get("/alarms").text
    assert f"card {MASKED} lost" in audit and f"checked {MASKED}" in audit and f"checked {MASKED}" in alarms
    assert not [leak for leak in LEAKS if leak in audit + alarms]


# ---------------------------------------------------------------- admins see rejects and conflicts


def test_admins_see_each_door_s_rejects_and_conflicts_newest_first_masked_and_escaped(web):
    e1, e2 = chained([(ts(1), "access_granted", "access", {}), (ts(2), "access_denied", "access", {})],
                     door="noisy-door")
    store_events(web, "noisy-door", [e1, e2])
    other = {**e2, "detail": {"forged": True}}
    other["hash"] = event_hash({k: v for k, v in other.items() if k != "hash"})
    store_events(web, "noisy-door", [other])
    reject(web, "noisy-door", "not JSON", b"<script>alert(1)</script> first")
    reject(web, "noisy-door", "seq out of range", b'{"seq": 9007199254740993, "card": ' + FULL_ID.encode() + b"}")
    reject(web, "noisy-door", "too large", b"y" * 70_000)
    admin = logged_in(web, "ada")
    page = admin.get("/problems")
    assert page.status == 200 and 'href="/problems"' in page.text
    section = page.text[page.text.index('data-door="noisy-door"'):]
    assert section.index("too large") < section.index("seq out of range") < section.index("not JSON")
    assert "&lt;script&gt;" in section and "<script>alert" not in page.text and MASKED in section
    assert f"#{e2['seq']}" in section and "forged" in section
    assert len(page.text) < 200_000
    assert 'data-door="noisy-door" data-online="false" data-problems="4"' in admin.get("/").text
    assert {t["door"]: t["problems"] for t in admin.get("/api/doors").json()["doors"]}["noisy-door"] == 4


def test_a_viewer_may_not_see_the_rejects_nor_find_the_page_in_the_menu(web):
    victor = logged_in(web, "victor")
    assert victor.get("/problems").status == 403
    assert 'href="/problems"' not in victor.get("/").text
