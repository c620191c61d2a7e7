"""The tamper-evident event log, on a real SQLite file."""

import json
from datetime import datetime

import pytest

from firmware_py.core.clock import SimulatedClock
from firmware_py.core.events import GENESIS_HASH, LeakError, canonical, event_hash
from firmware_py.storage.db import open_db, transaction
from firmware_py.storage.eventstore import EventStore, verify
from tests.fixtures.constants import TZ


@pytest.fixture
def store(tmp_path):
    db = open_db(tmp_path / "events.db")
    clock = SimulatedClock(datetime(2026, 11, 23, 8, 55, 3, 120000, tzinfo=TZ))
    return EventStore(db, site="hn-archive-1", door="scan-room", clock=clock)


def fill(store, n):
    for i in range(n):
        store.append("access", "access_denied", direction="in", reason="unknown_credential",
                     credential={"kind": "badge", "masked": f"{i:08X}"})
        store.clock.advance(1)


def test_first_event_has_seq_1_and_a_genesis_prev_hash(store):
    event = store.append("system", "controller_started", detail={"version": "0.1.0"})
    assert event["seq"] == 1
    assert event["prev_hash"] == GENESIS_HASH
    assert event["ts"] == "2026-11-23T08:55:03.120+08:00"


def test_each_event_chains_to_the_previous_hash(store):
    fill(store, 3)
    events = list(store.events())
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert events[1]["prev_hash"] == events[0]["hash"]
    assert events[2]["prev_hash"] == events[1]["hash"]


def test_an_events_hash_is_sha256_over_its_canonical_json_without_the_hash(store):
    event = store.append("system", "lockdown_on", detail={"by": "cli"})
    without = {k: v for k, v in event.items() if k != "hash"}
    assert event["hash"] == event_hash(without)
    stored = store.db.execute("SELECT body FROM events WHERE seq = 1").fetchone()[0]
    assert stored == canonical(without)


def test_database_is_durable_wal_with_full_sync(store):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_an_intact_log_verifies(store):
    fill(store, 10)
    result = verify(store.db)
    assert result.ok and result.count == 10
    assert str(result) == "ok 10 events"


def test_an_edited_row_is_reported_at_its_seq(store):
    fill(store, 10)
    body = json.loads(store.db.execute("SELECT body FROM events WHERE seq = 4").fetchone()[0])
    body["reason"] = "expired"
    store.db.execute("UPDATE events SET body = ? WHERE seq = 4", (canonical(body),))
    result = verify(store.db)
    assert not result.ok and result.bad_seq == 4


def test_an_edited_row_with_a_recomputed_hash_breaks_the_next_link(store):
    fill(store, 10)
    body = json.loads(store.db.execute("SELECT body FROM events WHERE seq = 4").fetchone()[0])
    body["reason"] = "expired"
    store.db.execute("UPDATE events SET body = ?, hash = ? WHERE seq = 4", (canonical(body), event_hash(body)))
    result = verify(store.db)
    assert not result.ok and result.bad_seq == 5


def test_a_deleted_row_is_reported_at_the_missing_seq(store):
    fill(store, 10)
    store.db.execute("DELETE FROM outbox WHERE seq = 6")
    store.db.execute("DELETE FROM events WHERE seq = 6")
    result = verify(store.db)
    assert not result.ok and result.bad_seq == 6


def test_a_deleted_last_row_is_reported(store):
    fill(store, 10)
    store.db.execute("DELETE FROM outbox WHERE seq = 10")
    store.db.execute("DELETE FROM events WHERE seq = 10")
    result = verify(store.db)
    assert not result.ok and result.bad_seq == 10


def test_a_swapped_pair_is_reported_at_the_first_of_the_pair(store):
    fill(store, 10)
    pair = store.db.execute("SELECT seq, ts, category, type, body, prev_hash, hash FROM events WHERE seq IN (3, 4)")
    rows = {seq: row for seq, *row in pair}
    with transaction(store.db):
        for seq, other in ((3, 4), (4, 3)):
            store.db.execute("UPDATE events SET ts=?, category=?, type=?, body=?, prev_hash=?, hash=? WHERE seq=?",
                             (*rows[other], seq))
    result = verify(store.db)
    assert not result.ok and result.bad_seq == 3


def test_an_event_is_queued_in_the_outbox_with_its_storage(store):
    fill(store, 3)
    assert [e["seq"] for e in store.pending()] == [1, 2, 3]
    store.acknowledge([1, 2])
    assert [e["seq"] for e in store.pending()] == [3]
    assert store.queued() == 1


def test_an_event_outside_the_vocabulary_is_refused(store):
    with pytest.raises(ValueError):
        store.append("access", "door_forced")
    with pytest.raises(ValueError):
        store.append("access", "access_denied", reason="bad_hair_day")
    assert store.last_seq() == 0


def test_an_event_carrying_a_full_id_number_is_refused_and_nothing_is_stored(store):
    with pytest.raises(LeakError):
        store.append("access", "access_denied", reason="unknown_credential",
                     credential={"kind": "resident_id", "masked": "43010219900307123X"})
    assert store.last_seq() == 0 and store.queued() == 0


def test_an_append_inside_a_transaction_rolls_back_with_it(store):
    with pytest.raises(RuntimeError):
        with transaction(store.db):
            store.append("system", "roster_changed", detail={"action": "add"})
            raise RuntimeError("the roster write failed")
    assert store.last_seq() == 0


def test_a_second_writer_process_continues_the_chain(tmp_path, store):
    fill(store, 2)
    other = EventStore(open_db(tmp_path / "events.db"), site="hn-archive-1", door="scan-room", clock=store.clock)
    other.append("system", "roster_changed", detail={"action": "add"})
    fill(store, 1)
    assert [e["seq"] for e in store.events()] == [1, 2, 3, 4]
    assert verify(store.db).ok


# ---------------------------------------------------------------------- the head and the count in memory


def statements(store) -> list[str]:
    seen: list[str] = []
    store.db.conn.set_trace_callback(seen.append)
    return seen


def test_after_its_own_append_the_head_and_count_cost_no_table_query(store):
    fill(store, 3)
    store.head(), store.queued()  # known from here on
    store.append("system", "command", detail={"id": "c1"})
    seen = statements(store)
    head, queued = store.head(), store.queued()
    store.db.conn.set_trace_callback(None)
    assert head == (4, store.hash_at(4)) and queued == 4
    assert not [s for s in seen if "events" in s or "outbox" in s], seen


def test_the_head_follows_an_append_by_another_connection(tmp_path, store):
    fill(store, 2)
    assert store.head()[0] == 2
    other = EventStore(open_db(tmp_path / "events.db"), site="hn-archive-1", door="scan-room", clock=store.clock)
    event = other.append("system", "roster_changed", detail={"action": "add"})
    assert store.head() == (3, event["hash"]) and store.queued() == 3


def test_the_count_follows_acknowledgements_on_this_and_another_connection(tmp_path, store):
    fill(store, 5)
    assert store.queued() == 5
    store.acknowledge([1, 2])
    assert store.queued() == 3
    other = EventStore(open_db(tmp_path / "events.db"), site="hn-archive-1", door="scan-room", clock=store.clock)
    other.acknowledge([3])
    assert store.queued() == 2
    fill(store, 1)
    assert store.queued() == 3 and store.head()[0] == 6


def test_an_append_rolled_back_with_its_transaction_leaves_the_head_where_it_was(store):
    fill(store, 2)
    before = store.head()
    with pytest.raises(RuntimeError), transaction(store.db):
        store.append("system", "roster_changed", detail={"action": "add"})
        raise RuntimeError("the roster write failed")
    assert store.head() == before and store.queued() == 2


def test_the_periodic_anchor_is_written_after_the_record_not_inside_it(store, tmp_path):
    # Its fsync would otherwise sit between a grant's record and the lock releasing.
    from firmware_py.storage.door_log import SqliteEventLog
    from firmware_py.storage.eventstore import ChainAnchor

    anchor = ChainAnchor.beside(tmp_path / "device.key")
    log = SqliteEventLog(store, anchor=anchor)
    log.record("system", "controller_started", detail={})
    assert anchor.read()[0] == 1  # start and stop are anchored at once
    for _ in range(ChainAnchor.EVERY):
        log.record("access", "access_granted", direction="in")
    assert anchor.read()[0] == 1
    log.write_due_anchor()
    assert anchor.read() == store.head()
