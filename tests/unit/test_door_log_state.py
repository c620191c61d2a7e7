"""State kept beside the door's log: the lazily kept kind commits without its fsync and leaves the
connection durable for the events after it."""

from firmware_py.core.clock import SimulatedClock
from firmware_py.storage.db import open_db
from firmware_py.storage.door_log import SqliteEventLog
from firmware_py.storage.eventstore import EventStore
from tests.fixtures.memory_ports import MONDAY_9

FULL = 2  # PRAGMA synchronous


def event_log(tmp_path) -> SqliteEventLog:
    db = open_db(tmp_path / "events.db")
    return SqliteEventLog(EventStore(db, site="s", door="d", clock=SimulatedClock(MONDAY_9)))


def test_state_kept_without_waiting_for_the_disk_is_read_back(tmp_path):
    log = event_log(tmp_path)
    log.keep_state("passage_screening", {"direction": "in"}, durable=False)
    assert log.state("passage_screening") == {"direction": "in"}


def test_the_connection_is_durable_again_after_a_lazily_kept_state(tmp_path):
    log = event_log(tmp_path)
    log.keep_state("passage_screening", None, durable=False)
    assert log.db.execute("PRAGMA synchronous").fetchone()[0] == FULL
