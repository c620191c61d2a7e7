"""The station's broker session on both archives' ingests, against a real Mosquitto (MQTT 5).

DESIGN.md: the station subscribes with a persistent session, so the broker keeps what arrives while
it is down. On MQTT 5 a session lives only as long as its Session Expiry Interval (0, the default,
ends it with the connection): what the doors publish meanwhile must come from the session when the
station is back, not only later by replay.
"""

from __future__ import annotations

import json

import pytest

from firmware_py.station.archive.sqlite import Archive
from firmware_py.station.ingest.ingest import Ingest
from simulator.lab_broker import SITE, door_username
from tests.fixtures.waiting import wait_until
from tests.system.test_monitor import make_events, supervisor_settings

DOOR = "scan-room"


class SqliteSide:
    def __init__(self, settings, tmp_path, postgres_url):
        self.settings, self.path = settings, tmp_path / "archive.db"
        self.ingest = None

    def start(self):
        self.ingest = Ingest(self.settings, self.path, site=None, door=None, beacon_interval_s=None,
                              replay_interval_s=3600)
        self.ingest.start()

    def stop(self):
        self.ingest.close()

    def archived(self) -> int:
        archive = Archive(self.path, read_only=True)
        try:
            return archive.count(SITE, DOOR)
        finally:
            archive.close()


class PgSide:
    def __init__(self, settings, tmp_path, postgres_url):
        self.settings, self.url = settings, postgres_url
        self.ingest = None

    def start(self):
        self.ingest = Ingest(self.settings, self.url, beacon_interval_s=0, replay_interval_s=3600)
        self.ingest.start()
        assert self.ingest.wait_connected(10)

    def stop(self):
        self.ingest.close()

    def archived(self) -> int:
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute("SELECT count(*) FROM events WHERE site = %s AND door = %s",
                                (SITE, DOOR)).fetchone()[0]


@pytest.fixture(params=[SqliteSide, PgSide], ids=["sqlite", "postgresql"])
def side(request, mosquitto_broker, tmp_path):
    postgres_url = request.getfixturevalue("postgres_url") if request.param is PgSide else None
    s = request.param(supervisor_settings(mosquitto_broker), tmp_path, postgres_url)
    yield s
    if s.ingest is not None:
        s.stop()


def test_what_doors_publish_while_the_station_is_away_comes_from_its_session(side, mosquitto_broker):
    assert side.settings.protocol == 5
    door = mosquitto_broker.connect(door_username(DOOR))  # answers no replay: only the session can bring them
    events = make_events(range(1, 21))
    side.start()
    door.publish(mosquitto_broker.topic(DOOR, "events", "access", "access_granted"), json.dumps(events[0]), qos=1)
    wait_until(lambda: side.archived() == 1, 15, "the first event archived")
    side.stop()

    for e in events[1:]:
        door.publish(mosquitto_broker.topic(DOOR, "events", "access", "access_granted"), json.dumps(e), qos=1)
    side.start()

    wait_until(lambda: side.archived() == 20, 15, "the 19 events published while the station was away")
