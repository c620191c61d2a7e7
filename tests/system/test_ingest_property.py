"""Property: random and hostile messages on one door's topics never stop the ingest for another door.

The pipeline (:class:`Ingest`) is fed directly, in this process, as its MQTT loop hands it what
paho delivers: over SQLite one message at a time, over PostgreSQL one batch at a time (hostile
messages and the other door's event in the same batch). Whatever door
``scan-room`` sends (bytes, JSON of any shape, DESIGN.md's event with any field replaced, on any of
its topics, retained or not), handling it raises nothing and door ``vault``'s next event is
archived. ``FUZZ_EXAMPLES=N`` sets the SQLite examples (PostgreSQL runs a third as many).

Also here: PostgreSQL refusing one event of a batch (a real CHECK constraint) rejects that event
with PostgreSQL's reason and stores the rest; it is never taken for an outage.
"""

from __future__ import annotations

import json
import os
from datetime import datetime

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_py.core.events import GENESIS_HASH, event_hash
from firmware_py.link.broker import BrokerSettings
from firmware_py.station.archive.sqlite import Archive
from firmware_py.station.ingest.ingest import Ingest
from firmware_py.station.ingest.loop import Received

PREFIX, SITE = "accessctl", "hn-archive-1"
NOWHERE = BrokerSettings(url="mqtt://127.0.0.1:9")  # never connected: the messages are handed over directly
SQLITE_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 3000))


class Chain:
    """Door vault's good events, each linked to the one before."""

    def __init__(self, door: str = "vault"):
        self.door, self.seq, self.prev = door, 0, GENESIS_HASH

    def next(self) -> tuple[str, bytes, int]:
        self.seq += 1
        e = {"seq": self.seq, "ts": "2026-11-23T09:00:00.000+08:00", "site": SITE, "door": self.door,
             "category": "access", "type": "passage", "direction": "in",
             "person": {"person_id": "P001", "name": "测试员甲", "role": "staff"}, "credential": None,
             "reason": None, "detail": {}, "prev_hash": self.prev}
        e["hash"] = self.prev = event_hash(e)
        return f"{PREFIX}/{SITE}/{self.door}/events/access/passage", json.dumps(e).encode(), self.seq


def _event(seq=1) -> dict:
    e = {"seq": seq, "ts": "2026-11-23T09:00:01.000+08:00", "site": SITE, "door": "scan-room",
         "category": "access", "type": "access_granted", "direction": "in",
         "person": {"person_id": "P002", "name": "测试员乙", "role": "visitor"},
         "credential": {"kind": "badge", "masked": "04A1B2C3"}, "reason": None, "detail": {}, "prev_hash": GENESIS_HASH}
    e["hash"] = event_hash(e)
    return e


scalars = (st.none() | st.booleans() | st.integers(min_value=-2 ** 70, max_value=2 ** 70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["9999-12-31T23:59:59+08:00", "NaN", "430102198503121234", "\x00", "vault", "",
                              "0" * 64, "access_granted", "status"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
mutated_events = st.builds(lambda seq, field, value, rehash: _mutate(_event(seq), field, value, rehash),
                           st.integers(1, 40), st.sampled_from([*_event(), "extra"]), values, st.booleans())
statuses = st.dictionaries(st.sampled_from(["online", "door", "lock", "lockdown", "occupancy", "last_seq", "last_hash",
                                            "queued", "version", "state", "faults"]), values, max_size=6)


def _mutate(event: dict, field: str, value, rehash: bool) -> dict:
    event[field] = value
    if rehash:
        try:
            event["hash"] = event_hash({k: v for k, v in event.items() if k != "hash"})
        except (ValueError, TypeError):
            pass
    return event


def _dumps(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


payloads = st.one_of(st.binary(max_size=120), values.map(_dumps), mutated_events.map(_dumps), statuses.map(_dumps),
                     st.just(b""), st.just(b"[" * 5000), st.just(b'{"seq": 1, "seq": 2}'))
suffixes = st.sampled_from(["events/access/access_granted", "events/alarm/door_forced", "events/system/command",
                            "events/access", "events/a/b/c", "status", "occupancy", "cmd/result", "cmd"])
messages = st.tuples(suffixes, payloads, st.booleans()).map(
    lambda m: (f"{PREFIX}/{SITE}/scan-room/{m[0]}", m[1], m[2]))


# ---------------------------------------------------------------- SQLite

@pytest.fixture(scope="module")
def sqlite_monitor(memory_path_factory):
    # The property is about what the ingest does with a message, not about the disk: thousands of
    # commits need not each wait for an fsync.
    archive = Archive(memory_path_factory.mktemp("property") / "archive.db")
    m = Ingest(NOWHERE, archive, beacon_interval_s=None, replay_interval_s=3600, out=lambda line: None)
    m.vault = Chain()
    yield m
    archive.close()


@settings(max_examples=SQLITE_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                              HealthCheck.too_slow])
@given(hostile=st.lists(messages, min_size=1, max_size=3))
def test_no_message_from_one_door_stops_the_sqlite_ingest_for_another(sqlite_monitor, hostile):
    m = sqlite_monitor
    for topic, payload, retained in hostile:
        m._handle(topic, payload, retained=retained)
    topic, payload, seq = m.vault.next()
    m._handle(topic, payload)
    assert m.archive.has(SITE, "vault", seq)
    assert m.archive.last_contiguous(SITE, "vault") == seq


# ---------------------------------------------------------------- PostgreSQL

class _NoAcks:
    """The broker side of acknowledgements: the batches here come with QoS 0, so none is sent."""

    def ack(self, mid, qos):
        raise AssertionError("a QoS 0 message is never acknowledged")


@pytest.fixture(scope="module")
def pg_ingest(postgres_cluster):
    url = postgres_cluster.create_database("t_property")
    ingest = Ingest(NOWHERE, url, beacon_interval_s=0, replay_interval_s=3600)
    ingest.loop.client = _NoAcks()
    ingest.store.open()
    ingest.vault = Chain()
    yield ingest
    ingest.store.close()
    postgres_cluster.drop_database("t_property")


def _received(topic: str, payload: bytes, retained: bool = False) -> Received:
    return Received(0, 0, 0, topic, payload, datetime.now().astimezone().isoformat(), retained)


@settings(max_examples=max(1, SQLITE_EXAMPLES // 3), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(hostile=st.lists(messages, min_size=1, max_size=5))
def test_no_message_from_one_door_stops_the_postgres_ingest_for_another(pg_ingest, hostile):
    topic, payload, seq = pg_ingest.vault.next()
    pg_ingest.loop.step([*(_received(*m) for m in hostile), _received(topic, payload)])
    assert pg_ingest.verified(SITE, "vault") == (seq, None)


def test_an_event_postgres_refuses_is_rejected_alone_and_the_batch_is_stored(postgres_url):
    ingest = Ingest(NOWHERE, postgres_url, beacon_interval_s=0)
    ingest.loop.client = _NoAcks()
    ingest.store.open()
    try:
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute("ALTER TABLE events ADD CONSTRAINT no_vault_2 CHECK (NOT (door = 'vault' AND seq = 2))")
            chain = Chain()
            batch = [_received(*chain.next()[:2]) for _ in range(3)]
            ingest.loop.step(batch)
            assert [s for (s,) in db.execute("SELECT seq FROM events ORDER BY seq")] == [1, 3]
            (topic, site, door, reason), = db.execute("SELECT topic, site, door, reason FROM ingest_rejects")
    finally:
        ingest.store.close()
    assert (topic, site, door) == (batch[1].topic, SITE, "vault")
    assert reason.startswith("the archive refused it:") and "no_vault_2" in reason
    assert ingest.rejected == 1 and ingest.stored == 2


def test_a_nul_in_a_name_inside_or_an_unknown_status_field_is_stored_not_retried_for_ever(pg_ingest):
    """PostgreSQL text holds no NUL; a name is free text, and a status may carry fields this version
    does not know: both are kept as the door sent them (as JSON escapes), and the ingest goes on."""
    occupancy = {"count": 1, "inside": [{"person_id": "P9", "name": "甲\x00乙", "role": "staff",
                                         "since": "2026-11-23T09:00:00+08:00"}]}
    status = {"online": True, "roster_version": "v\x001"}
    topic, payload, seq = pg_ingest.vault.next()
    pg_ingest.loop.step([_received(f"{PREFIX}/{SITE}/scan-room/occupancy", json.dumps(occupancy).encode(), True),
                       _received(f"{PREFIX}/{SITE}/scan-room/status", json.dumps(status).encode(), True),
                       _received(topic, payload)])
    assert pg_ingest.verified(SITE, "vault") == (seq, None)
    with psycopg.connect(pg_ingest.store.url) as db:
        kept = db.execute("SELECT status, occupancy FROM door_state WHERE site = %s AND door = 'scan-room'",
                          (SITE,)).fetchone()
    assert [json.loads(text) for text in kept] == [status, occupancy]
