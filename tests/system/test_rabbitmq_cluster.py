"""The fleet broker tier (deploy/rabbitmq) against a real three-node RabbitMQ 3.10 cluster.

MQTT 3.1.1 only (RabbitMQ 3.10 has no MQTT 5). A message that must *not* arrive is checked
with a marker: an allowed message published after it on the same node; once the marker is in,
anything routed before it would have been delivered already.
"""

import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from firmware_py.core.events import GENESIS_HASH, event_hash
from firmware_py.link.broker import BrokerSettings
from firmware_py.station.ingest.ingest import Ingest
from tests.fixtures.constants import REPO
from tests.fixtures.rabbitmq import ADD_DOOR, LAB, unique_site
from tests.fixtures.station import free_port
from tests.fixtures.waiting import wait_until

log = logging.getLogger(__name__)

STATION_PW = "station-password-1"
DOOR_PW = "door-password-123"


def _accounts(cluster, site, *doors):
    station = f"station-{site}"
    cluster.add_accounts((("station", station), STATION_PW), *((("door", site, door), DOOR_PW) for door in doors))
    return station


def _door(cluster, site, door, *, node, client_id=None, failover=True, password=DOOR_PW):
    return cluster.client(f"door.{site}.{door}", password, node=node,
                          client_id=client_id or f"accessctl-{site}-{door}", failover=failover)


def _leader_or_none(cluster, queue, via):
    try:
        return cluster.queue_leader(queue, via=via)
    except LookupError:
        return None


# ---------------------------------------------------------------- nothing lost through a node kill


def test_persistent_subscriber_gets_every_message_while_the_queue_leader_is_killed_and_restarted(
        rabbitmq_cluster):
    cluster = rabbitmq_cluster
    site = unique_site()
    station = _accounts(cluster, site, "gate")
    sub = cluster.client(station, STATION_PW, node=1, client_id=station, clean_session=False)
    sub.subscribe(f"accessctl/{site}/+/events/#")
    queue = f"mqtt-subscription-{station}qos1"
    leader = wait_until(lambda: _leader_or_none(cluster, queue, via=1), 10, f"quorum queue {queue}")
    pub = _door(cluster, site, "gate", node=2)
    topic = f"accessctl/{site}/gate/events/access/access_granted"
    count = 300
    mids: list[int] = []

    def publish_all():
        for i in range(count):
            mids.append(pub.publish(topic, str(i).encode()))
            time.sleep(0.02)

    publisher = threading.Thread(target=publish_all, daemon=True)
    publisher.start()
    killed = False
    try:
        wait_until(lambda: len(mids) >= count // 3, 30, "the first third published")
        kill_s = cluster.kill(leader)
        killed = True
        other = 3 if leader != 3 else 1
        t0 = time.monotonic()

        def moved():
            now = _leader_or_none(cluster, queue, via=other)
            return now if now not in (None, leader) else None

        new_leader = wait_until(moved, 60, "a new queue leader", interval=0.2)
        failover_s = time.monotonic() - t0
        wait_until(lambda: len(mids) >= 2 * count // 3, 60, "the second third published")
        restart_s = cluster.restart(leader)
        killed = False
    finally:
        if killed:
            cluster.restart(leader)
    publisher.join(60)
    assert not publisher.is_alive()
    wait_until(lambda: set(mids) <= pub.acked, 60, "a PUBACK for every message")
    expected = {str(i).encode() for i in range(count)}
    wait_until(lambda: expected <= set(sub.payloads()), 60, "every message at the subscriber")
    log.info("leader rabbit%d killed in %.2f s, rabbit%d led after %.1f s, restarted in %.1f s; "
             "%d deliveries for %d messages", leader, kill_s, new_leader, failover_s, restart_s,
             len(sub.payloads()), count)
    assert new_leader != leader
    assert set(sub.payloads()) == expected
    assert sorted(cluster.running_nodes()) == ["rabbit1@localhost", "rabbit2@localhost", "rabbit3@localhost"]
    sub.close()
    pub.close()


# ---------------------------------------------------------------- per-door permissions


def test_door_publishing_under_another_doors_topic_is_not_delivered(rabbitmq_cluster):
    cluster = rabbitmq_cluster
    site = unique_site()
    station = _accounts(cluster, site, "scan-room", "vault")
    sub = cluster.client(station, STATION_PW, node=1, client_id=station)
    sub.subscribe(f"accessctl/{site}/#")
    forger = _door(cluster, site, "scan-room", node=2, failover=False)
    forged = forger.publish(f"accessctl/{site}/vault/events/alarm/door_forced", b"forged")
    # RabbitMQ 3.10 answers a refused publish by closing the connection, without a PUBACK.
    wait_until(lambda: forger.disconnects >= 1, 10, "the broker closing the forger's connection")
    forger.close()
    honest = _door(cluster, site, "scan-room", node=2, client_id=f"accessctl-{site}-scan-room-doctor")
    marker = honest.publish(f"accessctl/{site}/scan-room/events/access/access_granted", b"marker")
    wait_until(lambda: marker in honest.acked, 10, "PUBACK for the marker")
    wait_until(lambda: b"marker" in sub.payloads(), 10, "the marker at the station")
    assert forged not in forger.acked
    assert b"forged" not in sub.payloads()
    assert sub.payloads(f"accessctl/{site}/vault/#") == []
    honest.close()
    sub.close()


def test_door_receives_its_commands_its_sites_time_beacon_and_roster(rabbitmq_cluster):
    cluster = rabbitmq_cluster
    site = unique_site()
    station_name = _accounts(cluster, site, "scan-room")
    door = _door(cluster, site, "scan-room", node=3)
    for topic in (f"accessctl/{site}/scan-room/cmd", f"accessctl/{site}/time", f"accessctl/{site}/roster"):
        door.subscribe(topic)
    station = cluster.client(station_name, STATION_PW, node=1, client_id=station_name)
    for topic, payload in ((f"accessctl/{site}/scan-room/cmd", b'{"id": "c1", "action": "status"}'),
                           (f"accessctl/{site}/time", b'{"ts": "2026-11-29T09:00:00+08:00"}'),
                           (f"accessctl/{site}/roster", b'{"version": 1}')):
        mid = station.publish(topic, payload)
        wait_until(lambda mid=mid: mid in station.acked, 10, f"PUBACK for {topic}")
    wait_until(lambda: len(door.messages) >= 3, 10, "the command, the time beacon and the roster")
    assert sorted(m.topic for m in door.messages) == sorted(
        [f"accessctl/{site}/roster", f"accessctl/{site}/scan-room/cmd", f"accessctl/{site}/time"])
    door.close()
    station.close()


def test_door_subscribing_to_another_doors_commands_is_cut_off_and_gets_none(rabbitmq_cluster):
    cluster = rabbitmq_cluster
    site = unique_site()
    station_name = _accounts(cluster, site, "scan-room", "vault")
    snoop = _door(cluster, site, "scan-room", node=2, failover=False)
    snoop.subscribe(f"accessctl/{site}/vault/cmd", wait=False)
    wait_until(lambda: snoop.disconnects >= 1, 10, "the broker closing the snooping connection")
    vault = _door(cluster, site, "vault", node=2)
    vault.subscribe(f"accessctl/{site}/vault/cmd")
    station = cluster.client(station_name, STATION_PW, node=1, client_id=station_name)
    station.publish(f"accessctl/{site}/vault/cmd", b'{"id": "c2", "action": "lockdown"}')
    wait_until(lambda: vault.messages, 10, "the command at the vault door")
    snoop.close()
    assert snoop.messages == []
    for c in (vault, station):
        c.close()


def test_door_cannot_take_over_another_doors_session_queue(rabbitmq_cluster):
    cluster = rabbitmq_cluster
    site = unique_site()
    _accounts(cluster, site, "scan-room", "vault")
    # door.SITE.scan-room's password, but the vault's client id: its session queue is not ours
    thief = _door(cluster, site, "scan-room", node=1, client_id=f"accessctl-{site}-vault", failover=False)
    thief.subscribe(f"accessctl/{site}/scan-room/cmd", wait=False)
    wait_until(lambda: thief.disconnects >= 1, 10, "the broker refusing the queue")
    thief.close()
    assert thief.subacks == {}


# ---------------------------------------------------------------- the script's own checks


def test_lab_stop_on_a_folder_without_a_cluster_succeeds_and_says_so(tmp_path):
    p = subprocess.run(["bash", str(LAB), "stop", str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 0
    assert "nothing to stop" in p.stderr


def test_lab_kill_names_the_node_numbers_it_accepts(tmp_path):
    p = subprocess.run(["bash", str(LAB), "kill", str(tmp_path), "4"], capture_output=True, text=True)
    assert p.returncode != 0
    assert "node number must be 1, 2 or 3" in p.stderr


# ---------------------------------------------------------------- the station through a node kill


def _chain(site: str, door: str, seqs: range, prev: str) -> list[dict]:
    events = []
    for seq in seqs:
        e = {"seq": seq, "ts": f"2026-11-23T09:{seq // 60:02d}:{seq % 60:02d}.000+08:00", "site": site, "door": door,
             "category": "access", "type": "passage", "direction": "in", "person": None, "credential": None,
             "reason": None, "detail": {}, "prev_hash": prev}
        e["hash"] = prev = event_hash(e)
        events.append(e)
    return events


def test_the_station_reads_on_through_another_node_when_its_own_is_killed(rabbitmq_cluster, postgres_url):
    """DESIGN.md: the station reads "the brokers"; given the cluster's nodes it goes on through
    another one while its own is down, from the same persistent session (a quorum queue)."""
    cluster = rabbitmq_cluster
    site = unique_site()
    station = _accounts(cluster, site, "gate")
    nodes = [f"mqtt://127.0.0.1:{port}" for port in cluster.ports]
    settings = BrokerSettings(url=nodes[0], fallback_urls=tuple(nodes[1:]), username=station, password=STATION_PW,
                              protocol=311, client_id=station)
    ingest = Ingest(settings, postgres_url, beacon_interval_s=0)
    ingest.start()
    door = _door(cluster, site, "gate", node=2)
    topic = f"accessctl/{site}/gate/events/access/passage"
    events = _chain(site, "gate", range(1, 101), GENESIS_HASH)
    killed = False
    try:
        assert ingest.wait_connected(30)
        for e in events[:50]:
            door.publish(topic, json.dumps(e).encode())
        wait_until(lambda: ingest.stored == 50, 30, "the first 50 events archived")
        cluster.kill(1)  # the station's node
        killed = True
        t0 = time.monotonic()
        for e in events[50:]:
            door.publish(topic, json.dumps(e).encode())
        wait_until(lambda: ingest.stored == 100, 60, "the other 50 archived while node 1 is down")
        log.info("the station archived the other 50 through another node %.1f s after node 1 was killed "
                 "(%d redelivered copies dropped as duplicates)", time.monotonic() - t0, ingest.duplicates)
        # At least once: what node 1 had delivered and not yet seen acknowledged comes again, once.
        assert ingest.connected and ingest.conflicts == 0 and ingest.rejected == 0
    finally:
        ingest.close()
        door.close()
        if killed:
            cluster.restart(1)


# ---------------------------------------------------------------- one account name, one door


def _users(cluster) -> set[str]:
    return {json_row["user"] for json_row in json.loads(cluster.ctl(1, "list_users", "--formatter", "json"))}


def test_a_door_account_is_named_door_site_door_as_on_mosquitto(rabbitmq_cluster):
    site = unique_site()
    _accounts(rabbitmq_cluster, site, "scan-room")

    assert f"door.{site}.scan-room" in _users(rabbitmq_cluster)
    door = _door(rabbitmq_cluster, site, "scan-room", node=1)
    assert door.publish(f"accessctl/{site}/scan-room/status", b"{}") is not None
    door.close()


def test_add_door_never_takes_over_another_doors_account(rabbitmq_cluster):
    """`door hn-archive 1-scan-room` was `door-hn-archive-1-scan-room`: hn-archive-1/scan-room's account."""
    from tests.fixtures.rabbitmq import LabError

    cluster = rabbitmq_cluster
    base = unique_site()
    cluster.add_account("door", f"{base}-1", "scan-room", password=DOOR_PW)

    try:
        cluster.add_account("door", base, "1-scan-room", password="another-password-456")
        refused = None
    except LabError as exc:
        refused = str(exc)

    assert refused is not None and "failed (1)" in refused, refused
    assert f"already door.{base}-1.scan-room's" in refused and "--client-id" in refused
    assert f"door.{base}.1-scan-room" not in _users(cluster)
    owner = _door(cluster, f"{base}-1", "scan-room", node=1, failover=False)  # its password is its own still
    assert owner.connected
    owner.close()


def test_the_other_door_gets_its_own_account_with_its_own_client_id(rabbitmq_cluster):
    cluster = rabbitmq_cluster
    base = unique_site()
    cluster.add_account("door", f"{base}-1", "scan-room", password=DOOR_PW)
    cluster.add_account("--client-id", f"accessctl-{base}-x", "door", base, "1-scan-room", password="pw-of-the-other-1")

    assert {f"door.{base}-1.scan-room", f"door.{base}.1-scan-room"} <= _users(cluster)
    other = _door(cluster, base, "1-scan-room", node=1, client_id=f"accessctl-{base}-x", failover=False,
                  password="pw-of-the-other-1")
    owner = _door(cluster, f"{base}-1", "scan-room", node=1, failover=False)
    assert other.connected and owner.connected
    for c in (other, owner):
        c.close()


def test_add_door_again_for_the_same_door_changes_its_own_password(rabbitmq_cluster):
    cluster = rabbitmq_cluster
    site = unique_site()
    cluster.add_account("door", site, "vault", password=DOOR_PW)
    cluster.add_account("door", site, "vault", password="a-new-password-789")

    door = _door(cluster, site, "vault", node=1, failover=False, password="a-new-password-789")
    assert door.connected
    door.close()


@pytest.mark.parametrize("site, door", [("hn.archive", "scan-room"), ("hn-archive", "scan.room"),
                                        ("hn-archive", "scan/room"), ("hn+archive", "x"), ("hn-archive", "a#b"),
                                        ("hn archive", "x"), ("HN-archive", "x")])
def test_add_door_refuses_separators_inside_site_and_door_and_touches_nothing(tmp_path, site, door):
    calls = tmp_path / "calls"
    fake = tmp_path / "rabbitmqctl"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    p = subprocess.run(["bash", str(ADD_DOOR), "door", site, door], capture_output=True, text=True,
                       env={**os.environ, "RABBITMQCTL": str(fake), "MQTT_PASSWORD": DOOR_PW})

    assert p.returncode == 2, p.stdout + p.stderr
    assert "never '.', '/', '+', '#'" in p.stderr
    assert not calls.exists()


# ---------------------------------------------------------------- the station's session: a name no door can guess


def _station_toml(tmp_path, cluster, station: str) -> Path:
    (tmp_path / "station.password").write_text(STATION_PW + "\n")
    path = tmp_path / "station.toml"
    path.write_text(f'[broker]\nurl = "{cluster.urls[0]}"\nusername = "{station}"\npassword_file = "station.password"\n'
                    f'protocol = 311\nbeacon_interval_s = 0\n\n[archive]\npath = "{tmp_path / "archive.db"}"\n\n'
                    f'[web]\nlisten = "127.0.0.1:{free_port()}"\n')
    return path


def _serve(config: Path, log_path: Path) -> subprocess.Popen:
    out = open(log_path, "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "firmware_py.cli.main", "station", "serve", "--config",
                                 str(config)], stdout=out, stderr=out, stdin=subprocess.DEVNULL, cwd=REPO)
    finally:
        out.close()


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _archived(path: Path, site: str, door: str) -> int:
    from firmware_py.errors import StoreError
    from firmware_py.station.archive.sqlite import Archive

    try:
        archive = Archive(path, read_only=True)
    except StoreError:  # not there yet, or the station is still making its tables
        return 0
    try:
        return archive.count(site, door)
    finally:
        archive.close()


def test_a_door_cannot_knock_the_station_off_with_a_client_id_it_can_guess(rabbitmq_cluster, tmp_path):
    cluster = rabbitmq_cluster
    site = unique_site()
    station = _accounts(cluster, site, "gate")
    log_path = tmp_path / "station.log"
    proc = _serve(_station_toml(tmp_path, cluster, station), log_path)
    door = _door(cluster, site, "gate", node=2)
    topic = f"accessctl/{site}/gate/events/access/passage"
    events = _chain(site, "gate", range(1, 4), GENESIS_HASH)
    intruders = []
    try:
        def first_archived() -> bool:
            door.publish(topic, json.dumps(events[0]).encode())
            return _archived(tmp_path / "archive.db", site, "gate") == 1

        wait_until(first_archived, 60, "the station archiving the door's first event")
        kept = (tmp_path / "archive.db.client-id").read_text().strip()
        assert re.fullmatch(r"accessctl-station-[0-9a-f]{32}", kept), kept
        lost_before = log_path.read_text().count("connection to the broker lost")

        # what a stolen door's account can guess: the old default name, and the plain one
        for guess in (f"accessctl-station-{socket.gethostname()}", "accessctl-station"):
            intruders.append(_door(cluster, site, "gate", node=1, client_id=guess))
        time.sleep(6)  # each intruder reconnects (0.1-1 s) whenever its connection ends
        door.publish(topic, json.dumps(events[1]).encode())
        wait_until(lambda: _archived(tmp_path / "archive.db", site, "gate") == 2, 20, "the second event")

        assert log_path.read_text().count("connection to the broker lost") == lost_before, log_path.read_text()
        queues = {row["name"] for row in json.loads(cluster.ctl(1, "list_queues", "name", "--formatter", "json"))}
        assert f"mqtt-subscription-{kept}qos1" in queues

        _stop(proc)  # away: the session keeps what the door publishes meanwhile …
        door.publish(topic, json.dumps(events[2]).encode())
        proc = _serve(_station_toml(tmp_path, cluster, station), log_path)  # … under the same kept name
        wait_until(lambda: _archived(tmp_path / "archive.db", site, "gate") == 3, 60, "the event sent while away")
        assert (tmp_path / "archive.db.client-id").read_text().strip() == kept
    finally:
        for c in (door, *intruders):
            c.close()
        _stop(proc)
