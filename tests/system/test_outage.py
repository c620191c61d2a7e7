"""Outage: a busy simulated day while the broker stops, the link drops mid-publish and the broker is killed.

The door runs on simulated hardware (real controller and drivers) with its MQTT
link to a real Mosquitto through a TCP relay on the loopback interface (the
"link"): the relay can hold back the broker's acknowledgements, so a backlog is
provably in flight — published, delivered, not yet acknowledged — when the link
is cut, suspended or the broker is SIGKILLed. The supervisor is a plain
subscriber with a persistent session that de-duplicates by seq and asks for a
replay only if something is still missing once the door's outbox is empty.

The day (played once for the module, about half a minute):

1. online rounds of passages (four people in and out, a stranger denied);
2. the broker stopped (SIGTERM) for longer than the link-down bound, rounds offline, restarted;
3. a backlog in flight, then ``MqttLink.suspend()``; rounds offline; ``resume()``;
4. a backlog in flight, then the relay cuts the TCP connection (reset) — the link drops;
5. a backlog in flight, then the broker SIGKILLed; rounds offline; the broker restarted;
6. online rounds; the outbox drains.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import pytest

from firmware_py.core.clock import SimulatedClock
from firmware_py.core.inputs import BadgeRead, RemoteCommand
from firmware_py.storage.eventstore import verify
from simulator.crash.door_child import PEOPLE
from simulator.crash.link_child import account_config
from simulator.door_sim import SimulatedDoor
from simulator.id_card_device import IdCard
from simulator.lab_broker import SUPERVISOR, MosquittoBroker
from simulator.runner import prepare_database, read_people
from simulator.scenario import Scenario
from tests.fixtures.constants import TZ

STAFF = ("P001", "P002", "P003", "S001")
STRANGER_UIDS = [f"0B{i:06X}" for i in range(1000)]


class LinkRelay:
    """A TCP relay between the door and the broker: the link, which a test can stall and cut.

    ``hold_acks()`` keeps the broker's bytes (PUBACKs) in the relay until ``release()``;
    ``cut()`` resets every connection through it (both sides see a broken link).
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._holding = threading.Event()
        self._cut = threading.Event()
        self._generation = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="link-relay").start()

    def hold_acks(self) -> None:
        self._holding.set()

    def release(self) -> None:
        self._holding.clear()

    def cut(self) -> None:
        self._generation += 1

    def close(self) -> None:
        self._stop.set()
        self._generation += 1
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                door_side, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(door_side,), daemon=True).start()

    def _relay(self, door_side: socket.socket) -> None:
        generation = self._generation
        try:
            broker_side = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
        except OSError:
            _reset(door_side)
            return
        held = bytearray()
        try:
            while generation == self._generation and not self._stop.is_set():
                if held and not self._holding.is_set():
                    door_side.sendall(held)
                    held.clear()
                readable, _, _ = select.select([door_side, broker_side], [], [], 0.01)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is door_side:
                        broker_side.sendall(data)
                    elif self._holding.is_set():
                        held += data
                    else:
                        door_side.sendall(data)
        except OSError:
            return
        finally:
            _reset(door_side)
            _reset(broker_side)


def _reset(s: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), as a pulled cable or a dead peer looks to TCP."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


@dataclass
class Day:
    """What happened: the stored log, what the supervisor received (in arrival order), the offline spans."""

    stored: list[dict] = field(default_factory=list)
    arrivals: list[tuple[int, str]] = field(default_factory=list)  # (seq, hash), every message
    arrivals_before_replay: int = 0
    replayed_from: int | None = None
    offline: dict[str, tuple[int, int]] = field(default_factory=dict)  # phase -> (first seq, last seq) stored offline
    in_flight_at_drop: dict[str, int] = field(default_factory=dict)  # phase -> outbox rows unacknowledged at the drop
    verified: object = None
    seconds: float = 0.0


class Player:
    def __init__(self, door: SimulatedDoor, supervisor, broker: MosquittoBroker, relay: LinkRelay):
        self.door, self.supervisor, self.broker, self.relay = door, supervisor, broker, relay
        self.people = read_people(PEOPLE)
        self.strangers = iter(STRANGER_UIDS)
        self.day = Day()

    # ------------------------------------------------------------------ at the door

    def badge(self, side: str, uid: str) -> None:
        self.door.inputs.put(BadgeRead(side, uid))  # what the PC/SC driver posts
        self.door.pump()

    def passage(self, person: str, side: str) -> None:
        p = self.people[person]
        if person == "P003":  # one of them always shows the resident ID card on the serial reader
            self.door.present_id_card(IdCard(name=p.name, id_number=p.id_number), side)
        else:
            self.badge(side, p.badges[0])
        if self.door.controller.state == "screening":
            self.door.walk_through()
        if self.door.controller.state == "released":
            self.door.open_door()
            self.door.advance(timedelta(seconds=3))
            self.door.close_door()

    def round(self) -> None:
        """Everyone in, a stranger turned away, everyone out, some minutes later."""
        for person in STAFF:
            self.passage(person, "outside")
        self.badge("outside", next(self.strangers))
        self.door.advance(timedelta(minutes=4))
        for person in STAFF:
            self.passage(person, "inside")
        self.door.advance(timedelta(minutes=4))

    def crowd(self, count: int) -> None:
        """A queue of strangers trying their cards (a burst of denials), then the reader lockout passes."""
        for _ in range(count):
            self.badge("outside", next(self.strangers))
        self.door.advance(timedelta(seconds=self.door.cfg.policy.reader_lockout_s + 1))

    # ------------------------------------------------------------------ the link

    @property
    def link(self):
        return self.door.service.link

    def wait_link(self, up: bool, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.link.connected != up or (self.door.controller.link_watch.down_since is None) != up:
            assert time.monotonic() < deadline, f"the link did not go {'up' if up else 'down'} within {timeout} s"
            self.door.pump()
            time.sleep(0.01)

    def received_seqs(self) -> set[int]:
        return {json.loads(m.payload)["seq"] for m in self.supervisor.received()}

    def backlog_in_flight(self, phase: str) -> None:
        """Hold the acknowledgements and make a backlog: once the supervisor has part of it, it is in flight.

        (paho sends at most 100 unacknowledged messages, status updates among them; the rest wait in
        paho's queue, so part of the backlog is on the wire and part queued, none acknowledged.)
        """
        self.wait_outbox_empty()  # the previous backlog acknowledged: paho's in-flight window is free
        self.relay.hold_acks()
        first = self.door.store.last_seq() + 1
        self.crowd(40)
        self.round()
        backlog = set(range(first, self.door.store.last_seq() + 1))
        deadline = time.monotonic() + 15
        while len(backlog & self.received_seqs()) < 20:
            assert time.monotonic() < deadline, f"{phase}: the backlog did not reach the supervisor"
            self.door.pump()
            time.sleep(0.01)
        self.day.in_flight_at_drop[phase] = self.door.store.queued()

    def offline(self, phase: str, rounds: int) -> None:
        first = self.door.store.last_seq() + 1
        for _ in range(rounds):
            self.round()
            self.crowd(3)
        self.door.advance(timedelta(seconds=self.door.cfg.mqtt.link_down_after_s + 5))
        self.day.offline[phase] = (first, self.door.store.last_seq())

    # ------------------------------------------------------------------ the day

    def play(self) -> Day:
        started = time.monotonic()
        self.wait_link(up=True)
        self.round()
        self.round()

        self.broker.stop()  # SIGTERM: Mosquitto saves its sessions
        self.wait_link(up=False)
        self.offline("broker stopped", rounds=2)
        self.broker.start()
        self.supervisor.wait_connected(timeout=10)
        self.wait_link(up=True)

        self.backlog_in_flight("suspended")
        self.link.suspend()
        self.relay.release()
        self.wait_link(up=False)
        self.offline("suspended", rounds=1)
        self.link.resume()
        self.wait_link(up=True)

        self.backlog_in_flight("cut")
        self.relay.cut()
        self.relay.release()
        self.round()
        self.wait_link(up=True)

        self.backlog_in_flight("broker killed")
        self.broker.stop(kill=True)
        self.relay.release()
        self.wait_link(up=False)
        self.offline("broker killed", rounds=1)
        self.broker.start()
        self.supervisor.wait_connected(timeout=10)
        self.wait_link(up=True)

        self.round()
        self.round()
        self.drain()
        self.day.seconds = round(time.monotonic() - started, 1)
        return self.day

    def wait_outbox_empty(self, timeout: float = 30) -> None:
        store = self.door.store
        deadline = time.monotonic() + timeout
        while store.queued():
            assert time.monotonic() < deadline, f"{store.queued()} events still queued after {timeout} s"
            self.door.pump()
            time.sleep(0.02)

    def drain(self) -> None:
        store = self.door.store
        self.wait_outbox_empty()
        wanted = set(range(1, store.last_seq() + 1))
        self._wait_for(wanted, 5)
        self.day.arrivals_before_replay = len(self.supervisor.received())
        missing = wanted - self.received_seqs()
        if missing:  # what a supervisor does about a gap (the monitor does the same)
            self.day.replayed_from = min(missing)
            self.supervisor.publish(self.broker.topic("scan-room", "cmd"),
                                    json.dumps({"id": "outage-replay", "action": "replay", "from_seq": min(missing)}))
            self.door.pump(until=RemoteCommand)
            self._wait_for(wanted, 15)
        self.day.arrivals = [(json.loads(m.payload)["seq"], json.loads(m.payload)["hash"])
                             for m in self.supervisor.received()]
        self.day.stored = list(store.events())
        self.day.verified = verify(self.door.db)

    def _wait_for(self, wanted: set[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not wanted <= self.received_seqs() and time.monotonic() < deadline:
            self.door.pump()
            time.sleep(0.02)


@pytest.fixture(scope="module")
def day(mosquitto_files, tmp_path_factory) -> Day:
    work = tmp_path_factory.mktemp("outage")
    broker = MosquittoBroker(mosquitto_files, work / "mosquitto")
    broker.start()
    relay = LinkRelay(broker.port)
    try:
        supervisor = broker.connect(SUPERVISOR, client_id="outage-supervisor", clean_start=False,
                                    session_expiry_s=600)
        supervisor.subscribe(broker.topic("scan-room", "events", "#"))
        cfg = account_config(broker, broker.door("scan-room"), work / "events.db", status_interval_s=5)
        cfg = replace(cfg, mqtt=replace(cfg.mqtt, broker=f"mqtts://127.0.0.1:{relay.port}"))
        clock = SimulatedClock(datetime(2026, 11, 23, 8, 35, tzinfo=TZ))
        prepare_database(cfg, Scenario(work / "day", "outage day", clock.now(), cfg.path, PEOPLE, ()), clock)
        with SimulatedDoor(cfg, clock=clock, badges=False) as door:
            result = Player(door, supervisor, broker, relay).play()
        print(f"outage day: {len(result.stored)} events in {result.seconds} s; offline spans {result.offline}; "
              f"in flight at each drop {result.in_flight_at_drop}; {len(result.arrivals)} messages received, "
              f"replay from {result.replayed_from}")
        return result
    finally:
        relay.close()
        broker.close_clients()
        broker.stop(kill=True)


def first_arrivals(day: Day) -> list[int]:
    seen, order = set(), []
    for seq, _ in day.arrivals:
        if seq not in seen:
            seen.add(seq)
            order.append(seq)
    return order


def test_every_stored_event_reaches_the_supervisor_with_its_stored_hash(day):
    got = {}
    for seq, h in day.arrivals:
        got.setdefault(seq, h)
    assert {e["seq"]: e["hash"] for e in day.stored} == got


def test_every_drop_happened_with_a_backlog_in_flight(day):
    assert set(day.in_flight_at_drop) == {"suspended", "cut", "broker killed"}
    assert all(n >= 40 for n in day.in_flight_at_drop.values()), day.in_flight_at_drop


def test_nothing_arrives_out_of_order_after_de_duplication(day):
    live = first_arrivals(day)[:len({s for s, _ in day.arrivals[:day.arrivals_before_replay]})]
    assert live == sorted(live)


def test_no_replay_was_needed_to_fill_a_gap(day):
    assert day.replayed_from is None


def test_the_door_granted_and_denied_throughout_every_outage(day):
    by_seq = {e["seq"]: e for e in day.stored}
    for phase, (first, last) in day.offline.items():
        types = [by_seq[s]["type"] for s in range(first, last + 1)]
        assert types.count("access_granted") >= 8 and types.count("passage") >= 8, (phase, types)
        assert "access_denied" in types, (phase, types)


def test_an_outage_past_the_bound_is_recorded_as_link_down_and_link_up(day):
    types = [e["type"] for e in day.stored]
    assert types.count("link_down") >= 2 and types.count("link_up") >= 2


def test_the_log_verifies_after_the_day(day):
    assert day.verified.ok, str(day.verified)
