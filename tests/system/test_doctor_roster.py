"""`accessctl doctor`'s roster check against a real Mosquitto: the manifest retained for the site, read
as the door's own account, verified with the door's station public key (firmware_py/doctor/roster_keys.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.config.schema import RosterKeysConfig
from firmware_py.core.clock import SimulatedClock
from firmware_py.doctor.probes import Probes
from firmware_py.doctor.report import FAIL, PASS
from firmware_py.doctor.roster_keys import check_roster_bundle
from firmware_py.service.bootstrap import build_service
from simulator.crash.link_child import account_config
from simulator.fleet_door import DarkIndicators, RelayLock
from tests.fixtures.constants import TZ
from tests.fixtures.roster_bundle import person, signed, write_keys
from tests.fixtures.waiting import wait_until

SITE, DOOR = "hn-archive-1", "scan-room"
ROSTER = f"accessctl/{SITE}/roster"


def publish(supervisor, bundle) -> None:
    for i, chunk in enumerate(bundle.chunks):
        supervisor.publish(f"{ROSTER}/chunks/{i}", chunk, retain=True)
    supervisor.publish(ROSTER, bundle.manifest, retain=True)


def test_the_doctor_verifies_the_applied_roster_at_the_broker_and_fails_once_the_station_signs_with_a_new_key(
        tmp_path, mosquitto_broker):
    key = Ed25519PrivateKey.generate()
    _, public, site = write_keys(tmp_path / "keys", key)
    cfg = account_config(mosquitto_broker, mosquitto_broker.door(DOOR), tmp_path / "door" / "events.db")
    cfg = replace(cfg, roster=RosterKeysConfig(public, site))
    supervisor = mosquitto_broker.connect()
    supervisor.subscribe(f"accessctl/{SITE}/{DOOR}/events/system/roster_applied")
    publish(supervisor, signed(tmp_path, [person(1)], key=key, version=7))

    door = build_service(cfg, clock=SimulatedClock(datetime(2026, 11, 23, 9, 0, tzinfo=TZ)),
                         hardware=lambda post: (RelayLock(), DarkIndicators(), []))
    door.start()
    try:
        wait_until(lambda: supervisor.received(f"accessctl/{SITE}/{DOOR}/events/system/roster_applied"), 20,
                   "roster_applied")
        [running] = check_roster_bundle(Probes(service_user=None), cfg)
        assert running.status == PASS and "the door service is running" in running.message
    finally:
        door.request_stop()
        door.shutdown()
    applied = json.loads(supervisor.received(f"accessctl/{SITE}/{DOOR}/events/system/roster_applied")[0].payload)
    assert applied["detail"]["version"] == 7

    [stopped] = check_roster_bundle(Probes(service_user=None), cfg)
    assert stopped.status == PASS
    assert stopped.message == f"the applied roster version 7 verifies with the station's public key (its manifest " \
                              f"retained on {ROSTER})"

    publish(supervisor, signed(tmp_path, [person(1), person(2)], key=Ed25519PrivateKey.generate(), version=8))
    [rotated] = check_roster_bundle(Probes(service_user=None), cfg)
    assert rotated.status == FAIL and "does not verify with [roster] station_public_key" in rotated.message
    assert "keeps its roster (version 7)" in rotated.message
