"""The station's ingest (the monitor it runs) against a real Mosquitto: what arrives retained.

Mosquitto cannot forbid a door's account to publish an event retained, so an event that arrives
with the retain flag is a stale or forged copy kept by the broker: it is refused into
``ingest_rejects`` with the reason, with an integrity warning (the PostgreSQL station refuses it
the same way: tests/system/test_ingest_hostile.py). A door's retained status, on the other hand,
is exactly how the station learns, at its first subscription, that a door published events it
never received: it asks for them at once.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from firmware_py.station.ingest.ingest import Ingest
from simulator.lab_broker import SITE, door_username
from tests.fixtures.station import free_port
from tests.system.test_monitor import make_events, supervisor_settings

DOOR = "scan-room"


@pytest.fixture
def start_ingest(mosquitto_broker, tmp_path):
    """The ingest as the station runs it (every site, no beacon); its lines collect in ``.lines``."""
    monitors = []

    def start(settings=None, **kwargs):
        lines = []
        m = Ingest(settings or supervisor_settings(mosquitto_broker), tmp_path / "archive.db", out=lines.append,
                    beacon_interval_s=None, **kwargs)
        m.lines = lines
        monitors.append(m)
        return m.start()

    yield start
    for m in monitors:
        m.close()


@pytest.fixture
def door(mosquitto_broker):
    client = mosquitto_broker.connect(door_username(DOOR))
    client.subscribe(mosquitto_broker.topic(DOOR, "cmd"))
    return client


def publish(door, broker, events, *, retain=False):
    for e in events:
        rc = door.publish(broker.topic(DOOR, "events", e["category"], e["type"]), json.dumps(e, ensure_ascii=False),
                          retain=retain)
        assert not rc.is_failure, rc


def status(last_seq, queued=0, online=True):
    return json.dumps({"online": online, "door": "closed", "lock": "locked", "lockdown": False, "occupancy": 0,
                       "last_seq": last_seq, "queued": queued, "version": "test"})


def test_an_event_that_arrives_retained_is_refused_and_raises_an_integrity_warning(start_ingest, door,
                                                                                     mosquitto_broker):
    forged = make_events([1])
    publish(door, mosquitto_broker, forged, retain=True)  # kept by the broker for every new subscriber
    m = start_ingest()
    assert m.wait_until(lambda: m.archive.rejects(), 10)
    (r,) = m.archive.rejects()
    assert (r.site, r.door) == (SITE, DOOR) and r.reason.startswith("an event arrived retained")
    assert m.archive.count() == 0
    assert any("INTEGRITY WARNING" in line and "retained" in line for line in m.lines)


def test_events_published_normally_are_still_archived_beside_a_retained_one(start_ingest, door, mosquitto_broker):
    events = make_events(range(1, 3))
    publish(door, mosquitto_broker, events[:1], retain=True)
    m = start_ingest()
    publish(door, mosquitto_broker, events)
    assert m.wait_for_seq(SITE, DOOR, 2, contiguous=True)
    assert m.events(SITE, DOOR) == events and len(m.archive.rejects()) == 1


def test_a_retained_status_announcing_events_never_received_gets_a_replay_request_at_once(start_ingest, door,
                                                                                         mosquitto_broker):
    events = make_events(range(1, 4))
    publish(door, mosquitto_broker, events)  # before the station's first subscription: nobody queues them
    door.publish(mosquitto_broker.topic(DOOR, "status"), status(3), retain=True)
    m = start_ingest(replay_interval_s=60)  # far longer than the wait below: only an immediate request counts
    (cmd,) = door.wait_for_messages(1, mosquitto_broker.topic(DOOR, "cmd"), timeout=5)
    request = json.loads(cmd.payload)
    assert request["action"] == "replay" and request["from_seq"] == 1
    publish(door, mosquitto_broker, events)  # the door replays
    assert m.wait_for_seq(SITE, DOOR, 3, contiguous=True)
    assert m.events(SITE, DOOR) == events


@pytest.mark.parametrize("announced", [
    status(0),                  # nothing published yet
    status(3, queued=3),        # the events are still on their way from the door's outbox
    status(3, online=False),    # the door is offline: it cannot replay
])
def test_a_retained_status_asks_for_nothing_when_nothing_is_missing_or_it_cannot_be_sent(
        start_ingest, door, mosquitto_broker, announced):
    door.publish(mosquitto_broker.topic(DOOR, "status"), announced, retain=True)
    m = start_ingest(replay_interval_s=60)
    assert m.wait_until(lambda: m.status(SITE, DOOR) is not None, 5)
    with pytest.raises(TimeoutError):
        door.wait_for_messages(1, mosquitto_broker.topic(DOOR, "cmd"), timeout=1.5)


def test_an_event_published_retained_while_the_station_listens_is_refused_as_well(start_ingest, door,
                                                                                  mosquitto_broker):
    m = start_ingest()
    events = make_events(range(1, 3))
    publish(door, mosquitto_broker, events[:1], retain=True)
    publish(door, mosquitto_broker, events[1:])
    assert m.wait_for_seq(SITE, DOOR, 2)
    assert m.wait_until(lambda: m.archive.rejects(), 10)
    assert [e["seq"] for e in m.events(SITE, DOOR)] == [2]


def test_with_its_first_node_gone_the_station_reads_through_the_next_one(start_ingest, door, mosquitto_broker):
    gone = f"mqtts://127.0.0.1:{free_port()}"  # nothing listens there: a node that is down
    settings = replace(supervisor_settings(mosquitto_broker), url=gone, fallback_urls=(mosquitto_broker.url,))
    m = start_ingest(settings)  # raises unless it subscribed within its timeout
    events = make_events(range(1, 3))
    publish(door, mosquitto_broker, events)
    assert m.wait_for_seq(SITE, DOOR, 2, contiguous=True)
    assert m.events(SITE, DOOR) == events
