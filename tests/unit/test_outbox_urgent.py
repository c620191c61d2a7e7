"""The outbox's urgent lane (DESIGN.md "PIN and duress": a duress alarm reaches the supervisor
at once, ahead of any backlog): the store finds the urgent events the outbox holds, cheaply,
and they leave it only when acknowledged, like every other."""

from datetime import datetime

import pytest

from firmware_py.core.clock import SimulatedClock
from firmware_py.core.events import URGENT_TYPES
from firmware_py.storage.db import open_db
from firmware_py.storage.eventstore import EventStore
from tests.fixtures.constants import TZ


@pytest.fixture
def store(tmp_path):
    db = open_db(tmp_path / "events.db")
    clock = SimulatedClock(datetime(2026, 11, 23, 8, 55, 3, 120000, tzinfo=TZ))
    return EventStore(db, site="hn-archive-1", door="scan-room", clock=clock)


def backlog(store, n):
    with store.batch():
        for i in range(n):
            store.append("access", "access_denied", direction="in", reason="unknown_credential",
                         credential={"kind": "badge", "masked": f"{i:08X}"})


def duress(store):
    return store.append("alarm", "duress", direction="in", person={"person_id": "P001", "name": "测试员甲",
                                                                      "role": "staff"},
                        credential={"kind": "badge", "masked": "****5678"}, detail={"reader": "in"})


def test_only_the_duress_alarm_is_urgent():
    assert URGENT_TYPES == ("duress",)


def test_a_duress_alarm_behind_a_backlog_is_read_first_and_the_backlog_in_seq_order(store):
    backlog(store, 300)
    alarm = duress(store)
    backlog(store, 5)
    urgent = store.urgent_rows(0, 10)
    assert [(seq, category, type_) for seq, category, type_, _, _ in urgent] == [(301, "alarm", "duress")]
    assert urgent[0][4] == alarm["hash"]
    assert [row[0] for row in store.outbox_rows(0, 500)] == list(range(1, 307))  # still all queued, in order


def test_an_urgent_event_leaves_the_outbox_only_when_acknowledged(store):
    backlog(store, 3)
    duress(store)
    assert store.queued() == 4
    store.acknowledge([4])
    assert store.urgent_rows(0, 10) == []
    assert [row[0] for row in store.outbox_rows(0, 10)] == [1, 2, 3]
    assert store.queued() == 3


def test_urgent_rows_start_at_the_seq_asked(store):
    duress(store)
    backlog(store, 2)
    duress(store)
    assert [row[0] for row in store.urgent_rows(0, 10)] == [1, 4]
    assert [row[0] for row in store.urgent_rows(2, 10)] == [4]
    assert [row[0] for row in store.urgent_rows(0, 1)] == [1]


def test_finding_the_urgent_events_reads_an_index_of_them_not_the_backlog(store):
    traced = []
    store.db.conn.set_trace_callback(traced.append)
    store.urgent_rows(0, 10)
    store.db.conn.set_trace_callback(None)
    (sql,) = traced  # with its parameters in place
    plan = " ".join(row[-1] for row in store.db.execute("EXPLAIN QUERY PLAN " + sql))
    assert "USING INDEX events_urgent" in plan and "SCAN" not in plan


def test_a_database_made_before_the_urgent_lane_gets_the_index_when_opened(tmp_path):
    path = tmp_path / "old.db"
    db = open_db(path)
    db.execute("DROP INDEX events_urgent")
    db.conn.close()
    db = open_db(path)
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
    assert "events_urgent" in names
