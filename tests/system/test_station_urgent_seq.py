"""An urgent event ahead of its door's backlog, at the station (real Mosquitto; SQLite and PostgreSQL).

A door publishes its ``duress`` alarm ahead of the rest of its outbox (docs/contracts.md, the urgent
lane), so the station sees that seq before the ones below it. The backlog behind it is on its way:
the station must not take the early seq for lost events (no replay request, which would have the door
publish its whole backlog a second time), and once the backlog is in, the chain is whole and verified
with no integrity alarm. A hole that the backlog does not fill is still asked for.
"""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from firmware_py.core.events import event_hash
from firmware_py.station.archive.store_sqlite import SqliteStationStore
from firmware_py.station.ingest.ingest import Ingest
from simulator.lab_broker import SITE, door_username
from tests.fixtures.waiting import wait_until
from tests.system.test_monitor import DOOR, make_events, supervisor_settings

BACKLOG = 300  # events the door holds when the duress PIN is entered
INTERVAL_S = 0.5  # the station's replay interval in these tests


def duress_after(previous: dict) -> dict:
    """The door's duress alarm, chained after ``previous`` (as core/pin_entry.py stores it)."""
    e = {"seq": previous["seq"] + 1, "ts": "2026-11-23T10:00:00.000+08:00", "site": SITE, "door": DOOR,
         "category": "alarm", "type": "duress", "direction": "in",
         "person": {"person_id": "P001", "name": "测试员甲", "role": "staff"},
         "credential": {"kind": "badge", "masked": "****5678"}, "reason": None, "detail": {"reader": "in"},
         "prev_hash": previous["hash"]}
    e["hash"] = event_hash(e)
    return e


def a_door_with_a_backlog():
    """Events 1..BACKLOG, the duress alarm, and the grant that follows it: one hash chain."""
    backlog = make_events(range(1, BACKLOG + 1))
    alarm = duress_after(backlog[-1])
    (grant,) = make_events([alarm["seq"] + 1], prev=alarm["hash"], hour=10)
    return backlog, alarm, grant


@pytest.fixture
def door(mosquitto_broker):
    """The door's MQTT account, listening on its cmd topic for replay requests."""
    client = mosquitto_broker.connect(door_username(DOOR))
    client.subscribe(mosquitto_broker.topic(DOOR, "cmd"), qos=1)
    return client


def send(door, broker, *events):
    for e in events:
        info = door.publish(broker.topic(DOOR, "events", e["category"], e["type"]), json.dumps(e, ensure_ascii=False),
                            qos=1)
        assert not info.is_failure, info


def replay_requests(door, broker) -> list[dict]:
    return [c for c in (json.loads(m.payload) for m in door.received(broker.topic(DOOR, "cmd")))
            if c.get("action") == "replay"]


def pg_ingest(broker, url) -> Ingest:
    ingest = Ingest(supervisor_settings(broker), url, beacon_interval_s=0, replay_interval_s=INTERVAL_S)
    ingest.start()
    assert ingest.wait_connected(10)
    return ingest


@pytest.fixture
def monitor(mosquitto_broker, tmp_path):
    m = Ingest(supervisor_settings(mosquitto_broker), tmp_path / "archive.db", site=SITE, door=DOOR,
                out=lambda line: None, beacon_interval_s=None, replay_interval_s=INTERVAL_S)
    yield m.start()
    m.close()


# ---------------------------------------------------------------- SQLite


def test_a_duress_ahead_of_the_backlog_asks_for_no_replay_and_leaves_a_clean_chain(monitor, door,
                                                                                  mosquitto_broker, tmp_path):
    m = monitor
    backlog, alarm, grant = a_door_with_a_backlog()
    send(door, mosquitto_broker, *backlog[:100])
    assert m.wait_for_seq(SITE, DOOR, 100, contiguous=True)
    time.sleep(2 * INTERVAL_S)  # the door's sequence has been still: nothing hides an early seq
    send(door, mosquitto_broker, alarm)  # the urgent lane: ahead of the rest of the outbox
    assert m.wait_for_seq(SITE, DOOR, alarm["seq"])
    send(door, mosquitto_broker, *backlog[100:], grant)
    assert m.wait_for_seq(SITE, DOOR, grant["seq"], contiguous=True, timeout=20)
    time.sleep(3 * INTERVAL_S)
    assert replay_requests(door, mosquitto_broker) == []
    assert m.anomalies() == [] and m.archive.duplicates(SITE, DOOR) == 0
    assert [g.open for g in m.gaps(SITE, DOOR)] in ([], [False])  # a hole seen while the backlog came, closed
    assert [e["seq"] for e in m.events(SITE, DOOR)] == list(range(1, grant["seq"] + 1))
    store = SqliteStationStore(tmp_path / "archive.db")
    try:
        result = store.chains().check(SITE, DOOR)
    finally:
        store.conn.close()
    assert (result.ok, result.first, result.verified_to, result.waiting_for) == (True, 1, grant["seq"], None)


def test_a_duress_arriving_while_the_backlog_drains_asks_for_no_replay(monitor, door, mosquitto_broker):
    m = monitor
    backlog, alarm, grant = a_door_with_a_backlog()
    send(door, mosquitto_broker, *backlog[:150], alarm, *backlog[150:], grant)
    assert m.wait_for_seq(SITE, DOOR, grant["seq"], contiguous=True, timeout=20)
    time.sleep(3 * INTERVAL_S)
    assert replay_requests(door, mosquitto_broker) == []
    assert m.anomalies() == []


def test_a_hole_the_backlog_never_fills_is_still_asked_for(monitor, door, mosquitto_broker):
    m = monitor
    backlog, alarm, _ = a_door_with_a_backlog()
    send(door, mosquitto_broker, *backlog[:100])
    assert m.wait_for_seq(SITE, DOOR, 100, contiguous=True)
    sent = time.monotonic()
    send(door, mosquitto_broker, alarm)  # and then nothing: events 101.. were lost on the way
    request = wait_until(lambda: next(iter(replay_requests(door, mosquitto_broker)), None), timeout=10,
                         what="replay request")
    assert request["from_seq"] == 101
    assert time.monotonic() - sent >= INTERVAL_S  # after one interval for the backlog, not at once


# ---------------------------------------------------------------- PostgreSQL


def test_on_postgres_a_duress_ahead_of_the_backlog_asks_for_no_replay_and_the_chain_verifies(door, mosquitto_broker,
                                                                                             postgres_url):
    ingest = pg_ingest(mosquitto_broker, postgres_url)
    try:
        backlog, alarm, grant = a_door_with_a_backlog()
        send(door, mosquitto_broker, *backlog[:100])
        wait_until(lambda: ingest.verified(SITE, DOOR) == (100, None), what="the first 100 events verified")
        time.sleep(2 * INTERVAL_S)
        send(door, mosquitto_broker, alarm)
        wait_until(lambda: ingest.stored == 101, what="the duress alarm archived")
        send(door, mosquitto_broker, *backlog[100:], grant)
        wait_until(lambda: ingest.verified(SITE, DOOR) == (grant["seq"], None), timeout=20,
                   what="the whole chain verified")
        time.sleep(3 * INTERVAL_S)
        assert replay_requests(door, mosquitto_broker) == []
        assert ingest.replays_requested == 0
        assert (ingest.stored, ingest.duplicates, ingest.conflicts) == (grant["seq"], 0, 0)

        with psycopg.connect(postgres_url) as db:
            assert db.execute("SELECT kind, detail FROM anomalies").fetchall() == []
    finally:
        ingest.close()


def test_on_postgres_a_hole_the_backlog_never_fills_is_still_asked_for(door, mosquitto_broker, postgres_url):
    ingest = pg_ingest(mosquitto_broker, postgres_url)
    try:
        backlog, alarm, _ = a_door_with_a_backlog()
        send(door, mosquitto_broker, *backlog[:100])
        wait_until(lambda: ingest.verified(SITE, DOOR) == (100, None), what="the first 100 events verified")
        time.sleep(2 * INTERVAL_S)
        sent = time.monotonic()
        send(door, mosquitto_broker, alarm)
        request = wait_until(lambda: next(iter(replay_requests(door, mosquitto_broker)), None), timeout=10,
                             what="replay request")
        assert request["from_seq"] == 101
        assert time.monotonic() - sent >= INTERVAL_S
    finally:
        ingest.close()
