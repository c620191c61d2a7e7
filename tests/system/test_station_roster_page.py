"""``/roster``, the admin's roster page, served in-process (:class:`ThreadedStation`) on both archives,
publishing over the station's own connection (the real SQLite monitor or PostgreSQL ingest) to a real
Mosquitto: checked as the command line checks, the difference against the last published bundle,
the retained bundle verifying, each door's applied version, by role, audited, no full ID number."""

from __future__ import annotations

import json
import re
import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.core.events import GENESIS_HASH, event_hash
from firmware_py.link import roster_bundle as rb
from firmware_py.link.broker import BrokerSettings
from firmware_py.station.config import load_station_config
from tests.fixtures.roster import HEADER
from tests.fixtures.roster_bundle import person, person_number, write_keys
from tests.fixtures.station import ThreadedStation
from tests.fixtures.waiting import wait_until

SITE = "hn-archive-1"
FULL_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
ROSTER = f"accessctl/{SITE}/roster"


def station_toml(path, broker, archive, keys=None, account="supervisor-3", hours=""):
    a = broker.accounts[account]
    text = f"""[broker]
url = "{broker.url}"
ca_file = "{broker.ca_file}"
cert_file = "{a.cert_file}"
key_file = "{a.key_file}"
client_id = "{account}"
beacon_interval_s = 0

[archive]
path = "{archive if not str(archive).startswith('postgres') else path.parent / 'unused.db'}"

[web]
timezone = "Asia/Shanghai"
"""
    if keys:
        private, site = keys
        text += f"""
[roster]
signing_key = "{private}"
site_key = "{site}"
site = "{SITE}"

[roster.schedule.office]
mon = ["08:30-12:00", "14:00-17:30"]

[roster.schedule.extended]
mon = ["07:30-19:00"]
""" + hours
    path.write_text(text)
    return load_station_config(path)


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


def _connection(where, cfg):
    """The station's own connection to the broker: its ingest, over either archive."""
    from firmware_py.station.ingest.ingest import Ingest

    settings = BrokerSettings.from_config(cfg.broker, client_id=f"station-{secrets.token_hex(4)}")
    ingest = Ingest(settings, where, prefix=cfg.broker.prefix, beacon_interval_s=None)
    ingest.start(wait=False)
    return ingest


@pytest.fixture(params=["sqlite", "pg"])
def make_station(request, tmp_path, mosquitto_broker):
    made = []

    def make(*, keys=True, connected=True):
        where = request.getfixturevalue("postgres_url") if request.param == "pg" else tmp_path / "archive.db"
        k = write_keys(tmp_path / "keys", request.getfixturevalue("key")) if keys else None
        cfg = station_toml(tmp_path / "station.toml", mosquitto_broker, where, (k[0], k[2]) if k else None)
        station = ThreadedStation(where, config=cfg)
        made.append(station)
        if connected:
            station.station.monitor = _connection(where, cfg)
            made.append(station.station.monitor)
            wait_until(lambda: station.station.monitor.connected, 10, "the station's connection")
        for name, role in (("ada", "admin"), ("olga", "operator"), ("victor", "viewer")):
            station.add_user(name, role)
        return station

    yield make
    for thing in reversed(made):
        thing.close()


def logged_in(station, name):
    c = station.client()
    assert c.login(name).status == 303
    return c


def multipart(fields: dict, files: dict) -> tuple[bytes, dict]:
    boundary = secrets.token_hex(12)
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    for k, (name, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
                     f'Content-Type: text/csv\r\n\r\n'.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), {
        "Content-Type": f"multipart/form-data; boundary={boundary}"}


def csv_of(*rows: str) -> bytes:
    return ("\n".join((HEADER, *rows)) + "\n").encode()


def upload(c, data: bytes, name="roster.csv"):
    body, headers = multipart({"csrf": c.csrf()}, {"roster": (name, data)})
    return c.request("POST", "/roster/check", raw=body, headers=headers)


def token_of(page: str) -> str:
    return re.search(r'name="upload" value="([^"]+)"', page).group(1)


def assert_no_full_number(*texts: str):
    for text in texts:
        assert not FULL_ID_NUMBER.search(text), FULL_ID_NUMBER.search(text).group(0)


def audit_text(station) -> str:
    return json.dumps(station.store.audit_entries(1000), ensure_ascii=False)


# ---------------------------------------------------------------- checking and publishing


def test_an_uploaded_roster_shows_what_it_adds_and_publishing_retains_a_bundle_that_verifies(
        make_station, mosquitto_broker, key):
    station = make_station()
    watcher = mosquitto_broker.connect()
    watcher.subscribe(f"accessctl/{SITE}/roster/#")
    watcher.subscribe(ROSTER)
    c = logged_in(station, "ada")
    first = upload(c, csv_of(person(1), person(2), person(3)))
    assert first.status == 200, first.text
    assert 'data-added="3" data-removed="0" data-changed="0"' in first.text
    assert "430102********" in first.text
    done = c.post("/roster/publish", {"csrf": c.csrf(), "upload": token_of(first.text)})
    assert done.status == 200, done.text
    version = int(re.search(r'data-published="(\d+)" data-chunks="1"', done.text).group(1))
    assert f'data-published-version="{version}"' in done.text

    wait_until(lambda: watcher.received(ROSTER), 10, "the retained manifest")
    retained = mosquitto_broker.connect()  # a client that comes later gets the retained bundle
    retained.subscribe(f"accessctl/{SITE}/roster/#")
    retained.subscribe(ROSTER)
    wait_until(lambda: len(retained.received()) >= 2, 10, "the retained manifest and chunk")
    assembler, got = rb.Assembler(), None
    for m in sorted(retained.received(), key=lambda m: m.topic != ROSTER):
        assert m.retain
        got = assembler.add(rb.read_message(m.payload, key.public_key())) or got
    manifest, payload = got
    assert (manifest.site, manifest.version, manifest.rows) == (SITE, version, 3)
    header, rows = rb.read_payload(manifest, payload)
    assert [r[0] for r in rows] == ["P00001", "P00002", "P00003"]

    kept = station.store.published_roster(SITE)
    assert (kept.version, kept.count, kept.chunks, kept.published_by) == (version, 3, 1, "ada")
    assert kept.sha256 == manifest.sha256
    for n in (1, 2, 3):
        assert person_number(n).encode() not in kept.rows
        assert person_number(n) not in done.text + first.text + audit_text(station)
    assert f"published roster version {version}" in audit_text(station)
    if not str(station.where).startswith("postgres"):  # the whole archive file, every table and page
        data = b"".join(p.read_bytes() for p in station.where.parent.glob(station.where.name + "*"))
        assert not any(person_number(n).encode() in data for n in (1, 2, 3))


def test_a_second_upload_is_compared_with_the_bundle_published_before(make_station):
    station = make_station()
    c = logged_in(station, "ada")
    first = upload(c, csv_of(person(1), person(2), person(3)))
    assert c.post("/roster/publish", {"csrf": c.csrf(), "upload": token_of(first.text)}).status == 200
    changed = person(3).replace("2026-12-31,office", "2026-12-31,extended")
    second = upload(c, csv_of(person(1), changed, person(4)))
    assert second.status == 200, second.text
    page = second.text
    assert 'data-added="1" data-removed="1" data-changed="1" data-unchanged="1"' in page
    assert 'data-change="added" data-person="P00004"' in page
    assert 'data-change="removed" data-person="P00002"' in page
    assert re.search(r'data-change="changed" data-person="P00003">.*?<td>schedule_group</td>', page)
    assert_no_full_number(page, audit_text(station))


def test_an_upload_says_how_the_stations_hours_change_the_doors_hours(make_station, mosquitto_broker, tmp_path):
    station = make_station()
    cfg = station.station.config
    c = logged_in(station, "ada")
    first = upload(c, csv_of(person(1)))
    assert "data-hours-changed" not in first.text  # no [roster.calendar]: each door keeps its own hours
    assert c.post("/roster/publish", {"csrf": c.csrf(), "upload": token_of(first.text)}).status == 200

    keys, archive = (cfg.roster.signing_key, cfg.roster.site_key), cfg.archive.url or cfg.archive.path
    hours = '\n[roster.calendar]\nholidays = [2026-12-25]\n'
    station.station.config = station_toml(tmp_path / "hours.toml", mosquitto_broker, archive, keys, hours=hours)
    second = upload(c, csv_of(person(1)))
    assert 'data-hours-changed="true"' in second.text
    assert "the doors take their hours from the station from this version on" in second.text
    assert c.post("/roster/publish", {"csrf": c.csrf(), "upload": token_of(second.text)}).status == 200

    station.station.config = station_toml(tmp_path / "hours.toml", mosquitto_broker, archive, keys,
                                          hours=hours.replace("2026-12-25", "2026-12-25, 2027-01-01")
                                          + '\n[roster.schedule.night]\nwed = ["20:00-24:00"]\n')
    third = upload(c, csv_of(person(1)))
    assert 'data-added="0" data-removed="0" data-changed="0" data-unchanged="1"' in third.text
    assert re.search(r'data-hours-changed="true">.*<li>group night added</li><li>holiday added: 2027-01-01</li>',
                     third.text)


def test_a_csv_with_a_bad_row_is_refused_naming_its_line_and_nothing_is_kept(make_station):
    station = make_station()
    c = logged_in(station, "ada")
    bad = person(2).replace(person_number(2), person_number(2)[:-1] + ("0" if person_number(2)[-1] != "0" else "1"))
    refused = upload(c, csv_of(person(1), bad, person(3)))
    assert refused.status == 400
    assert 'data-refused="true"' in refused.text and "line 3, id_number" in refused.text
    assert 'name="upload"' not in refused.text
    assert station.store.published_roster(SITE) is None
    assert_no_full_number(refused.text, audit_text(station))


def test_a_checked_roster_cannot_be_published_by_another_admin_or_twice(make_station):
    station = make_station()
    station.add_user("ben", "admin")
    c, other = logged_in(station, "ada"), logged_in(station, "ben")
    token = token_of(upload(c, csv_of(person(1))).text)
    assert other.post("/roster/publish", {"csrf": other.csrf(), "upload": token}).status == 409
    assert c.post("/roster/publish", {"csrf": c.csrf(), "upload": token}).status == 200
    assert c.post("/roster/publish", {"csrf": c.csrf(), "upload": token}).status == 409


# ---------------------------------------------------------------- who may


@pytest.mark.parametrize("name", ["olga", "victor"])
def test_an_operator_or_a_viewer_may_neither_see_nor_publish_the_roster(make_station, name):
    station = make_station(connected=False)
    c = logged_in(station, name)
    assert c.get("/roster").status == 403
    assert upload(c, csv_of(person(1))).status == 403
    assert c.post("/roster/publish", {"csrf": c.csrf(), "upload": "x"}).status == 403
    assert 'href="/roster"' not in c.get("/").text
    assert station.store.published_roster(SITE) is None


def test_an_upload_without_the_csrf_token_is_refused(make_station):
    station = make_station(connected=False)
    c = logged_in(station, "ada")
    body, headers = multipart({}, {"roster": ("roster.csv", csv_of(person(1)))})
    assert c.request("POST", "/roster/check", raw=body, headers=headers).status == 403
    assert 'href="/roster"' in c.get("/").text


def test_an_upload_over_the_size_limit_is_refused_before_it_is_read(make_station):
    import http.client

    from firmware_py.station.web.roster_page import UPLOAD_BYTES

    station = make_station(connected=False)
    c = logged_in(station, "ada")
    body, headers = multipart({"csrf": c.csrf()}, {"roster": ("roster.csv", csv_of(person(1)))})
    conn = http.client.HTTPConnection("127.0.0.1", station.port, timeout=10)
    conn.putrequest("POST", "/roster/check")
    for k, v in {**headers, "Content-Length": str(UPLOAD_BYTES + 1),
                 "Cookie": "; ".join(f"{k.name}={k.value}" for k in c.jar)}.items():
        conn.putheader(k, v)
    conn.endheaders()
    conn.send(body)  # the rest never comes: the declared length is refused at once
    answer = conn.getresponse()
    assert answer.status == 413 and str(UPLOAD_BYTES) in answer.read().decode()
    conn.close()


# ---------------------------------------------------------------- not configured, not connected


def test_without_roster_keys_the_page_says_what_to_configure_and_publishing_is_refused(make_station):
    station = make_station(keys=False, connected=False)
    c = logged_in(station, "ada")
    page = c.get("/roster")
    assert page.status == 200
    assert 'data-roster-keys="missing"' in page.text and "signing_key" in page.text
    assert "commissioning.md" in page.text
    refused = upload(c, csv_of(person(1)))
    assert refused.status == 409 and "signing_key and site_key" in refused.text
    assert c.post("/roster/publish", {"csrf": c.csrf(), "upload": "x"}).status == 409


def test_publishing_while_the_station_is_not_connected_answers_503_and_keeps_nothing(make_station):
    station = make_station(connected=False)
    c = logged_in(station, "ada")
    token = token_of(upload(c, csv_of(person(1))).text)
    answer = c.post("/roster/publish", {"csrf": c.csrf(), "upload": token})
    assert answer.status == 503 and "not connected" in answer.text
    assert station.store.published_roster(SITE) is None


# ---------------------------------------------------------------- each door's roster


def _event(door, seq, type_, detail, prev):
    e = {"seq": seq, "ts": f"2026-11-23T09:0{seq}:00+08:00", "site": SITE, "door": door, "category": "system",
         "type": type_, "direction": None, "person": None, "credential": None, "reason": None, "detail": detail,
         "prev_hash": prev}
    e["hash"] = event_hash(e)
    return e


def _archive(station, door, events, version):
    for e in events:
        station.archive.store_event(SITE, door, f"accessctl/{SITE}/{door}/events/system/{e['type']}",
                                    json.dumps(e).encode(), e, "2026-11-23T09:00:00+08:00")
    status = {"online": True, "roster_version": version, "last_seq": len(events)}
    station.archive.store_status(SITE, door, "status", status, "2026-11-23T09:10:00+08:00")
    if str(station.where).startswith("postgres"):  # on PostgreSQL the ingest keeps each door's status
        import psycopg

        with psycopg.connect(station.where) as conn:
            conn.execute("INSERT INTO door_state (site, door, status, status_at) VALUES (%s, %s, %s, now())"
                         " ON CONFLICT (site, door) DO UPDATE SET status = excluded.status",
                         (SITE, door, json.dumps(status)))


def test_each_door_shows_the_version_it_applied_and_when_and_a_door_that_rejected_one_its_reason(make_station):
    station = make_station(connected=False)
    applied = _event("gate", 1, "roster_applied", {"version": 1700000000, "count": 3}, GENESIS_HASH)
    _archive(station, "gate", [applied], 1700000000)
    ok = _event("vault", 1, "roster_applied", {"version": 1600000000, "count": 3}, GENESIS_HASH)
    no = _event("vault", 2, "roster_rejected", {"reason": "other_key", "message": "the rows are hashed under "
                                                 "another key", "version": 1700000000}, ok["hash"])
    _archive(station, "vault", [ok, no], 1600000000)
    page = logged_in(station, "ada").get("/roster").text
    gate = re.search(r'<tr data-site="hn-archive-1" data-door="gate"[^>]*>.*?</tr>', page).group(0)
    vault = re.search(r'<tr data-site="hn-archive-1" data-door="vault"[^>]*>.*?</tr>', page).group(0)
    assert 'data-roster-version="1700000000"' in gate and 'data-rejected="false"' in gate
    assert "version 1700000000" in gate and 'datetime="2026-11-23T09:01:00' in gate
    assert 'data-roster-version="1600000000"' in vault and 'data-rejected="true"' in vault
    assert 'data-reason="other_key"' in vault and "another key" in vault


def test_a_door_that_applied_a_bundle_after_rejecting_one_is_not_shown_as_rejecting(make_station):
    station = make_station(connected=False)
    no = _event("gate", 1, "roster_rejected", {"reason": "expired", "message": "old"}, GENESIS_HASH)
    ok = _event("gate", 2, "roster_applied", {"version": 1700000001, "count": 1}, no["hash"])
    _archive(station, "gate", [no, ok], 1700000001)
    page = logged_in(station, "ada").get("/roster").text
    assert re.search(r'data-door="gate" data-roster-version="1700000001" data-current="false" '
                     r'data-rejected="false"', page)

