"""The PostgreSQL ingest against a real Mosquitto and a real PostgreSQL 15: what it subscribes to.

DESIGN.md: the station subscribes with a persistent session at QoS 1, and asks a door for a replay
when it sees a gap. The door answers every command on ``cmd/result``; a refused replay must reach
the station, or it keeps asking a door that said why it cannot.
"""

from __future__ import annotations

import json
import logging

import pytest

from firmware_py.station.ingest.ingest import Ingest
from simulator.lab_broker import SITE, door_username
from tests.fixtures.waiting import wait_until
from tests.system.test_monitor import make_events, supervisor_settings

DOOR = "scan-room"


@pytest.fixture
def ingest(mosquitto_broker, postgres_url):
    i = Ingest(supervisor_settings(mosquitto_broker), postgres_url, beacon_interval_s=0, replay_interval_s=0.2)
    i.start()
    assert i.wait_connected(10)
    yield i
    i.close()


@pytest.fixture
def door(mosquitto_broker):
    client = mosquitto_broker.connect(door_username(DOOR))
    client.subscribe(mosquitto_broker.topic(DOOR, "cmd"), qos=1)
    return client


def commands(door, broker) -> list[dict]:
    return [json.loads(m.payload) for m in door.received(broker.topic(DOOR, "cmd"))]


def test_a_door_refusing_a_replay_is_heard_and_logged(ingest, door, mosquitto_broker, caplog):
    events = make_events([1, 3])  # #2 never arrives: a gap
    for e in events:
        door.publish(mosquitto_broker.topic(DOOR, "events", e["category"], e["type"]), json.dumps(e), qos=1)
    request = wait_until(lambda: next((c for c in commands(door, mosquitto_broker) if c.get("action") == "replay"),
                                      None))
    assert request["from_seq"] == 2
    with caplog.at_level(logging.WARNING, logger="firmware_py.station.ingest.ingest"):
        door.publish(mosquitto_broker.topic(DOOR, "cmd", "result"),
                     json.dumps({"id": request["id"], "ok": False, "error": "events before #3 are no longer kept"}),
                     qos=1)
        result = wait_until(lambda: ingest.command_results.get(request["id"]))
    assert result["ok"] is False
    assert any(f"{SITE}/{DOOR} refused replay {request['id']}: events before #3 are no longer kept" in r.getMessage()
               for r in caplog.records)


def test_a_result_for_a_command_the_station_never_sent_is_ignored(ingest, door, mosquitto_broker):
    door.publish(mosquitto_broker.topic(DOOR, "cmd", "result"), json.dumps({"id": "forged", "ok": True}), qos=1)
    door.publish(mosquitto_broker.topic(DOOR, "cmd", "result"), b"\xff not json", qos=1)
    e = make_events([1])[0]
    door.publish(mosquitto_broker.topic(DOOR, "events", e["category"], e["type"]), json.dumps(e), qos=1)
    wait_until(lambda: ingest.stored == 1)  # the loop went on past both
    assert ingest.command_results == {}
