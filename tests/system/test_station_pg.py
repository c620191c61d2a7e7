"""The station's web page on a PostgreSQL archive: real PostgreSQL 15, real Mosquitto, a real door
link, `accessctl station serve` and `accessctl station user add` as child processes.

The same web code as on SQLite, through :class:`firmware_py.station.archive.store_pg.PgStationStore`; the
events reach the archive through the PostgreSQL ingest (:mod:`firmware_py.station.ingest.ingest`).
"""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime, timedelta

import psycopg
import pytest

from tests.fixtures.station import (
    TZ,
    Http,
    PublishingDoor,
    StationProcess,
    add_user_cli,
    free_port,
    read_event_stream,
    write_station_config,
)

SITE, DOOR = "hn-archive-1", "scan-room"
STAFF = {"person_id": "P001", "name": "测试员甲", "role": "staff"}
CARD = {"kind": "resident_id", "masked": "430102********0012"}


@pytest.fixture
def door(mosquitto_broker, tmp_path):
    d = PublishingDoor(mosquitto_broker, tmp_path)
    yield d
    d.close()


@pytest.fixture
def pg_station(mosquitto_broker, postgres_url, tmp_path):
    """`accessctl station serve` on a PostgreSQL archive, with an operator and a viewer made by
    `accessctl station user add`; stopped at teardown."""
    port = free_port()
    config = write_station_config(tmp_path / "station.toml", mosquitto_broker, postgres_url, port=port,
                                  client_id=f"station-pg-{port}")
    for name, role in (("olga", "operator"), ("victor", "viewer")):
        done = add_user_cli(config, name, role)
        assert done.returncode == 0, done.stderr
    station = StationProcess(config, port, tmp_path / "station.log")
    station.start()
    yield station
    station.stop()


def logged_in(station, name: str) -> Http:
    c = Http(station.url)
    assert c.login(name).status == 303
    return c


def days() -> str:
    today = datetime.now(TZ).date()
    return f"from={today - timedelta(days=1)}&to={today + timedelta(days=1)}"


def wait_for_events(client: Http, count: int, timeout: float = 15.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        events = client.get(f"/api/events?site={SITE}&door={DOOR}&{days()}").json()["events"]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.1)


def test_an_account_made_by_user_add_logs_in_and_a_wrong_password_does_not(pg_station):
    c = Http(pg_station.url)
    assert c.login("olga", "wrong password").status == 401
    assert c.login("olga").status == 303
    assert c.get("/").status == 200


def test_events_a_door_publishes_appear_in_api_events_and_the_register_csv(pg_station, door):
    door.append("access", "access_granted", direction="in", person=STAFF, credential=CARD)
    door.append("access", "access_denied", direction="in", person=STAFF, credential=CARD,
                reason="outside_working_hours")
    c = logged_in(pg_station, "victor")
    events = wait_for_events(c, 2)
    assert [(e["seq"], e["type"]) for e in events] == [(1, "access_granted"), (2, "access_denied")]
    assert [e["seq"] for e in c.get(f"/api/events?person=P001&{days()}").json()["events"]] == [1, 2]
    day = events[0]["ts"][:10]
    data = c.get(f"/register.csv?date={day}&site={SITE}&door={DOOR}")
    rows = list(csv.DictReader(io.StringIO(data.body.decode("utf-8-sig"))))  # after its byte-order mark
    assert data.status == 200 and [(r["site"], r["door"], r["seq"], r["epoch"]) for r in rows] == \
        [(SITE, DOOR, "1", "1"), (SITE, DOOR, "2", "1")]
    page = c.get(f"/register?date={day}").text
    assert f'data-site="{SITE}" data-door="{DOOR}" data-epoch="1" data-seq="2" data-type="access_denied"' in page


def test_the_overview_shows_the_door_online_with_its_verified_chain(pg_station, door):
    door.link.publish_status({"door": "closed", "lock": "locked", "lockdown": False, "occupancy": 1,
                              "version": "test", "faults": []})
    door.link.publish_occupancy({"count": 1, "inside": [{**STAFF, "since": "2026-11-23T08:55:03+08:00"}]})
    door.append("access", "access_granted", direction="in", person=STAFF, credential=CARD)
    c = logged_in(pg_station, "victor")
    deadline = time.monotonic() + 15
    while True:
        tiles = c.get("/api/doors").json()["doors"]
        if tiles and tiles[0]["online"] and tiles[0]["inside"] and tiles[0]["chain_ok"] \
                and "verified #1–#1" in json.dumps(tiles[0]["fields"], ensure_ascii=False):
            break
        assert time.monotonic() < deadline, tiles
        time.sleep(0.2)
    assert (tiles[0]["site"], tiles[0]["door"]) == (SITE, DOOR) and tiles[0]["inside"][0]["person_id"] == "P001"
    page = c.get("/").text
    assert f'data-site="{SITE}" data-door="{DOOR}" data-online="true"' in page


def read_stream(station, client: Http, count: int, after: int = 0) -> list[tuple[int, dict]]:
    return read_event_stream(client.opener, f"{station.url}/api/stream?after={after}", count)


def test_the_live_stream_sends_events_in_received_order_and_resumes_after_an_id(pg_station, door):
    for _ in range(4):
        door.append("access", "passage", direction="in")
    c = logged_in(pg_station, "victor")
    assert len(wait_for_events(c, 4)) == 4
    first = read_stream(pg_station, c, 4)
    ids = [i for i, _ in first]
    assert [d["seq"] for _, d in first] == [1, 2, 3, 4] and ids == sorted(ids) and len(set(ids)) == 4
    assert [d["seq"] for _, d in read_stream(pg_station, c, 2, after=ids[1])] == [3, 4]


def test_an_acknowledgement_is_stored_and_survives_a_station_restart(pg_station, door, postgres_url):
    alarm = door.append("alarm", "door_forced", detail={"source": "door_contact"})
    c = logged_in(pg_station, "olga")
    assert wait_for_events(c, 1)
    assert f'data-seq="{alarm["seq"]}" data-type="door_forced"' in c.get("/alarms").text
    path = f"/api/alarms/{SITE}/{DOOR}/{alarm['seq']}/acknowledge"
    assert c.post(path, {"comment": "checked the camera", "csrf": c.csrf()}).json() == {"ok": True}
    assert c.post(path, {"comment": "again", "csrf": c.csrf()}).status == 409
    pg_station.stop()
    pg_station.start()
    exported = list(csv.DictReader(io.StringIO(c.get("/alarms.csv").text)))  # the session survives too
    assert [(r["seq"], r["type"], r["acknowledged_by"], r["comment"]) for r in exported] == \
        [(str(alarm["seq"]), "door_forced", "olga", "checked the camera")]
    with psycopg.connect(postgres_url) as conn:
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="never changed"):
            conn.execute("UPDATE acknowledgements SET comment = 'nothing'")
        conn.rollback()
        for statement in ("DELETE FROM acknowledgements", "TRUNCATE acknowledgements", "DELETE FROM audit"):
            with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="never deleted"):
                conn.execute(statement)
            conn.rollback()
        assert conn.execute("SELECT by, comment FROM acknowledgements").fetchall() == [("olga", "checked the camera")]


def test_a_viewers_state_changing_request_is_403_and_the_api_without_a_session_401(pg_station, door,
                                                                                      postgres_url):
    alarm = door.append("alarm", "door_forced")
    viewer = logged_in(pg_station, "victor")
    assert wait_for_events(viewer, 1)
    path = f"/api/alarms/{SITE}/{DOOR}/{alarm['seq']}/acknowledge"
    assert viewer.post(path, {"comment": "mine", "csrf": viewer.csrf()}).status == 403
    assert viewer.post(f"/api/doors/{SITE}/{DOOR}/lockdown", {"csrf": viewer.csrf()}).status == 403
    nobody = Http(pg_station.url)
    for method, where in (("GET", "/api/events"), ("GET", "/api/doors"), ("POST", path)):
        assert nobody.request(method, where, {} if method == "POST" else None).status == 401
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM acknowledgements").fetchone()[0] == 0
        audited = [r for (r,) in conn.execute("SELECT result FROM audit WHERE who = 'victor'"
                                               " AND action NOT LIKE '%/login' ORDER BY id")]
    assert len(audited) == 2 and all(r.startswith("403") for r in audited)


def test_an_archive_made_before_received_id_gets_its_events_numbered_for_the_stream(postgres_url):
    from firmware_py.station.archive.open import open_station_store
    from firmware_py.station.archive.pg import SCHEMA, Incoming, PgArchive
    from firmware_py.station.web import queries

    old = "\n".join(line for line in SCHEMA.splitlines() if "received_id" not in line)
    event = {"seq": 1, "ts": "2026-11-23T09:00:00+08:00", "site": SITE, "door": DOOR, "category": "access",
             "type": "passage", "hash": "h", "prev_hash": "p"}
    with psycopg.connect(postgres_url) as conn:
        conn.execute(old)
        conn.execute("CREATE TABLE events_2026_11 PARTITION OF events FOR VALUES FROM ('2026-11-01 00:00+08')"
                     " TO ('2026-12-01 00:00+08')")
        conn.execute("INSERT INTO events (site, door, seq, ts, local_date, category, type, hash, prev_hash, hash_ok,"
                     " topic, payload, received_at) VALUES (%s, %s, 1, %s, '2026-11-23', 'access', 'passage', 'h',"
                     " 'p', false, 't', %s, now())", (SITE, DOOR, event["ts"], json.dumps(event).encode()))
    archive = PgArchive(postgres_url)  # an archive opened by this version numbers what it holds
    try:
        second = {**event, "seq": 2, "ts": "2026-11-23T09:00:01+08:00"}
        archive.store_events([Incoming(SITE, DOOR, "t", json.dumps(second).encode(), second,
                                       "2026-11-23T09:00:01+08:00")])
    finally:
        archive.close()
    store = open_station_store(postgres_url)
    try:
        queries.prepare(store)
        rows = queries.events_after(store, 0)
    finally:
        store.close()
    assert [r.event["seq"] for r in rows] == [1, 2] and rows[0].id < rows[1].id
