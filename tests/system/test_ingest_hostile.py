"""One hostile door against the station's ingest, on the SQLite and on the PostgreSQL archive alike.

Issue 17's cases that concern the ingest, played from door ``scan-room``'s own account against a
real Mosquitto and ``accessctl station serve`` as a child process, each followed by a good event
of door ``vault``: every hostile message ends in ``ingest_rejects`` (or, for a conflicting copy,
in ``conflicts``) with its reason, the broker's message is acknowledged (the station restarted on
the same persistent session is handed none of them again), and the other door's next event is
archived. The same test set runs against both
archives (DESIGN.md: one pipeline, only storing differs). One broker and one station per archive
serve the whole module.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import psycopg
import pytest

from firmware_py.core.events import GENESIS_HASH, event_hash
from firmware_py.station.archive.open import open_station_store
from firmware_py.station.archive.sqlite import Archive
from simulator.lab_broker import SITE, door_username
from tests.fixtures.mosquitto import _run_broker
from tests.fixtures.station import StationProcess, free_port, write_station_config
from tests.fixtures.waiting import wait_until

ID_NUMBER = "430102198503121234"  # shaped like a resident ID number (fictional)


@pytest.fixture(scope="module")
def broker(mosquitto_files, tmp_path_factory):
    yield from _run_broker(mosquitto_files, tmp_path_factory.mktemp("hostile-broker"))


@pytest.fixture(scope="module")
def doors(broker):
    """Both doors' own accounts, connected once for the module."""
    return {name: broker.connect(door_username(name)) for name in ("scan-room", "vault")}


@dataclass
class Door:
    """A door's chain as the tests publish it: the next good event, and copies made from it."""

    name: str
    seq: int = 0
    prev: str = GENESIS_HASH

    def event(self, seq: int | None = None, prev: str | None = None, **changes) -> dict:
        seq = self.seq + 1 if seq is None else seq
        e = {"seq": seq, "ts": f"2026-11-23T09:{seq // 60 % 60:02d}:{seq % 60:02d}.000+08:00", "site": SITE,
             "door": self.name, "category": "access", "type": "access_granted", "direction": "in",
             "person": {"person_id": "P001", "name": "测试员甲", "role": "staff"},
             "credential": {"kind": "resident_id", "masked": "430102********123X"}, "reason": None, "detail": {},
             "prev_hash": self.prev if prev is None else prev}
        e.update(changes)
        e["hash"] = event_hash(e)
        return e

    def advance(self, event: dict) -> dict:
        self.seq, self.prev = event["seq"], event["hash"]
        return event


class Station:
    """``accessctl station serve`` on one archive (SQLite file or PostgreSQL URL), as a child process,
    with the test's doors; the archive is read beside it."""

    backend = ""

    def __init__(self, broker, doors, workdir, archive):
        port = free_port()
        config = write_station_config(workdir / "station.toml", broker, archive, port=port,
                                      client_id=f"hostile-{uuid.uuid4().hex[:8]}")
        self.process = StationProcess(config, port, workdir / "station.log").start()
        self.where = archive
        self.broker = broker
        self.doors = doors
        self.vault = Door("vault")

    def restart(self) -> None:
        """Stop the station (SIGTERM) and start it again on the same persistent session."""
        self.process.stop()
        self.process.start()

    def publish(self, door: str, payload: bytes | str, *parts: str, retain: bool = False) -> None:
        rc = self.doors[door].publish(self.broker.topic(door, *parts), payload, qos=1, retain=retain)
        assert rc is None or not rc.is_failure, rc

    def publish_event(self, door: str, event: dict, payload: bytes | None = None, *, retain: bool = False) -> str:
        topic = ("events", "access", "access_granted")
        self.publish(door, payload if payload is not None else json.dumps(event, ensure_ascii=False), *topic,
                     retain=retain)
        return self.broker.topic(door, *topic)

    def next_vault_event_is_archived(self) -> None:
        """Door vault's next good event reaches the archive (the ingest goes on for every other door)."""
        e = self.vault.advance(self.vault.event())
        self.publish_event("vault", e)
        wait_until(lambda: e["seq"] in self.seqs("vault"), 15, f"vault's #{e['seq']} archived")

    def rejects_of(self, topic: str, after: int, count: int = 1) -> list[tuple]:
        """Wait for ``count`` rejects of ``topic`` among those after the first ``after``; return them."""
        def found():
            got = [r for r in self.rejects()[after:] if r[2] == topic]
            return got if len(got) >= count else None
        return wait_until(found, 15, f"a reject of {topic}")

    def chain(self, door: str) -> tuple[bool, int, str | None]:
        """(holds, verified to, problem) of the door's chain as the page shows it."""
        store = open_station_store(self.where)
        try:
            result = store.chains().check(SITE, door)
        finally:
            store.close()
        return result.ok, result.verified_to, result.problem

    def close(self) -> None:
        self.process.stop()


class SqliteStation(Station):
    backend = "sqlite"

    def __init__(self, broker, doors, workdir):
        super().__init__(broker, doors, workdir, workdir / "archive.db")
        self.archive = Archive(workdir / "archive.db", read_only=True)

    def rejects(self) -> list[tuple]:
        return [(r.site, r.door, r.topic, r.reason, r.payload) for r in self.archive.rejects()]

    def seqs(self, door: str) -> list[int]:
        return [e["seq"] for e in self.archive.events(SITE, door)]

    def archived(self, door: str) -> list[str]:
        return [e["hash"] for e in self.archive.events(SITE, door)]

    def conflicts(self, door: str) -> list[tuple[int, str]]:
        return [(c.seq, c.hash) for c in self.archive.conflicts(SITE, door)]

    def status(self, door: str) -> dict | None:
        state = self.archive.door_state(SITE, door)
        return state.status if state else None

    def epochs(self, door: str) -> list[tuple[int, list[str]]]:
        return [(e.epoch, [x["hash"] for x in self.archive.events(SITE, door, epoch=e.epoch)])
                for e in self.archive.epochs(SITE, door)]

    def current_epoch(self, door: str) -> int:
        return self.archive.current_epoch(SITE, door)

    def anomalies(self, door: str) -> list[tuple[str, int | None]]:
        return [(a.kind, a.seq) for a in self.archive.anomalies(SITE, door)]

    def close(self) -> None:
        super().close()
        self.archive.close()


class PostgresStation(Station):
    backend = "postgres"

    def __init__(self, broker, doors, workdir, url):
        super().__init__(broker, doors, workdir, url)
        self.db = psycopg.connect(url, autocommit=True)

    def rejects(self) -> list[tuple]:
        return [(s, d, t, r, bytes(p)) for s, d, t, r, p in self.db.execute(
            "SELECT site, door, topic, reason, payload FROM ingest_rejects ORDER BY id")]

    def seqs(self, door: str) -> list[int]:
        return [s for (s,) in self.db.execute("SELECT seq FROM events WHERE site = %s AND door = %s ORDER BY seq",
                                              (SITE, door))]

    def archived(self, door: str) -> list[str]:
        return [h for (h,) in self.db.execute("SELECT hash FROM events WHERE site = %s AND door = %s ORDER BY seq",
                                              (SITE, door))]

    def conflicts(self, door: str) -> list[tuple[int, str]]:
        return list(self.db.execute("SELECT seq, hash FROM conflicts WHERE site = %s AND door = %s ORDER BY id",
                                    (SITE, door)))

    def status(self, door: str) -> dict | None:
        row = self.db.execute("SELECT status FROM door_state WHERE site = %s AND door = %s", (SITE, door)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def epochs(self, door: str) -> list[tuple[int, list[str]]]:
        rows = self.db.execute("SELECT epoch, hash FROM events WHERE site = %s AND door = %s ORDER BY epoch, seq",
                               (SITE, door)).fetchall()
        return [(epoch, [h for e, h in rows if e == epoch]) for epoch in sorted({e for e, _ in rows})]

    def current_epoch(self, door: str) -> int:
        row = self.db.execute("SELECT epoch FROM epochs WHERE site = %s AND door = %s AND current",
                              (SITE, door)).fetchone()
        return row[0] if row else 1

    def anomalies(self, door: str) -> list[tuple[str, int | None]]:
        return list(self.db.execute("SELECT kind, seq FROM anomalies WHERE site = %s AND door = %s ORDER BY id",
                                    (SITE, door)))

    def close(self) -> None:
        super().close()
        self.db.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def station(request, broker, doors, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"hostile-{request.param}")
    if request.param == "sqlite":
        s = SqliteStation(broker, doors, workdir)
    else:
        cluster = request.getfixturevalue("postgres_cluster")
        name = f"t_{uuid.uuid4().hex[:12]}"
        s = PostgresStation(broker, doors, workdir, cluster.create_database(name))
    yield s
    s.close()
    if request.param == "postgres":
        cluster.drop_database(name)


def good_status(**changes) -> str:
    status = {"online": True, "door": "closed", "lock": "locked", "lockdown": False, "occupancy": 0,
              "last_seq": 0, "queued": 0, "version": "test", "state": "idle", "faults": []}
    status.update(changes)
    return json.dumps(status)


SCAN = Door("scan-room")


def _with(payload_change):
    """A scan-room event's payload with its text changed after hashing (for what json.dumps cannot write)."""
    return lambda: json.dumps(SCAN.event(seq=100), ensure_ascii=False).replace(*payload_change).encode()


HOSTILE = {
    "an_18_digit_bare_number_in_detail": (_with(('"detail": {}', f'"detail": {{"n": {ID_NUMBER}}}')),
                                          "looks like a full resident ID number"),
    "seq_2_to_the_63": (lambda: json.dumps(SCAN.event(seq=2 ** 63)).encode(),
                        "seq 9223372036854775808 is outside 1..2^53"),
    "a_nul_in_type": (lambda: json.dumps(SCAN.event(seq=101, type="access_granted\x00")).encode(),
                      "type 'access_granted\\x00' holds a NUL"),
    "a_nan_ts": (_with(('"ts": "2026-11-23T09:01:40.000+08:00"', '"ts": NaN')),
                 "NaN is not a number strict JSON allows"),
    "a_year_9999_ts": (lambda: json.dumps(SCAN.event(seq=102, ts="9999-12-31T23:59:59.000+08:00")).encode(),
                       "ts '9999-12-31T23:59:59.000+08:00' is outside the years 1970..2199"),
    "a_3_mb_event": (lambda: json.dumps(SCAN.event(seq=103, detail={"junk": "x" * 3_000_000})).encode(),
                     "over the 65536-byte limit"),
    "door_vaults_event_on_scan_rooms_topic": (lambda: json.dumps(SCAN.event(seq=104, door="vault")).encode(),
                                              f"the event on {SITE}/scan-room's topic names door 'vault'"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_event_is_refused_with_its_reason_and_the_other_door_goes_on(station, case):
    make, reason = HOSTILE[case]
    before = len(station.rejects())
    topic = station.publish_event("scan-room", {}, make())
    station.next_vault_event_is_archived()
    (site, door, _, why, kept), = station.rejects_of(topic, before)
    assert (site, door) == (SITE, "scan-room")
    assert reason in why
    assert ID_NUMBER not in kept.decode("utf-8", "replace")
    assert station.seqs("scan-room") == []


def test_an_event_published_retained_is_refused_on_both_archives(station):
    before = len(station.rejects())
    topic = station.publish_event("scan-room", SCAN.event(seq=105), retain=True)
    station.next_vault_event_is_archived()
    (_, door, _, why, _), = station.rejects_of(topic, before)
    assert door == "scan-room" and why.startswith("an event arrived retained")
    assert station.seqs("scan-room") == []
    station.publish("scan-room", b"", "events", "access", "access_granted", retain=True)  # the broker forgets it
    station.rejects_of(topic, before, 2)  # its clearing is no event either


@pytest.mark.parametrize("field, value, reason", [
    ("faults", 1, "status field faults: 1 is not a list of device names"),
    ("lock", ["x"], "status field lock: ['x'] is not locked or released"),
])
def test_a_strange_status_is_refused_and_the_doors_last_good_status_stays(station, field, value, reason):
    station.publish("scan-room", good_status(), "status", retain=True)
    wait_until(lambda: station.status("scan-room") == json.loads(good_status()), 10, "the good status")
    before = len(station.rejects())
    station.publish("scan-room", good_status(**{field: value}), "status", retain=True)
    station.next_vault_event_is_archived()
    (_, door, _, why, _), = station.rejects_of(station.broker.topic("scan-room", "status"), before)
    assert (door, why) == ("scan-room", reason)
    assert station.status("scan-room") == json.loads(good_status())
    station.publish("scan-room", good_status(), "status", retain=True)  # the broker keeps a good one again


def test_of_two_conflicting_copies_the_one_that_verifies_best_stays_and_the_other_is_kept_apart(station):
    door = Door("scan-room")
    g1 = door.advance(door.event())
    forged = door.event(type="access_denied", reason="revoked")  # #2, well hashed, linked to #1
    g2 = door.advance(door.event())
    g3 = door.advance(door.event())
    for e in (g1, forged, g3, g2):  # the forged copy arrives first
        station.doors["scan-room"].publish(station.broker.topic("scan-room", "events", "access", e["type"]),
                                           json.dumps(e, ensure_ascii=False), qos=1)
    wait_until(lambda: station.conflicts("scan-room"), 10, "the conflicting copy kept")
    wait_until(lambda: station.archived("scan-room") == [g1["hash"], g2["hash"], g3["hash"]], 10,
               "the genuine copy in events")
    assert station.conflicts("scan-room") == [(2, forged["hash"])]
    wait_until(lambda: station.chain("scan-room") == (True, 3, None), 10, "the chain verified to #3")
    station.next_vault_event_is_archived()


def publish_chain(station, door: Door, count: int, hour: int) -> list[dict]:
    """``count`` linked events of ``door`` from seq 1, at ``hour`` o'clock (a reset log starts again at 1)."""
    out = []
    for _ in range(count):
        e = door.advance(door.event(ts=f"2026-11-23T{hour:02d}:00:{door.seq + 1:02d}.000+08:00"))
        station.publish_event(door.name, e)
        out.append(e)
    return out


def test_a_door_whose_log_was_reset_opens_a_new_epoch_on_both_archives(station):
    """The door's chain restarts at #1 (its database was reset) twice: each restart is a new epoch on both
    archives, the old chains stay, and the page verifies the current one."""
    first = publish_chain(station, Door("scan-room"), 2, 11)
    second = publish_chain(station, Door("scan-room"), 3, 12)
    wait_until(lambda: station.epochs("scan-room")[-1:] == [(station.current_epoch("scan-room"),
                                                             [e["hash"] for e in second])], 15, "the second restart")
    (a, hashes_a), (b, hashes_b) = station.epochs("scan-room")[-2:]
    assert (hashes_a, b) == ([e["hash"] for e in first], a + 1)
    assert [k for k, _ in station.anomalies("scan-room")].count("new_epoch") >= 1
    assert not [c for c in station.conflicts("scan-room") if c[1] in {e["hash"] for e in first + second}]
    wait_until(lambda: station.chain("scan-room") == (True, 3, None), 10, "the current epoch verified to #3")
    station.next_vault_event_is_archived()


def test_a_status_whose_head_went_back_raises_head_regressed_on_both_archives(station):
    door = Door("scan-room")
    events = publish_chain(station, door, 2, 13)  # a fresh epoch of two events
    wait_until(lambda: station.epochs("scan-room")[-1][1] == [e["hash"] for e in events], 15, "the new epoch")
    station.publish("scan-room", good_status(last_seq=2, last_hash=events[1]["hash"]), "status", retain=True)
    station.publish("scan-room", good_status(last_seq=1, last_hash=events[0]["hash"]), "status", retain=True)
    wait_until(lambda: ("head_regressed", 1) in station.anomalies("scan-room"), 15, "head_regressed")
    station.publish("scan-room", good_status(last_seq=2, last_hash="ab" * 32), "status", retain=True)
    wait_until(lambda: ("head_mismatch", 2) in station.anomalies("scan-room"), 15, "head_mismatch")
    station.publish("scan-room", good_status(), "status", retain=True)  # the broker keeps a good one again
    station.next_vault_event_is_archived()


def test_every_refused_message_was_acknowledged_to_the_broker(station):
    """Run last: the ingest on the same persistent session is handed none of them again."""
    refused = len(station.rejects())
    assert refused >= len(HOSTILE)
    station.restart()
    station.next_vault_event_is_archived()
    time.sleep(1.0)  # what the broker would hand over again comes first, on reconnecting
    assert len(station.rejects()) == refused
