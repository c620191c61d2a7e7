"""The station over an archive holding two chain epochs of one door (its database was reset the same day):
the register shows every event of the day, alarms are acknowledged per epoch, the chain result and the
door tile are the current epoch's, the live stream tells the epochs apart."""

from __future__ import annotations

import csv
import io
import sqlite3

import pytest

from firmware_py.station.archive.open import open_station_store
from tests.system.test_station_web import DOOR, SITE, archive, chained, logged_in, person, read_stream


@pytest.fixture
def web(station_web):
    station_web.add_user("olga", "operator")
    station_web.add_user("victor", "viewer")
    return station_web


@pytest.fixture
def two_epochs(web):
    """Epoch 1: #1 granted, #2 door forced, #3 passage (09:00–09:02); the door's database is reset;
    epoch 2: #1 granted, #2 door forced (10:00–10:01)."""
    archive(web, chained([("2026-11-23T09:00:00.000+08:00", "access_granted", "access", person("P001", "甲")),
                          ("2026-11-23T09:01:00.000+08:00", "door_forced", "alarm", {}),
                          ("2026-11-23T09:02:00.000+08:00", "passage", "access", person("P001", "甲"))]))
    archive(web, chained([("2026-11-23T10:00:00.000+08:00", "access_granted", "access", person("P002", "乙")),
                          ("2026-11-23T10:01:00.000+08:00", "door_forced", "alarm", {})]))
    assert [e.epoch for e in web.archive.epochs(SITE, DOOR)] == [1, 2]
    return web


def open_and_done(web):
    from firmware_py.station.web import alarms

    return ([(a.epoch, a.seq) for a in alarms.alarms(web.store, acknowledged=False)],
            [(a.epoch, a.seq, a.comment) for a in alarms.alarms(web.store, acknowledged=True)])


def test_the_register_shows_every_event_of_the_day_from_both_epochs_with_their_epoch(two_epochs):
    c = logged_in(two_epochs, "victor")
    rows = list(csv.DictReader(io.StringIO(c.get("/register.csv?date=2026-11-23").text)))
    assert [(r["epoch"], r["seq"], r["decision"]) for r in rows] == [
        ("1", "1", "access_granted"), ("1", "3", "passage"), ("2", "1", "access_granted")]
    page = c.get("/register?date=2026-11-23").text
    assert 'data-epoch="1" data-seq="1"' in page and 'data-epoch="2" data-seq="1"' in page


def test_acknowledging_the_new_epochs_alarm_leaves_the_same_seq_of_the_old_epoch_open(two_epochs):
    c = logged_in(two_epochs, "olga")
    r = c.post(f"/api/alarms/{SITE}/{DOOR}/2/acknowledge", {"epoch": "2", "comment": "checked the new one"},
               headers={"X-CSRF-Token": c.csrf()})
    assert r.status == 200
    assert open_and_done(two_epochs) == ([(1, 2)], [(2, 2, "checked the new one")])


def test_the_same_seq_of_each_epoch_is_acknowledged_once_each(two_epochs):
    c = logged_in(two_epochs, "olga")
    token = c.csrf()
    for epoch in ("1", "2"):
        assert c.post(f"/alarms/{SITE}/{DOOR}/2/acknowledge", {"epoch": epoch, "comment": f"e{epoch}",
                                                               "csrf": token}).status == 303
    assert c.post(f"/alarms/{SITE}/{DOOR}/2/acknowledge", {"epoch": "2", "comment": "again",
                                                           "csrf": token}).status == 409
    assert sorted(open_and_done(two_epochs)[1]) == [(1, 2, "e1"), (2, 2, "e2")]


def test_an_acknowledgement_without_an_epoch_is_for_the_doors_current_epoch(two_epochs):
    c = logged_in(two_epochs, "olga")
    assert c.post(f"/alarms/{SITE}/{DOOR}/2/acknowledge", {"comment": "ok", "csrf": c.csrf()}).status == 303
    assert open_and_done(two_epochs) == ([(1, 2)], [(2, 2, "ok")])


def test_the_alarm_queue_offers_each_epochs_alarm_with_its_epoch(two_epochs):
    page = logged_in(two_epochs, "olga").get("/alarms").text
    assert page.count('data-action="acknowledge"') == 2
    assert 'name="epoch" value="1"' in page and 'name="epoch" value="2"' in page
    assert 'data-epoch="1" data-seq="2"' in page and 'data-epoch="2" data-seq="2"' in page


def test_the_printable_register_shows_the_current_epochs_chain_result(two_epochs):
    page = logged_in(two_epochs, "victor").get("/register/print?date=2026-11-23").text
    assert 'data-chain-ok="true"' in page and "verified #1–#2" in page and "epoch 2" in page
    assert "missing" not in page


def test_the_door_tile_shows_the_current_epochs_last_event_and_chain(two_epochs):
    tiles = logged_in(two_epochs, "victor").get("/api/doors").json()["doors"]
    (tile,) = tiles
    assert tile["fields"]["last_event"].startswith("10:01:00 #2")
    assert tile["chain_ok"] and "verified #1–#2" in tile["fields"]["chain"]


def test_the_live_stream_carries_each_events_epoch(two_epochs):
    c = logged_in(two_epochs, "victor")
    got = read_stream(two_epochs, c, {}, 5)
    assert [(d["epoch"], d["seq"]) for _, d in got] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]
    page = c.get("/events").text
    assert 'data-epoch="2" data-seq="1"' in page


def test_acknowledgements_made_before_epochs_are_kept_as_epoch_1_and_stay_unchangeable(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE acknowledgements (site TEXT NOT NULL, door TEXT NOT NULL, seq INTEGER NOT NULL, by TEXT NOT NULL,
            at TEXT NOT NULL, comment TEXT NOT NULL, PRIMARY KEY (site, door, seq));
        CREATE TRIGGER acknowledgements_no_update BEFORE UPDATE ON acknowledgements
            BEGIN SELECT RAISE(ABORT, 'an acknowledgement is never changed'); END;
        CREATE TRIGGER acknowledgements_no_delete BEFORE DELETE ON acknowledgements
            BEGIN SELECT RAISE(ABORT, 'an acknowledgement is never deleted'); END;
        INSERT INTO acknowledgements VALUES ('hn-archive-1', 'scan-room', 7, 'olga', '2026-11-23T09:00:00+08:00', 'ok');
    """)
    conn.close()
    store = open_station_store(path)
    try:
        assert store.query("SELECT site, door, epoch, seq, by, comment FROM acknowledgements") == [
            (SITE, DOOR, 1, 7, "olga", "ok")]
        with pytest.raises(sqlite3.DatabaseError, match="never deleted"):
            store.query("DELETE FROM acknowledgements")
        with pytest.raises(sqlite3.DatabaseError, match="never changed"):
            store.query("UPDATE acknowledgements SET comment = 'x'")
    finally:
        store.close()
