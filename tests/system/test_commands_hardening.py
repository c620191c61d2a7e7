"""Commands and other input from outside never end the door's loop (issue 11, "Hardening from outside").

An ID-number-looking value in any command field is masked in the audit, not refused by the
leak guard; an unexpected error in a handler is stored as a ``controller`` fault; retained and
repeated commands are refused and audited; NaN, Infinity and deep nesting are refused; the
sender's name is recorded as a claim (``claimed_by``). The loop tests run the real service loop
(:meth:`Service.run`) on the simulated door, and the MQTT ones a real Mosquitto.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_py.config.schema import load_config
from firmware_py.core import commands
from firmware_py.core.clock import SimulatedClock, SystemClock
from firmware_py.core.inputs import DeviceFault, DoorClosed, DoorOpened, RemoteCommand
from firmware_py.storage import executed_commands, local_commands
from firmware_py.storage.db import open_db, transaction
from simulator.crash.link_child import account_config
from simulator.door_sim import SimulatedDoor
from simulator.lab_broker import SUPERVISOR
from simulator.runner import prepare_database
from simulator.scenario import Scenario
from tests.fixtures.constants import PEOPLE, REPO, TZ
from tests.fixtures.waiting import wait_until

EXAMPLE_CONFIG = REPO / "config" / "venue.example.toml"

ID_NUMBER = "430102199001011238"  # a fictional person's number with a valid check digit
MASKED = "430102********1238"
SEQ_LIKE = 123456789012345678  # a legal from_seq that looks like an ID number
FULL_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])")


# ---------------------------------------------------------------------- helpers


def door_config(tmp_path: Path, cfg=None):
    if cfg is None:
        cfg = load_config(EXAMPLE_CONFIG)
        cfg = replace(cfg, mqtt=replace(cfg.mqtt, enabled=False))
    return replace(cfg, storage=replace(cfg.storage, database=tmp_path / "events.db",
                                        secret=tmp_path / "device.key"))


def make_door(tmp_path: Path, cfg=None, clock=None) -> SimulatedDoor:
    """A door on simulated hardware with the scenarios' roster (imported once per database)."""
    cfg = door_config(tmp_path, cfg)
    clock = clock or SimulatedClock(datetime(2026, 11, 23, 9, tzinfo=TZ))
    if not Path(cfg.storage.database).exists():
        prepare_database(cfg, Scenario(tmp_path / "s", "hardening", clock.now(), cfg.path, PEOPLE, ()), clock)
    door = SimulatedDoor(cfg, clock=clock, badges=False)
    door.answers = []
    door.controller.command_results.append(lambda *answer: door.answers.append(answer))
    return door


@pytest.fixture
def door(tmp_path):
    with make_door(tmp_path) as d:
        yield d


def send(door: SimulatedDoor, payload, claimed_by: str | None = None) -> dict:
    """Hand a raw command to the door as the MQTT link would; return its audit event."""
    if not isinstance(payload, bytes):
        payload = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    door.inputs.put(commands.parse(payload, claimed_by=claimed_by))
    door.pump()
    return audits(door)[-1]


def audits(door: SimulatedDoor) -> list[dict]:
    return [e for e in door.events() if e["type"] == "command"]


def stored_bodies(database: Path) -> list[str]:
    with sqlite3.connect(database) as c:
        return [body for (body,) in c.execute("SELECT body FROM events ORDER BY seq")]


def strict(body: str):
    def refuse(name):
        raise ValueError(f"{name} in a stored event")
    return json.loads(body, parse_constant=refuse)


@contextmanager
def service_loop(door: SimulatedDoor):
    """The door's real service loop (:meth:`Service.run`) in a thread; what ended it is kept in ``crashed``."""
    crashed: list[BaseException] = []

    def run():
        try:
            door.service.run()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            crashed.append(exc)

    thread = threading.Thread(target=run, name="service-loop", daemon=True)
    thread.crashed = crashed
    thread.start()
    wait_until(lambda: any(e["type"] == "controller_started" for e in door.events()), what="the loop to start")
    try:
        yield thread
    finally:
        door.service.request_stop()
        thread.join(20)
        door.close()


def loop_is_alive(thread) -> bool:
    return thread.is_alive() and not thread.crashed


def events_of(database: Path, type_: str) -> list[dict]:
    return [json.loads(b) for b in stored_bodies(database) if json.loads(b)["type"] == type_]


# ---------------------------------------------------------------------- 1. ID-number-looking values


def test_a_replay_from_a_seq_that_looks_like_an_id_number_is_carried_out_and_audited_masked(door):
    requested = []
    door.controller.replay_requests.append(requested.append)
    audit = send(door, {"id": "r1", "action": "replay", "from_seq": SEQ_LIKE})
    assert requested == [SEQ_LIKE]
    assert door.answers[-1] == ("r1", True, None)
    assert audit["detail"]["ok"] is True
    assert audit["detail"]["args"]["from_seq"] == "123456********5678"


@pytest.mark.parametrize("payload, claimed_by", [
    ({"id": ID_NUMBER, "action": "status"}, None),
    ({"id": "c1", "action": "lockdown", "by": ID_NUMBER}, None),
    ({"id": "c2", "action": "status", ID_NUMBER: 1}, None),
    ({"id": "c3", "action": "status", "note": f"card {ID_NUMBER}"}, None),
    ({"id": "c4", "action": "revoke", "person_id": "P001", "reason": f"lost card {ID_NUMBER}"}, None),
    ({"id": "c5", "action": "status"}, ID_NUMBER),
], ids=["id", "by", "unknown-field", "unknown-value", "revoke-reason", "claimed-by"])
def test_an_id_number_in_any_command_field_is_masked_in_the_audit_and_the_answer(door, payload, claimed_by):
    audit = send(door, payload, claimed_by)
    assert MASKED in json.dumps(audit, ensure_ascii=False)
    assert not any(FULL_ID_NUMBER.search(b) for b in stored_bodies(door.cfg.storage.database))
    assert not FULL_ID_NUMBER.search(json.dumps(door.answers[-1]))
    assert door.answers[-1][1] is audit["detail"]["ok"]


def test_a_lockdown_by_an_id_number_is_applied_with_the_claim_masked(door):
    audit = send(door, {"id": "c1", "action": "lockdown", "by": ID_NUMBER})
    assert door.controller.lockdown is True
    assert audit["detail"]["ok"] is True and audit["detail"]["claimed_by"] == MASKED
    assert [e for e in door.events() if e["type"] == "lockdown_on"][-1]["detail"]["by"] == MASKED


def test_the_service_loop_survives_commands_and_faults_carrying_id_numbers(tmp_path):
    door = make_door(tmp_path, clock=SystemClock(TZ))
    with service_loop(door) as loop:
        door.inputs.put(commands.parse(json.dumps({"id": "c1", "action": "status", "by": ID_NUMBER}).encode(),
                                       ID_NUMBER))
        door.inputs.put(DeviceFault("id_reader.outside", f"garbage from the reader: {ID_NUMBER}"))
        door.inputs.put(commands.parse(b'{"id": "after", "action": "status"}'))
        wait_until(lambda: any(e["detail"].get("id") == "after" for e in audits(door)) or loop.crashed,
                   what="the command after the bad inputs")
        assert loop_is_alive(loop), loop.crashed
    assert not any(FULL_ID_NUMBER.search(b) for b in stored_bodies(door.cfg.storage.database))


def test_an_unexpected_error_in_a_handler_is_stored_as_a_controller_fault_and_the_loop_goes_on(tmp_path):
    door = make_door(tmp_path, clock=SystemClock(TZ))
    with service_loop(door) as loop:
        # the reader's fault text trips the leak guard inside the fault handler: an unexpected error
        door.inputs.put(DeviceFault("id_reader.outside", f"garbage from the reader: {ID_NUMBER}"))
        fault = wait_until(lambda: [e for e in door.events() if e["type"] == "hardware_fault"
                                    and e["detail"]["device"] == "controller"] or loop.crashed,
                           what="the controller fault")
        assert loop_is_alive(loop), loop.crashed
        [event] = fault
        assert event["category"] == "alarm" and event["detail"]["state"] == "fault"
        assert "LeakError" in event["detail"]["fault"]
        door.inputs.put(commands.parse(b'{"id": "after", "action": "status"}'))
        wait_until(lambda: any(e["detail"].get("id") == "after" for e in audits(door)), what="the next command")
        assert loop_is_alive(loop)


def test_when_even_the_fault_cannot_be_stored_the_loop_logs_it_and_goes_on(tmp_path, caplog):
    door = make_door(tmp_path, clock=SystemClock(TZ))
    door.db.conn.execute("PRAGMA busy_timeout = 100")  # give up on a locked database quickly
    with caplog.at_level(logging.ERROR), service_loop(door) as loop:
        blocker = sqlite3.connect(door.cfg.storage.database, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database: every write fails
        try:
            door.inputs.put(DoorOpened())  # a forced door: its alarm cannot be stored
            # the store keeps what it cannot write and says so; the loop must go on either way
            wait_until(lambda: any(m in r.getMessage() for r in caplog.records
                                   for m in ("could not store", "door keeps running")) or loop.crashed,
                       what="the logged fault")
            time.sleep(1.5)  # the loop polls the local command queue (a write) about once a second
            assert loop_is_alive(loop), loop.crashed
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        door.inputs.put(DoorClosed())
        door.inputs.put(commands.parse(b'{"id": "after", "action": "status"}'))
        wait_until(lambda: any(e["detail"].get("id") == "after" for e in audits(door)), what="the next command")
        assert loop_is_alive(loop)


def test_a_timer_whose_event_cannot_be_stored_does_not_end_the_loop(door, caplog):
    door.db.conn.execute("PRAGMA busy_timeout = 100")
    door.open_door()  # forced (the lock was never released): the held-open timer starts
    blocker = sqlite3.connect(door.cfg.storage.database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with caplog.at_level(logging.ERROR):
            door.clock.advance(door.cfg.policy.door_held_open_s + 1)
            door.controller.tick()  # the held-open alarm cannot be stored, nor the fault
        assert any(m in r.getMessage() for r in caplog.records for m in ("could not store", "door keeps running"))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    door.close_door()
    assert door.events()[-1]["type"] in ("door_held_open", "hardware_fault")


def test_the_same_error_again_is_stored_once_a_minute_not_on_every_input(door):
    for _ in range(3):
        door.inputs.put(DeviceFault("id_reader.outside", f"garbage from the reader: {ID_NUMBER}"))
    door.pump()
    faults = [e for e in door.events() if e["type"] == "hardware_fault" and e["detail"]["device"] == "controller"]
    assert len(faults) == 1
    door.clock.advance(61)
    door.inputs.put(DeviceFault("id_reader.outside", f"garbage from the reader: {ID_NUMBER}"))
    door.pump()
    faults = [e for e in door.events() if e["type"] == "hardware_fault" and e["detail"]["device"] == "controller"]
    assert len(faults) == 2


def test_a_command_id_with_a_lone_surrogate_is_answered_and_audited(door):
    audit = send(door, b'{"id": "c\\ud800", "action": "status"}')
    assert audit["detail"]["id"] == "c?" and audit["detail"]["ok"] is True
    assert door.answers[-1] == ("c?", True, None)


def test_a_lockdown_from_the_command_line_by_an_id_number_does_not_end_the_service(tmp_path):
    door = make_door(tmp_path, clock=SystemClock(TZ))
    config = tmp_path / "venue.toml"
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8").replace("enabled = true", "enabled = false", 1)
    config.write_text(text.replace("/var/lib/accessctl/device.key", str(tmp_path / "device.key")), encoding="utf-8")
    with service_loop(door) as loop:
        result = subprocess.run([sys.executable, "-m", "firmware_py.cli.main", "lockdown", "on", "--by", ID_NUMBER,
                                 "--config", str(config), "--db", str(door.cfg.storage.database)],
                                capture_output=True, text=True, timeout=60, cwd=REPO)
        assert result.returncode == 0, result.stderr
        assert loop_is_alive(loop), loop.crashed
        assert door.controller.lockdown is True
        assert audits(door)[-1]["detail"]["claimed_by"] == f"local:{MASKED}"
    assert not any(FULL_ID_NUMBER.search(b) for b in stored_bodies(door.cfg.storage.database))
    with sqlite3.connect(door.cfg.storage.database) as c:  # nor was it queued in clear
        assert not [row for row in c.execute("SELECT payload, client FROM local_commands")
                    if FULL_ID_NUMBER.search(" ".join(row))]


# ---------------------------------------------------------------------- 2. retained and repeated commands


def test_a_command_id_runs_once_and_a_repeat_is_refused_and_audited(door):
    send(door, {"id": "x1", "action": "lockdown"})
    send(door, {"id": "x2", "action": "release_lockdown"})
    audit = send(door, {"id": "x1", "action": "lockdown"})  # delivered again
    assert door.controller.lockdown is False
    assert door.answers[-1] == ("x1", False, "command id 'x1' already executed")
    assert (audit["detail"]["ok"], audit["detail"]["error"]) == (False, "command id 'x1' already executed")


def test_executed_command_ids_are_remembered_across_a_restart(tmp_path):
    with make_door(tmp_path) as first:
        send(first, {"id": "x1", "action": "lockdown"})
        send(first, {"id": "x2", "action": "release_lockdown"})
    with make_door(tmp_path) as again:
        send(again, {"id": "x1", "action": "lockdown"})
        assert again.controller.lockdown is False
        assert again.answers[-1] == ("x1", False, "command id 'x1' already executed")


def test_checking_a_command_id_only_reads_so_a_writer_elsewhere_cannot_make_it_fail(tmp_path):
    """CI failed once: the check ran CREATE TABLE IF NOT EXISTS each time, which waits for the write
    lock; while the link's connection wrote, the command was lost ("database is locked")."""
    db = open_db(tmp_path / "events.db", busy_timeout_s=0.05)  # the service's short wait
    writer = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
    try:
        assert executed_commands.was_executed(db, "key-1") is False
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_the_door_remembers_the_last_ten_thousand_command_ids(tmp_path):
    db = open_db(tmp_path / "events.db")
    keys = [f"key-{i}" for i in range(executed_commands.REMEMBERED_IDS + 50)]
    with transaction(db):
        for key in keys:
            executed_commands.remember_executed(db, key)
    assert executed_commands.REMEMBERED_IDS == 10_000
    assert not executed_commands.was_executed(db, keys[49])
    assert executed_commands.was_executed(db, keys[50]) and executed_commands.was_executed(db, keys[-1])
    count = db.execute(f"SELECT count(*) FROM {executed_commands.EXECUTED_TABLE}").fetchone()[0]
    assert count == executed_commands.REMEMBERED_IDS


def test_an_executed_id_is_kept_as_a_keyed_hash_never_in_clear(door):
    send(door, {"id": ID_NUMBER, "action": "status"})
    with sqlite3.connect(door.cfg.storage.database) as c:
        rows = c.execute(f"SELECT * FROM {executed_commands.EXECUTED_TABLE}").fetchall()
    assert rows and not any(ID_NUMBER in str(row) for row in rows)
    assert door.answers[-1] == (MASKED, True, None)


@pytest.fixture
def mqtt_door(mosquitto_broker, tmp_path):
    """A door with its MQTT link on a real Mosquitto (the scan-room account)."""
    cfg = account_config(mosquitto_broker, mosquitto_broker.door("scan-room"), tmp_path / "events.db")
    return make_door(tmp_path, cfg, clock=SystemClock(TZ))


def test_a_retained_command_is_refused_and_audited_and_does_not_lift_a_local_lockdown(mosquitto_broker,
                                                                                        mqtt_door):
    door, broker = mqtt_door, mosquitto_broker
    supervisor = broker.connect(SUPERVISOR)
    results = broker.topic("scan-room", "cmd", "result")
    supervisor.subscribe(results)
    local_commands.enqueue(door.db, {"action": "lockdown", "by": "duty officer"}, "local:duty officer")
    supervisor.publish(broker.topic("scan-room", "cmd"), json.dumps({"id": "r1", "action": "release_lockdown"}),
                       retain=True)
    with service_loop(door) as loop:
        def refused_retained():
            return [e for e in audits(door) if e["detail"].get("id") == "r1"]

        [audit] = wait_until(refused_retained, what="the retained command's audit")
        assert audit["detail"]["ok"] is False and "retained" in audit["detail"]["error"]
        assert door.controller.lockdown is True
        [result] = wait_until(lambda: [json.loads(m.payload) for m in supervisor.received(results)
                                       if json.loads(m.payload)["id"] == "r1"], what="the answer to r1")
        assert result == {"id": "r1", "ok": False, "error": audit["detail"]["error"]}

        door.service.link.suspend()  # a reconnect delivers the retained command again
        door.service.link.resume()
        wait_until(lambda: len(refused_retained()) == 2, what="the second delivery's audit")
        assert door.controller.lockdown is True
        assert loop_is_alive(loop), loop.crashed


def test_a_command_published_retained_while_the_door_listens_is_refused_too(mosquitto_broker, mqtt_door):
    door, broker = mqtt_door, mosquitto_broker
    supervisor = broker.connect(SUPERVISOR)
    supervisor.subscribe(broker.topic("scan-room", "status"))
    with service_loop(door) as loop:
        wait_until(lambda: supervisor.received(broker.topic("scan-room", "status")), what="the door's status")
        supervisor.publish(broker.topic("scan-room", "cmd"), json.dumps({"id": "live", "action": "lockdown"}),
                           retain=True)
        [audit] = wait_until(lambda: [e for e in audits(door) if e["detail"].get("id") == "live"],
                             what="the retained command's audit")
        assert audit["detail"]["ok"] is False and "retained" in audit["detail"]["error"]
        assert door.controller.lockdown is False
        assert loop_is_alive(loop)


# ---------------------------------------------------------------------- 15. NaN and Infinity


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_command_with_nan_or_infinity_is_refused_naming_it(door, constant):
    payload = f'{{"id": "n1", "action": "status", "by": {constant}}}'.encode()
    cmd = commands.parse(payload)
    assert cmd.error and constant.lstrip("-") in cmd.error and "JSON" in cmd.error
    audit = send(door, payload)
    assert audit["detail"]["ok"] is False and door.answers[-1][1] is False
    for body in stored_bodies(door.cfg.storage.database):
        strict(body)


def test_the_event_store_refuses_a_value_strict_json_cannot_hold(door):
    before = len(door.events())
    with pytest.raises(ValueError):
        door.store.append("system", "command", detail={"x": math.inf})
    assert len(door.events()) == before


def test_a_command_carrying_nan_in_its_arguments_is_answered_and_audited_in_strict_json(door):
    # parse() refuses NaN; a command built in-process (scenario, simulator) may still carry one
    door.inputs.put(RemoteCommand("n2", "status", {"x": math.nan}, "scenario"))
    door.pump()
    audit = audits(door)[-1]
    assert audit["detail"]["id"] == "n2" and door.answers[-1] == ("n2", True, None)
    assert "could not be stored" in audit["detail"]["args"]
    for body in stored_bodies(door.cfg.storage.database):
        strict(body)


# ---------------------------------------------------------------------- 18. deep nesting, the time beacon


def test_a_deeply_nested_command_is_refused_answered_and_audited(door):
    payload = b'{"id": "d1", "action": "status", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    assert len(payload) <= commands.MAX_PAYLOAD
    cmd = commands.parse(payload)
    assert cmd.error and "nested" in cmd.error
    audit = send(door, payload)
    assert audit["detail"]["ok"] is False and "nested" in audit["detail"]["error"]
    assert door.answers[-1] == (None, False, audit["detail"]["error"])


def test_a_malformed_time_beacon_is_logged_redacted_and_truncated(mosquitto_broker, tmp_path, caplog):
    from firmware_py.link.door_link import MqttLink

    broker = mosquitto_broker
    supervisor = broker.connect(SUPERVISOR)
    supervisor.publish(broker.topic(None, "time"), json.dumps({"ts": ID_NUMBER, "pad": "x" * 2000}), retain=True)
    cfg = account_config(broker, broker.door("scan-room"), tmp_path / "events.db")
    link = MqttLink(cfg, post=lambda event: None, backoff=(0.1, 0.5))
    try:
        with caplog.at_level(logging.WARNING, logger="firmware_py.link.door_link"):
            link.start()
            [record] = wait_until(lambda: [r for r in caplog.records if "time beacon" in r.getMessage()],
                                  what="the malformed beacon to be logged")
    finally:
        link.close()
    message = record.getMessage()
    assert ID_NUMBER not in message and MASKED in message
    assert len(message) < 300


# ---------------------------------------------------------------------- 19. the sender's claim


def test_the_mqtt_client_property_is_recorded_as_claimed_by_never_as_client(door):
    audit = send(door, {"id": "s1", "action": "status"}, claimed_by="supervisor-console")
    assert audit["detail"]["claimed_by"] == "supervisor-console"
    assert "client" not in audit["detail"]


def test_a_by_field_is_the_claim_when_no_client_property_came(door):
    audit = send(door, {"id": "s2", "action": "lockdown", "by": "duty officer"})
    assert audit["detail"]["claimed_by"] == "duty officer"


def test_a_local_command_is_claimed_by_local_user(door):
    local_commands.enqueue(door.db, {"action": "status", "by": "alice"}, "local:alice")
    for command in local_commands.take(door.db):
        door.inputs.put(command)
    door.pump()
    assert audits(door)[-1]["detail"]["claimed_by"] == "local:alice"


def test_the_claim_travels_from_the_mqtt_user_property(mosquitto_broker, mqtt_door):
    door, broker = mqtt_door, mosquitto_broker
    supervisor = broker.connect(SUPERVISOR)
    supervisor.subscribe(broker.topic("scan-room", "status"))
    with service_loop(door) as loop:
        wait_until(lambda: supervisor.received(broker.topic("scan-room", "status")), what="the door's status")
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = ("client", "supervisor-console")
        supervisor.paho.publish(broker.topic("scan-room", "cmd"), json.dumps({"id": "p1", "action": "status"}),
                                qos=1, properties=props)
        [audit] = wait_until(lambda: [e for e in audits(door) if e["detail"].get("id") == "p1"],
                             what="the command's audit")
        assert audit["detail"]["claimed_by"] == "supervisor-console"
        assert loop_is_alive(loop)
