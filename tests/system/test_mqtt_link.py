"""The controller's MQTT link (firmware_py/link/door_link.py) against a real Mosquitto.

Every test gets its own broker with the repo's configuration (TLS, client certificate and
password, per-door ACL). The supervisor subscribes to everything with a persistent session;
at teardown every payload it received is scanned for a full resident ID number.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_py.core.inputs import LinkChanged, RemoteCommand, TimeBeacon
from firmware_py.link.door_link import MqttLink
from firmware_py.storage.db import open_db
from firmware_py.storage.eventstore import EventStore
from simulator.crash.link_child import account_config, store_events
from tests.fixtures.constants import REPO
from tests.fixtures.station import free_port
from tests.fixtures.waiting import wait_until

# 17 digits and a check character, not inside a longer run (a SHA-256 in hex often has 18 digits in a row)
FULL_ID_NUMBER = re.compile(rb"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
EVENTS = "accessctl/hn-archive-1/scan-room/events/#"
STATUS = "accessctl/hn-archive-1/scan-room/status"
BACKOFF = (0.1, 0.5)


# ---------------------------------------------------------------- helpers


def seqs(client, topic_filter: str = EVENTS) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in client.received(topic_filter)]


def first_seen(values: list[int]) -> list[int]:
    """De-duplicated by seq, keeping each first arrival: what a subscriber de-duplicating would keep."""
    seen: set[int] = set()
    return [v for v in values if not (v in seen or seen.add(v))]


def wait_for_seqs(client, last: int, timeout: float = 10.0) -> list[int]:
    wait_until(lambda: set(range(1, last + 1)) <= set(seqs(client)), timeout, f"seqs 1 to {last}")
    return first_seen(seqs(client))


def queued(cfg) -> int:
    db = open_db(cfg.storage.database)
    try:
        return db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    finally:
        db.conn.close()


def next_input(inputs: queue.Queue, kind: type, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        item = inputs.get(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(item, kind):
            return item


def statuses(client) -> list[dict]:
    return [json.loads(m.payload) for m in client.received(STATUS)]


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def broker(mosquitto_broker):
    return mosquitto_broker


@pytest.fixture
def supervisor(broker):
    """The supervisor's subscriber to everything, with a persistent session (it rides out outages)."""
    client = broker.connect(client_id="test-supervisor", clean_start=False, session_expiry_s=600)
    client.subscribe("accessctl/#")
    yield client
    leaked = [m.topic for m in client.received() if FULL_ID_NUMBER.search(m.payload)]
    assert leaked == [], f"full resident ID numbers published on {leaked}"


@pytest.fixture
def make_link(broker, tmp_path):
    """Build links on this test's broker (scan-room's account by default); closed at teardown."""
    links = []

    def make(door: str | None = None, protocol: int = 5, account: str = "scan-room", backoff=BACKOFF, **kwargs):
        cfg = account_config(broker, broker.door(account), tmp_path / "events.db", door=door, protocol=protocol,
                             **kwargs)
        inputs: queue.Queue = queue.Queue()
        link = MqttLink(cfg, post=inputs.put, backoff=backoff)
        links.append(link)
        return link, inputs

    yield make
    for link in links:
        link.close()


def subscribed(supervisor, broker, inputs: queue.Queue, ts: str = "2026-11-24T09:00:00+08:00") -> TimeBeacon:
    """Publish the site's retained time beacon and wait until the link posted it: its subscriptions are live."""
    supervisor.publish(broker.topic(None, "time"), json.dumps({"ts": ts}), retain=True)
    return next_input(inputs, TimeBeacon)


def spawn_child(broker, database, count: int) -> subprocess.Popen:
    account = broker.door("scan-room")
    args = {"database": str(database), "broker": broker.url, "ca_file": str(broker.ca_file),
            "username": account.username, "password_file": str(account.password_file),
            "cert_file": str(account.cert_file), "key_file": str(account.key_file), "count": count}
    return subprocess.Popen([sys.executable, "-m", "simulator.crash.link_child", json.dumps(args)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)


# ---------------------------------------------------------------- the outbox, at least once


@pytest.mark.parametrize("protocol", [5, 311])
def test_stored_events_reach_the_supervisor_in_seq_order_and_leave_the_outbox(broker, supervisor, make_link,
                                                                               protocol):
    link, inputs = make_link(protocol=protocol)
    link.start()
    events = store_events(link.cfg, 20)
    link.notify()

    assert wait_for_seqs(supervisor, 20) == list(range(1, 21))
    first = supervisor.received(EVENTS)[0]
    assert first.topic == broker.topic("scan-room", "events", "access", "access_denied")
    assert json.loads(first.payload) == events[0]
    wait_until(lambda: queued(link.cfg) == 0, what="an empty outbox")
    assert next_input(inputs, LinkChanged).up


def test_a_burst_stored_while_the_broker_is_down_arrives_complete_once_it_is_up(broker, supervisor, make_link):
    broker.stop()
    link, inputs = make_link()
    store_events(link.cfg, 500)
    link.start()
    assert next_input(inputs, LinkChanged) == LinkChanged(False, f"broker 127.0.0.1:{broker.port} unreachable")

    broker.start()
    supervisor.wait_connected()
    assert wait_for_seqs(supervisor, 500, timeout=20) == list(range(1, 501))
    wait_until(lambda: queued(link.cfg) == 0, what="an empty outbox")


def test_events_in_flight_when_the_broker_stops_are_sent_again_after_it_restarts(broker, supervisor, make_link):
    link, _ = make_link()
    link.start()
    wait_until(lambda: link.connected, what="the link to connect")
    store_events(link.cfg, 3000)
    link.notify()
    supervisor.wait_for_messages(200, EVENTS, timeout=10)
    broker.stop()
    left = queued(link.cfg)
    broker.start()
    supervisor.wait_connected()

    assert left > 0, "the flush finished before the outage: nothing was tested"
    assert wait_for_seqs(supervisor, 3000, timeout=30) == list(range(1, 3001))
    wait_until(lambda: queued(link.cfg) == 0, what="an empty outbox")


def test_events_survive_a_controller_killed_between_store_and_acknowledgement(broker, supervisor, make_link,
                                                                            tmp_path):
    child = spawn_child(broker, tmp_path / "events.db", 3000)
    try:
        supervisor.wait_for_messages(100, EVENTS, timeout=15)
    finally:
        child.kill()
        child.wait()
    link, _ = make_link()
    left = queued(link.cfg)
    assert left > 0, "the child finished its flush before it was killed: nothing was tested"

    link.start()
    assert wait_for_seqs(supervisor, 3000, timeout=30) == list(range(1, 3001))
    wait_until(lambda: queued(link.cfg) == 0, what="an empty outbox")


def test_events_the_broker_refuses_stay_in_the_outbox_and_are_retried_with_back_off(broker, make_link, caplog):
    # scan-room's account configured for the vault's topics: the ACL answers 135 Not authorized.
    link, _ = make_link(door="vault", backoff=(0.2, 1.0))
    store_events(link.cfg, 5)
    with caplog.at_level(logging.ERROR, logger="firmware_py.link.door_link"):
        link.start()
        refusals = lambda: [r for r in caplog.records if "refused 5 event(s)" in r.getMessage()]  # noqa: E731
        wait_until(refusals, what="the refusal to be logged")
        time.sleep(1.5)

    assert queued(link.cfg) == 5
    assert "Not authorized" in refusals()[0].getMessage()
    assert 2 <= len(refusals()) <= 5  # retried after 0.2, 0.4, 0.8 s: a handful of attempts, not a spin


def test_replay_publishes_the_stored_events_again_from_the_requested_seq(broker, supervisor, make_link):
    link, _ = make_link()
    link.start()
    store_events(link.cfg, 10)
    link.notify()
    wait_for_seqs(supervisor, 10)
    wait_until(lambda: queued(link.cfg) == 0, what="an empty outbox")
    before = len(seqs(supervisor))

    link.replay(4)
    wait_until(lambda: len(seqs(supervisor)) >= before + 7, what="the replay")
    time.sleep(0.1)
    assert seqs(supervisor)[before:] == list(range(4, 11))


def test_suspend_drops_the_link_and_resume_sends_what_was_stored_meanwhile(broker, supervisor, make_link):
    link, inputs = make_link()
    link.start()
    assert next_input(inputs, LinkChanged).up
    link.suspend()
    assert not link.connected
    assert not next_input(inputs, LinkChanged).up
    store_events(link.cfg, 5)
    link.notify()
    time.sleep(0.3)
    assert seqs(supervisor) == []

    link.resume()
    assert next_input(inputs, LinkChanged).up
    assert wait_for_seqs(supervisor, 5) == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------- status, occupancy, will


CONTROLLER_STATUS = {"door": "closed", "lock": "locked", "lockdown": False, "occupancy": 1, "last_seq": 0,
                     "queued": 0, "version": "0.1.0"}


def test_retained_status_has_the_controllers_fields_online_and_fresh_counts(broker, supervisor, make_link):
    link, _ = make_link()
    link.start()
    store_events(link.cfg, 3)
    link.notify()
    link.publish_status(CONTROLLER_STATUS)
    occupancy = {"count": 1, "inside": [{"person_id": "P0001", "name": "测试人员", "role": "staff",
                                         "since": "2026-11-24T09:00:00+08:00"}]}
    link.publish_occupancy(occupancy)
    wait_until(lambda: any(s["queued"] == 0 and s["last_seq"] == 3 for s in statuses(supervisor)),
               what="a status saying the backlog is sent")

    late = broker.connect()
    late.subscribe(STATUS)
    late.subscribe(broker.topic("scan-room", "occupancy"))
    [status] = late.wait_for_messages(1, STATUS)
    [occ] = late.wait_for_messages(1, broker.topic("scan-room", "occupancy"))
    assert status.retain and occ.retain
    head_hash = EventStore(open_db(link.cfg.storage.database), site="s", door="d", clock=None).head()[1]
    assert json.loads(status.payload) == {**CONTROLLER_STATUS, "online": True, "last_seq": 3, "last_hash": head_hash,
                                          "queued": 0}
    assert json.loads(occ.payload) == occupancy


def test_closing_the_link_leaves_a_retained_offline_status(broker, supervisor, make_link):
    link, _ = make_link()
    link.start()
    link.publish_status(CONTROLLER_STATUS)
    wait_until(lambda: statuses(supervisor), what="the status")
    link.close()

    assert wait_until(lambda: [s for s in statuses(supervisor) if not s["online"]], what="offline status")[-1] == {
        **CONTROLLER_STATUS, "online": False}


def test_the_will_marks_the_door_offline_when_the_controller_is_killed(broker, supervisor, tmp_path):
    child = spawn_child(broker, tmp_path / "events.db", 0)
    try:
        wait_until(lambda: [s for s in statuses(supervisor) if s["online"]], what="the door's online status")
    finally:
        child.kill()
        child.wait()

    wait_until(lambda: statuses(supervisor)[-1] == {"online": False}, what="the will")
    late = broker.connect()
    late.subscribe(STATUS)
    assert json.loads(late.wait_for_messages(1, STATUS)[0].payload) == {"online": False}


# ---------------------------------------------------------------- commands and the time beacon


def test_a_supervisor_command_arrives_as_a_remote_command_with_the_senders_claim(broker, supervisor, make_link):
    link, inputs = make_link()
    link.start()
    subscribed(supervisor, broker, inputs)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("client", "supervisor")
    supervisor.paho.publish(broker.topic("scan-room", "cmd"), json.dumps({"id": "c1", "action": "lockdown"}),
                            qos=1, properties=props)

    assert next_input(inputs, RemoteCommand) == RemoteCommand("c1", "lockdown", {}, "supervisor", None)


def test_a_malformed_command_arrives_with_an_error_and_its_result_is_published(broker, supervisor, make_link):
    link, inputs = make_link()
    link.start()
    subscribed(supervisor, broker, inputs)
    supervisor.publish(broker.topic("scan-room", "cmd"), json.dumps({"id": "c2", "action": "self_destruct"}))
    supervisor.publish(broker.topic("scan-room", "cmd"), b"not json")

    bad = next_input(inputs, RemoteCommand)
    assert (bad.id, bad.action, bad.claimed_by) == ("c2", "self_destruct", None)
    assert "unknown action" in bad.error
    assert next_input(inputs, RemoteCommand).error.startswith("not a JSON object")
    link.command_result(bad.id, False, bad.error)
    [result] = supervisor.wait_for_messages(1, broker.topic("scan-room", "cmd", "result"))
    assert json.loads(result.payload) == {"id": "c2", "ok": False, "error": bad.error}


def test_the_answer_to_a_command_without_a_usable_id_still_has_a_string_id(broker, supervisor, make_link):
    """DESIGN.md: cmd/result is {"id": str, "ok": bool, "error": str?}; a strict reader must not meet a null."""
    link, inputs = make_link()
    link.start()
    subscribed(supervisor, broker, inputs)
    supervisor.publish(broker.topic("scan-room", "cmd"), b"not json")
    bad = next_input(inputs, RemoteCommand)
    link.command_result(bad.id, False, bad.error)
    [result] = supervisor.wait_for_messages(1, broker.topic("scan-room", "cmd", "result"))
    assert json.loads(result.payload) == {"id": "", "ok": False, "error": bad.error}


def test_a_door_given_a_clusters_nodes_publishes_through_the_next_when_the_first_is_gone(broker, supervisor,
                                                                                         tmp_path):
    gone = f"mqtts://127.0.0.1:{free_port()}"  # a node that is down
    cfg = account_config(broker, broker.door("scan-room"), tmp_path / "nodes.db")
    cfg = replace(cfg, mqtt=replace(cfg.mqtt, broker=gone, fallback_urls=(broker.url,)))
    events = store_events(cfg, 3)
    nodes = MqttLink(cfg, post=queue.Queue().put, backoff=BACKOFF)
    try:
        nodes.start()
        got = supervisor.wait_for_messages(3, broker.topic("scan-room", "events", "#"), timeout=15)
        assert sorted(json.loads(m.payload)["seq"] for m in got) == [e["seq"] for e in events]
    finally:
        nodes.close()


def test_the_time_beacon_arrives_and_a_malformed_one_is_skipped(broker, supervisor, make_link, caplog):
    supervisor.publish(broker.topic(None, "time"), json.dumps({"ts": "yesterday"}), retain=True)
    link, inputs = make_link()
    with caplog.at_level(logging.WARNING, logger="firmware_py.link.door_link"):
        link.start()
        wait_until(lambda: any("malformed time beacon" in r.getMessage() for r in caplog.records),
                   what="the malformed beacon to be skipped")

    beacon = subscribed(supervisor, broker, inputs, "2026-11-24T09:00:00.250+08:00")
    assert beacon.ts == datetime(2026, 11, 24, 9, 0, 0, 250000, tzinfo=timezone(timedelta(hours=8)))
