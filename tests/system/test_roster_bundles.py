"""The station's signed roster reaching a door over a real Mosquitto (DESIGN.md "Roster bundles").

`accessctl station roster publish` runs as a child process with a supervisor account; the door is
the real service (controller, store, MQTT link with its roster receiver) built by the composition
root on the lab broker's door account, with a relay and indicators that only remember their state.
Every payload the supervisor received is scanned for a full resident ID number at teardown.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.config.schema import RosterKeysConfig, load_config
from firmware_py.core import idnumber
from firmware_py.core.clock import SimulatedClock
from firmware_py.core.inputs import BadgeRead
from firmware_py.link.signed_commands import sign_command
from firmware_py.service.bootstrap import build_service
from firmware_py.storage import roster
from simulator.crash.link_child import account_config
from simulator.fleet_door import DarkIndicators, RelayLock
from tests.fixtures.constants import REPO, TZ
from tests.fixtures.roster_bundle import SITE_KEY, person, person_number, signed, write_csv, write_keys
from tests.fixtures.waiting import wait_until

FULL_ID_NUMBER = re.compile(rb"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
SITE, DOOR = "hn-archive-1", "scan-room"
SYSTEM_EVENTS = f"accessctl/{SITE}/{DOOR}/events/system/#"
STATUS = f"accessctl/{SITE}/{DOOR}/status"
ROSTER = f"accessctl/{SITE}/roster"
PUBLISHER = "supervisor-2"  # the station's own account: one connection per account at the venue broker


@pytest.fixture
def supervisor(mosquitto_broker):
    client = mosquitto_broker.connect()
    client.subscribe("accessctl/#")
    yield client
    leaked = [m.topic for m in client.received() if FULL_ID_NUMBER.search(m.payload)]
    assert leaked == [], f"full resident ID numbers published on {leaked}"


@pytest.fixture
def keys(tmp_path):
    key = Ed25519PrivateKey.generate()
    private, public, site = write_keys(tmp_path / "keys", key)
    return key, private, public, site


@pytest.fixture
def station_config(tmp_path, mosquitto_broker, keys):
    _, private, _, site = keys
    account = mosquitto_broker.accounts[PUBLISHER]
    path = tmp_path / "station.toml"
    path.write_text(f"""[broker]
url = "{mosquitto_broker.url}"
ca_file = "{mosquitto_broker.ca_file}"
cert_file = "{account.cert_file}"
key_file = "{account.key_file}"
client_id = "{PUBLISHER}"

[archive]
path = "{tmp_path / 'archive.db'}"

[roster]
signing_key = "{private}"
site_key = "{site}"
site = "{SITE}"

[roster.schedule.office]
mon = ["08:30-12:00", "14:00-17:30"]

[roster.schedule.extended]
mon = ["07:30-19:00"]
""")
    return path


@pytest.fixture
def door(tmp_path, mosquitto_broker, keys):
    """The door service, started; its inputs (link changes) are handled by ``door.pump()``."""
    _, _, public, site = keys
    cfg = account_config(mosquitto_broker, mosquitto_broker.door(DOOR), tmp_path / "door" / "events.db")
    cfg = replace(cfg, roster=RosterKeysConfig(public, site))
    service = build_service(cfg, clock=SimulatedClock(datetime(2026, 11, 23, 9, 0, tzinfo=TZ)),
                            hardware=lambda post: (RelayLock(), DarkIndicators(), []))
    service.start()
    yield service
    service.request_stop()
    service.shutdown()


def publish(config, csv, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "firmware_py.cli.main", "station", "roster", "publish", str(csv),
                           "--config", str(config), *args], capture_output=True, text=True, cwd=REPO, timeout=60)


def events(client, type_: str) -> list[dict]:
    return [json.loads(m.payload) for m in client.received(SYSTEM_EVENTS) if json.loads(m.payload)["type"] == type_]


def wait_for_event(client, type_: str, count: int = 1, timeout: float = 20.0) -> dict:
    wait_until(lambda: len(events(client, type_)) >= count, timeout, f"{count} {type_} event(s)")
    return events(client, type_)[count - 1]


def persons(service) -> list[str]:
    return [p.person_id for p in roster.list_persons(service.db)]


def applied_version(client) -> int:
    result = events(client, "roster_applied")
    return result[-1]["detail"]["version"]


# ---------------------------------------------------------------- applied


def test_a_published_roster_is_applied_by_the_door_which_says_so_and_matches_its_cards(
        tmp_path, supervisor, door, station_config):
    result = publish(station_config, write_csv(tmp_path / "roster.csv", person(1), person(2)))
    assert result.returncode == 0, result.stderr
    version = int(re.search(r"published roster version (\d+) for site hn-archive-1: 2 persons", result.stdout)[1])

    applied = wait_for_event(supervisor, "roster_applied")
    assert applied["detail"]["version"] == version and applied["detail"]["added"] == 2
    assert persons(door) == ["P00001", "P00002"]
    controller = door.controller
    match = controller.roster.by_id_hash(idnumber.id_hash(controller.secret, person_number(2)))
    assert match.person_id == "P00002"
    wait_until(lambda: any(json.loads(m.payload).get("roster_version") == version
                           for m in supervisor.received(STATUS)), 10, "a status with the applied version")


def test_a_csv_with_a_bad_row_publishes_nothing_and_names_the_line(tmp_path, supervisor, station_config):
    result = publish(station_config, write_csv(tmp_path / "roster.csv", person(1), person(2).replace("staff", "boss")))
    assert result.returncode == 2
    assert "line 3, role: 'boss' is not allowed" in result.stderr
    assert supervisor.received(ROSTER) == []


# ---------------------------------------------------------------- refused, roster unchanged


def test_a_tampered_bundle_is_rejected_as_a_bad_signature_and_changes_nothing(tmp_path, supervisor, door,
                                                                              station_config, keys):
    assert publish(station_config, write_csv(tmp_path / "roster.csv", person(1))).returncode == 0
    wait_for_event(supervisor, "roster_applied")
    bundle = signed(tmp_path, [person(1), person(7)], key=keys[0], version=applied_version(supervisor) + 1)
    tampered = bytearray(bundle.chunks[0])
    tampered[-3] ^= 0x01
    supervisor.publish(f"{ROSTER}/chunks/0", bytes(tampered), retain=True)
    supervisor.publish(ROSTER, bundle.manifest, retain=True)

    rejected = wait_for_event(supervisor, "roster_rejected")
    assert rejected["detail"]["reason"] == "bad_signature"
    assert persons(door) == ["P00001"]


def test_an_older_version_is_rejected_and_changes_nothing(tmp_path, supervisor, door, station_config, keys):
    assert publish(station_config, write_csv(tmp_path / "roster.csv", person(1))).returncode == 0
    wait_for_event(supervisor, "roster_applied")
    old = signed(tmp_path, [person(3)], key=keys[0], version=applied_version(supervisor) - 1)
    supervisor.publish(f"{ROSTER}/chunks/0", old.chunks[0], retain=True)
    supervisor.publish(ROSTER, old.manifest, retain=True)

    rejected = wait_for_event(supervisor, "roster_rejected")
    assert rejected["detail"]["reason"] == "old_version"
    assert "is not newer than the applied version" in rejected["detail"]["message"]
    assert persons(door) == ["P00001"]


def test_a_bundle_signed_by_another_key_is_rejected(tmp_path, supervisor, door):
    forged = signed(tmp_path, [person(5)], key=Ed25519PrivateKey.generate(), version=10 ** 10)
    supervisor.publish(f"{ROSTER}/chunks/0", forged.chunks[0], retain=True)
    supervisor.publish(ROSTER, forged.manifest, retain=True)

    assert wait_for_event(supervisor, "roster_rejected")["detail"]["reason"] == "bad_signature"
    assert persons(door) == []


def test_a_door_that_connects_later_takes_the_retained_bundle_in_several_chunks(tmp_path, supervisor, keys,
                                                                               mosquitto_broker):
    bundle = signed(tmp_path, [person(i) for i in range(300)], key=keys[0], version=5, chunk_bytes=4096,
                    site_key=SITE_KEY)
    assert len(bundle.chunks) > 2
    for i, chunk in enumerate(bundle.chunks):
        supervisor.publish(f"{ROSTER}/chunks/{i}", chunk, retain=True)
    supervisor.publish(ROSTER, bundle.manifest, retain=True)
    _, _, public, site = keys
    cfg = account_config(mosquitto_broker, mosquitto_broker.door(DOOR), tmp_path / "late" / "events.db")
    service = build_service(replace(cfg, roster=RosterKeysConfig(public, site)),
                            clock=SimulatedClock(datetime(2026, 11, 23, 9, 0, tzinfo=TZ)),
                            hardware=lambda post: (RelayLock(), DarkIndicators(), []))
    service.start()
    try:
        applied = wait_for_event(supervisor, "roster_applied")
        assert applied["detail"]["count"] == 300 and len(persons(service)) == 300
    finally:
        service.request_stop()
        service.shutdown()


def test_without_a_broker_a_restarted_door_keeps_its_last_roster_and_version(tmp_path, supervisor, door,
                                                                              station_config, mosquitto_broker):
    assert publish(station_config, write_csv(tmp_path / "roster.csv", person(1), person(2))).returncode == 0
    version = wait_for_event(supervisor, "roster_applied")["detail"]["version"]
    mosquitto_broker.stop()
    cfg = door.cfg
    door.request_stop()
    door.shutdown()

    again = build_service(cfg, clock=SimulatedClock(datetime(2026, 11, 23, 10, 0, tzinfo=TZ)),
                          hardware=lambda post: (RelayLock(), DarkIndicators(), []))
    again.start()
    try:
        assert persons(again) == ["P00001", "P00002"]
        assert again.link.roster.version == version
        match = again.controller.roster.by_id_hash(idnumber.id_hash(again.controller.secret, person_number(1)))
        assert match.person_id == "P00001"
    finally:
        again.request_stop()
        again.shutdown()


# ---------------------------------------------------------------- hours from the centre


def test_a_published_bundle_changes_the_hours_the_door_decides_on(tmp_path, supervisor, door, station_config):
    controller, badge = door.controller, f"{0x04000001:08X}"
    assert publish(station_config, write_csv(tmp_path / "roster.csv", person(1))).returncode == 0
    assert wait_for_event(supervisor, "roster_applied")["detail"]["hours"] == "config"
    controller.handle(BadgeRead("outside", badge))  # Monday 09:00: the door's own office hours let P00001 in
    assert controller.state == "screening"
    controller.clock.advance(600)  # nobody walks through: the grant lapses
    controller.tick()

    hours = station_config.with_name("station-hours.toml")  # the centre moves the office group to Tuesdays
    hours.write_text(station_config.read_text().replace(
        '[roster.schedule.office]\nmon = ["08:30-12:00", "14:00-17:30"]',
        '[roster.calendar]\nholidays = [2026-12-25]\n\n[roster.schedule.office]\ntue = ["08:30-17:30"]'))
    result = publish(hours, write_csv(tmp_path / "roster.csv", person(1), person(2, group="extended")))
    assert result.returncode == 0, result.stderr
    assert "hours: the doors take these: 2 schedule group(s) (extended, office), 1 holiday(s)" in result.stdout
    assert wait_for_event(supervisor, "roster_applied", 2)["detail"]["hours"] == "bundle"

    controller.handle(BadgeRead("outside", badge))
    topic = f"accessctl/{SITE}/{DOOR}/events/access/access_denied"
    wait_until(lambda: len(supervisor.received(topic)) >= 2, 10, "the second denial")
    denials = [json.loads(m.payload) for m in supervisor.received(topic)]
    assert [(d["person"]["person_id"], d["reason"]) for d in denials] == [
        ("P00001", "screening_timeout"), ("P00001", "non_working_day")]


# ---------------------------------------------------------------- signed commands


def pump(service) -> None:
    """Hand the door's queued inputs (commands, link changes) to its controller, as its loop does."""
    while not service.inputs.empty():
        service.controller.handle(service.inputs.get_nowait())


CMD, RESULTS = f"accessctl/{SITE}/{DOOR}/cmd", f"accessctl/{SITE}/{DOOR}/cmd/result"
AUDITS = f"accessctl/{SITE}/{DOOR}/events/system/command"


@pytest.fixture
def keyed_door(tmp_path, mosquitto_broker, keys):
    """A door with the station's keys (so it runs only signed commands), its clock on real time, connected."""
    _, _, public, site = keys
    cfg = account_config(mosquitto_broker, mosquitto_broker.door(DOOR), tmp_path / "keyed" / "events.db")
    service = build_service(replace(cfg, roster=RosterKeysConfig(public, site)), clock=SimulatedClock(datetime.now(TZ)),
                            hardware=lambda post: (RelayLock(), DarkIndicators(), []))
    service.start()
    wait_until(lambda: service.link.connected, 10, "the door's link")
    time.sleep(0.3)  # its subscriptions are made right after the connection
    yield service
    service.request_stop()
    service.shutdown()


def answers(supervisor, service, count: int) -> list[dict]:
    """The door's first ``count`` command results (its queued commands handed to the controller meanwhile)."""
    def arrived() -> bool:
        pump(service)
        return len(supervisor.received(RESULTS)) >= count

    wait_until(arrived, 10, f"{count} command results")
    return [json.loads(m.payload) for m in supervisor.received(RESULTS)]


def audits(supervisor, count: int) -> list[dict]:
    wait_until(lambda: len(supervisor.received(AUDITS)) >= count, 10, f"{count} audited commands")
    return [json.loads(m.payload)["detail"] for m in supervisor.received(AUDITS)]


def signed_for(key, door_service, command: dict, *, door: str = DOOR, ago_s: float = 0.0) -> bytes:
    return sign_command(key, command, site=SITE, door=door,
                        issued_at=door_service.controller.clock.now() - timedelta(seconds=ago_s))


def test_a_door_with_the_station_key_refuses_unsigned_and_badly_signed_lockdowns_and_runs_a_signed_one(
        supervisor, keyed_door, keys):
    key = keys[0]
    supervisor.publish(CMD, json.dumps({"id": "plain-1", "action": "lockdown"}))
    forged = json.loads(signed_for(Ed25519PrivateKey.generate(), keyed_door, {"id": "forged-1", "action": "lockdown"}))
    supervisor.publish(CMD, json.dumps(forged))
    changed = json.loads(signed_for(key, keyed_door, {"id": "changed-1", "action": "release_lockdown"}))
    changed["action"] = "lockdown"  # the station signed a release; someone on the way made it a lockdown
    supervisor.publish(CMD, json.dumps(changed))

    refused = answers(supervisor, keyed_door, 3)
    assert [(a["id"], a["ok"]) for a in refused] == [("plain-1", False), ("forged-1", False), ("changed-1", False)]
    assert refused[0]["error"].startswith("an unsigned command is refused; this door runs only commands signed by")
    assert "signature does not verify with the station's public key" in refused[1]["error"]
    assert "signature does not verify with the station's public key" in refused[2]["error"]
    assert not keyed_door.controller.status()["lockdown"]
    audited = audits(supervisor, 3)
    assert [(a["id"], a["ok"], a["error"]) for a in audited] == [(a["id"], False, a["error"]) for a in refused]

    supervisor.publish(CMD, signed_for(key, keyed_door, {"id": "station-1", "action": "lockdown"}))
    assert answers(supervisor, keyed_door, 4)[3] == {"id": "station-1", "ok": True}
    assert keyed_door.controller.status()["lockdown"]
    assert audits(supervisor, 4)[3]["ok"] is True


def test_a_signed_command_for_another_door_replayed_or_too_old_is_refused_and_changes_nothing(
        supervisor, keyed_door, keys):
    key = keys[0]
    lockdown = signed_for(key, keyed_door, {"id": "station-1", "action": "lockdown"})
    supervisor.publish(CMD, lockdown)
    assert answers(supervisor, keyed_door, 1)[0] == {"id": "station-1", "ok": True}

    supervisor.publish(CMD, signed_for(key, keyed_door, {"id": "station-2", "action": "release_lockdown"},
                                       door="vault"))
    supervisor.publish(CMD, signed_for(key, keyed_door, {"id": "station-3", "action": "release_lockdown"},
                                       ago_s=3600))
    release = signed_for(key, keyed_door, {"id": "station-4", "action": "release_lockdown"})
    supervisor.publish(CMD, release)
    supervisor.publish(CMD, lockdown)  # the first lockdown, recorded and sent again after the release
    supervisor.publish(CMD, release)  # ... and the release once more

    result = answers(supervisor, keyed_door, 6)
    assert [(a["id"], a["ok"]) for a in result] == [("station-1", True), ("station-2", False), ("station-3", False),
                                                    ("station-4", True), ("station-1", False), ("station-4", False)]
    assert "signed for door 'hn-archive-1/vault', not hn-archive-1/scan-room" in result[1]["error"]
    assert "at most 600 s old" in result[2]["error"]
    assert result[4]["error"] == "command id 'station-1' already executed"
    assert result[5]["error"] == "command id 'station-4' already executed"
    assert not keyed_door.controller.status()["lockdown"]  # the replayed lockdown did not lock it again
    assert [a["ok"] for a in audits(supervisor, 6)] == [a["ok"] for a in result]


def test_a_forged_command_from_a_door_account_is_refused_by_the_broker_and_changes_nothing(
        supervisor, keyed_door, mosquitto_broker):
    other_door = mosquitto_broker.connect(mosquitto_broker.door("vault").username)
    unsigned = other_door.publish(CMD, json.dumps({"id": "door-forged-1", "action": "lockdown"}))
    self_signed = other_door.publish(CMD, signed_for(Ed25519PrivateKey.generate(), keyed_door,
                                                     {"id": "door-forged-2", "action": "lockdown"}))

    assert "Not authorized" in str(unsigned) and "Not authorized" in str(self_signed)
    supervisor.publish(CMD, json.dumps({"id": "after", "action": "status"}))  # an unsigned probe: it orders the queue
    [answer] = answers(supervisor, keyed_door, 1)
    assert answer["id"] == "after" and answer["ok"] is False  # the door saw only the supervisor's, refused unsigned
    assert not keyed_door.controller.status()["lockdown"]
    assert [a["id"] for a in audits(supervisor, 1)] == ["after"]


def test_a_door_whose_config_still_has_the_retired_switch_starts_and_logs_that_it_is_ignored(
        tmp_path, mosquitto_broker, keys, caplog):
    _, _, public, site = keys
    config = tmp_path / "venue.toml"
    config.write_text((REPO / "config" / "venue.example.toml").read_text(encoding="utf-8")
                      + f'\n[roster]\nstation_public_key = "{public}"\nsite_key = "{site}"\nsigned_commands = false\n',
                      encoding="utf-8")
    notes = load_config(config).roster.notes
    cfg = account_config(mosquitto_broker, mosquitto_broker.door(DOOR), tmp_path / "old" / "events.db")
    service = build_service(replace(cfg, roster=RosterKeysConfig(public, site, notes=notes)),
                            clock=SimulatedClock(datetime.now(TZ)),
                            hardware=lambda post: (RelayLock(), DarkIndicators(), []))
    try:
        service.start()
        wait_until(lambda: service.link.connected, 10, "the door's link")
    finally:
        service.request_stop()
        service.shutdown()
    warned = [r.getMessage() for r in caplog.records if "signed_commands" in r.getMessage()]
    assert warned == [f"{cfg.path}: [roster] signed_commands = false is no longer read and is ignored: a door with "
                      "station_public_key runs only commands the station signed for it, always. Remove the line"]
