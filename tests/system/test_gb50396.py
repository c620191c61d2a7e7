"""GB 50396-2007 5.1 against a real Mosquitto: link loss, alarm delivery time, the time beacon.

The door runs on simulated hardware with the real drivers and its MQTT link
to the test broker; the supervisor is an ordinary MQTT client (paho, or
Debian's mosquitto_sub for the delivery-time check).
"""

import json
import queue
import subprocess
import threading
import time
from datetime import datetime, timedelta

import pytest

from firmware_py.core.clock import SimulatedClock
from firmware_py.core.inputs import BadgeRead, DoorOpened, LinkChanged, TimeBeacon
from simulator.crash.link_child import account_config
from simulator.door_sim import SimulatedDoor
from simulator.lab_broker import SUPERVISOR
from simulator.runner import prepare_database, read_people
from simulator.scenario import Scenario
from tests.fixtures.constants import PEOPLE, TZ


@pytest.fixture
def door(mosquitto_broker, tmp_path):
    cfg = account_config(mosquitto_broker, mosquitto_broker.door("scan-room"), tmp_path / "events.db",
                         status_interval_s=5)
    clock = SimulatedClock(datetime(2026, 11, 23, 9, 0, tzinfo=TZ))
    prepare_database(cfg, Scenario(tmp_path / "t", "t", clock.now(), cfg.path, PEOPLE, ()), clock)
    with SimulatedDoor(cfg, clock=clock, badges=False) as d:
        wait_link(d, up=True)
        yield d


def wait_link(door, *, up: bool, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not (door.service.link.connected == up and (door.controller.link_watch.down_since is None) == up):
        door.pump(until=LinkChanged, timeout=max(0.1, deadline - time.monotonic()))


def badge_in(door, person: str) -> None:
    door.inputs.put(BadgeRead("outside", read_people(PEOPLE)[person].badges[0]))
    door.pump()
    door.walk_through()


def types(door):
    return [e["type"] for e in door.events()]


def test_a_broker_outage_past_the_bound_is_stored_then_published_with_its_length(door, mosquitto_broker):
    supervisor = mosquitto_broker.connect(SUPERVISOR, client_id="gb-supervisor", clean_start=False,
                                          session_expiry_s=300)
    supervisor.subscribe(mosquitto_broker.topic("scan-room", "events", "#"))
    mosquitto_broker.stop()
    wait_link(door, up=False)
    badge_in(door, "P001")  # the door works offline
    door.advance(timedelta(seconds=door.cfg.mqtt.link_down_after_s + 1))
    assert "link_down" in types(door)
    mosquitto_broker.start()
    wait_link(door, up=True)
    link_up = [e for e in door.events() if e["type"] == "link_up"][-1]
    assert link_up["detail"]["outage_s"] == pytest.approx(door.cfg.mqtt.link_down_after_s + 1, abs=1)
    supervisor.wait_connected()
    link_up_topic = mosquitto_broker.topic("scan-room", "events", "system", "link_up")
    messages = supervisor.wait_for_messages(count=1, topic_filter=link_up_topic, timeout=15)
    received = {json.loads(m.payload)["type"] for m in supervisor.received()}
    assert {"access_granted", "link_down", "link_up"} <= received, received
    assert messages


def test_a_short_outage_raises_no_alarm(door, mosquitto_broker):
    mosquitto_broker.stop()
    wait_link(door, up=False)
    door.advance(timedelta(seconds=door.cfg.mqtt.link_down_after_s / 2))
    mosquitto_broker.start()
    wait_link(door, up=True)
    assert "link_down" not in types(door) and "link_up" not in types(door)


class LineReader:
    """The lines a child prints, read by a thread into a queue.

    ``select`` on a text pipe only sees the descriptor: lines the pipe's buffer
    already holds (mosquitto_sub -d prints CONNACK, SUBSCRIBE and SUBACK at
    once) would wait there until the deadline.
    """

    def __init__(self, stream):
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self.lines.put(line)

    def wait_for(self, wanted, deadline: float) -> str | None:
        """The first line ``wanted`` accepts, or None at the deadline; other lines are dropped."""
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            if wanted(line):
                return line
        return None


def test_a_field_alarm_reaches_mosquitto_sub_within_two_seconds(door, mosquitto_broker):
    account = mosquitto_broker.supervisor
    topic = mosquitto_broker.topic("scan-room", "events", "alarm", "#")
    sub = subprocess.Popen(
        ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(mosquitto_broker.port), "-V", "mqttv5",
         "--cafile", str(mosquitto_broker.ca_file), "--cert", str(account.cert_file), "--key", str(account.key_file),
         "-u", account.username, "-P", account.password, "-t", topic, "-C", "1", "-d"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = LineReader(sub.stdout)
        # -d prints the broker's answer to the subscription
        assert output.wait_for(lambda line: "SUBACK" in line, time.monotonic() + 10), (
            f"mosquitto_sub did not subscribe (exit code {sub.poll()})")
        started = time.monotonic()
        door.world.open_door()  # the cause: nobody released the lock
        door.pump(until=DoorOpened)
        line = output.wait_for(lambda line: line.startswith("{"), started + 5)
        elapsed = time.monotonic() - started
        assert line is not None, "the alarm did not reach mosquitto_sub"
    finally:
        sub.kill()
        sub.wait()
    payload = json.loads(line)
    assert payload["type"] == "door_forced"
    print(f"door_forced reached mosquitto_sub in {elapsed * 1000:.1f} ms")
    assert elapsed < 2.0


def publish_beacon(broker, ts: datetime, *, retain: bool = False, client=None) -> None:
    client = client or broker.connect(SUPERVISOR)
    client.publish(broker.topic(None, "time"), json.dumps({"ts": ts.isoformat()}), retain=retain)


def test_a_beacon_a_few_seconds_off_raises_clock_drift_once(door, mosquitto_broker):
    supervisor = mosquitto_broker.connect(SUPERVISOR)
    for _ in range(2):
        publish_beacon(mosquitto_broker, door.clock.now() - timedelta(seconds=10), client=supervisor)
        door.pump(until=TimeBeacon)
    assert types(door).count("clock_drift") == 1
    drift = [e for e in door.events() if e["type"] == "clock_drift"][0]
    assert drift["detail"]["offset_s"] == pytest.approx(10, abs=0.5)
    badge_in(door, "P001")  # a small drift does not stop the door
    assert types(door)[-1] == "access_granted"


def test_a_grossly_wrong_clock_denies_entry_until_the_beacon_agrees(door, mosquitto_broker):
    supervisor = mosquitto_broker.connect(SUPERVISOR)
    publish_beacon(mosquitto_broker, door.clock.now() + timedelta(hours=2), client=supervisor)
    door.pump(until=TimeBeacon)
    badge_in(door, "P001")
    assert [e["reason"] for e in door.events() if e["type"] == "access_denied"] == ["clock_unsynchronised"]
    assert "clock_unsynchronised" in types(door)
    publish_beacon(mosquitto_broker, door.clock.now(), client=supervisor)
    door.pump(until=TimeBeacon)
    door.advance(timedelta(seconds=door.cfg.policy.failure_window_s + 1))
    badge_in(door, "P001")
    assert types(door)[-1] == "access_granted"


def test_the_retained_beacon_delivered_on_connect_is_not_taken_as_drift(mosquitto_broker, tmp_path):
    publish_beacon(mosquitto_broker, datetime(2026, 11, 23, 8, 0, tzinfo=TZ), retain=True)
    cfg = account_config(mosquitto_broker, mosquitto_broker.door("scan-room"), tmp_path / "events.db")
    clock = SimulatedClock(datetime(2026, 11, 23, 9, 0, tzinfo=TZ))
    with SimulatedDoor(cfg, clock=clock, badges=False) as door:
        wait_link(door, up=True)
        door.pump(until=TimeBeacon)
        assert "clock_drift" not in types(door)
