"""A door command from the page and the door's answer, on both archives: real Mosquitto, a real door
link, `accessctl station serve` as a child process (the SQLite monitor or the PostgreSQL ingest
holds the MQTT connection the command goes out on and the answer comes back on)."""

from __future__ import annotations

import json
import time

import pytest

from tests.fixtures.station import Http, PublishingDoor
from tests.system.test_station_pg import pg_station  # noqa: F401  (a fixture)

SITE, DOOR = "hn-archive-1", "scan-room"
CMD = f"accessctl/{SITE}/+/cmd"


@pytest.fixture
def door(mosquitto_broker, tmp_path):
    d = PublishingDoor(mosquitto_broker, tmp_path)
    d.link.publish_status({"door": "closed", "lock": "locked", "lockdown": False, "occupancy": 0, "version": "test"})
    yield d
    d.close()


@pytest.fixture(params=["sqlite", "postgres"])
def station(request, mosquitto_broker):
    if request.param == "postgres":
        return request.getfixturevalue("pg_station")
    return request.getfixturevalue("start_station")(mosquitto_broker)


def operator(station) -> Http:
    c = Http(station.url)
    assert c.login("olga").status == 303
    return c


def answer(c: Http, id: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = c.get(f"/api/commands/{id}").json()
        if got["answered"] or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_the_doors_answer_to_a_lockdown_reaches_the_page(station, door, mosquitto_broker):
    commands = mosquitto_broker.connect()
    commands.subscribe(CMD)
    c = operator(station)
    deadline = time.monotonic() + 10
    while not c.get("/api/doors").json()["doors"] and time.monotonic() < deadline:  # the door's status archived
        time.sleep(0.1)
    sent = c.post(f"/api/doors/{SITE}/{DOOR}/lockdown", {"csrf": c.csrf()}).json()
    assert c.get(f"/api/commands/{sent['id']}").json()["answered"] is False
    (msg,) = commands.wait_for_messages(1, CMD)
    assert json.loads(msg.payload)["id"] == sent["id"]
    door.link.command_result("station-somebody-else", True, None)  # not this page's command: ignored
    door.link.command_result(sent["id"], False, "already in lockdown")
    assert answer(c, sent["id"]) == {"id": sent["id"], "site": SITE, "door": DOOR, "action": "lockdown",
                                     "answered": True, "ok": False, "error": "already in lockdown"}
    assert c.get("/api/commands/station-somebody-else").status == 404


def test_a_station_with_its_signing_key_sends_the_page_lockdown_signed_for_that_door(start_station, door,
                                                                                     mosquitto_broker, tmp_path):
    from datetime import datetime

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from firmware_py.link.signed_commands import open_command
    from tests.fixtures.roster_bundle import write_keys

    key = Ed25519PrivateKey.generate()
    private, _, _ = write_keys(tmp_path / "keys", key)
    station = start_station(mosquitto_broker, signing_key=private)
    commands = mosquitto_broker.connect()
    commands.subscribe(CMD)
    c = operator(station)
    deadline = time.monotonic() + 10
    while not c.get("/api/doors").json()["doors"] and time.monotonic() < deadline:
        time.sleep(0.1)
    sent = c.post(f"/api/doors/{SITE}/{DOOR}/lockdown", {"csrf": c.csrf()}).json()
    (msg,) = commands.wait_for_messages(1, CMD)
    now = datetime.now().astimezone()
    opened = open_command(msg.payload, key.public_key(), site=SITE, door=DOOR, now=now)
    assert (opened.error, opened.action, opened.id) == (None, "lockdown", sent["id"])
    assert "signed for door" in open_command(msg.payload, key.public_key(), site=SITE, door="vault", now=now).error


def test_a_door_with_the_station_key_runs_the_lockdown_the_page_signed_for_it(start_station, mosquitto_broker,
                                                                                tmp_path):
    from dataclasses import replace
    from datetime import datetime

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from firmware_py.config.schema import RosterKeysConfig
    from firmware_py.core.clock import SimulatedClock
    from firmware_py.service.bootstrap import build_service
    from simulator.crash.link_child import account_config
    from simulator.fleet_door import DarkIndicators, RelayLock
    from tests.fixtures.constants import TZ
    from tests.fixtures.roster_bundle import write_keys
    from tests.fixtures.waiting import wait_until

    private, public, site = write_keys(tmp_path / "keys", Ed25519PrivateKey.generate())
    cfg = account_config(mosquitto_broker, mosquitto_broker.door(DOOR), tmp_path / "door" / "events.db")
    door = build_service(replace(cfg, roster=RosterKeysConfig(public, site)), clock=SimulatedClock(datetime.now(TZ)),
                         hardware=lambda post: (RelayLock(), DarkIndicators(), []))
    door.start()
    try:
        station = start_station(mosquitto_broker, signing_key=private)
        c = operator(station)
        wait_until(lambda: c.get("/api/doors").json()["doors"], 10, "the door's status archived")
        sent = c.post(f"/api/doors/{SITE}/{DOOR}/lockdown", {"csrf": c.csrf()}).json()

        def answered() -> bool:
            while not door.inputs.empty():  # the door's loop, run here: its queued inputs to the controller
                door.controller.handle(door.inputs.get_nowait())
            return c.get(f"/api/commands/{sent['id']}").json()["answered"]

        wait_until(answered, 10, "the door's answer on the page")
        assert c.get(f"/api/commands/{sent['id']}").json()["ok"] is True
        assert door.controller.status()["lockdown"]
    finally:
        door.request_stop()
        door.shutdown()
