"""The station's PostgreSQL archive (firmware_py/station/archive/pg.py) against a real PostgreSQL 15.

Every test gets an empty database of its own on the session's throwaway cluster.
"""

import io
import json
import logging
import time
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest

from firmware_py.core.events import GENESIS_HASH, event_hash
from firmware_py.errors import StoreError
from firmware_py.station.archive.pg import Incoming, PgArchive

log = logging.getLogger(__name__)

SITE = "hn-archive-1"
DOOR = "scan-room"


def event(seq: int, ts: str, *, prev: str = GENESIS_HASH, type_: str = "access_granted", door: str = DOOR) -> dict:
    e = {"seq": seq, "ts": ts, "site": SITE, "door": door, "category": "access", "type": type_,
         "direction": "in", "person": {"person_id": "P001", "name": "Zhang San", "role": "staff"},
         "credential": {"kind": "resident_id", "masked": "430102********123X"}, "reason": None,
         "detail": {}, "prev_hash": prev}
    e["hash"] = event_hash(e)
    return e


def chain(count: int, start: datetime, *, step: timedelta = timedelta(minutes=1), door: str = DOOR,
          first_seq: int = 1) -> list[dict]:
    out, prev = [], GENESIS_HASH
    for i in range(count):
        e = event(first_seq + i, (start + i * step).isoformat(timespec="milliseconds"), prev=prev, door=door)
        out.append(e)
        prev = e["hash"]
    return out


def incoming(e: dict) -> Incoming:
    payload = json.dumps(e, ensure_ascii=False).encode()
    return Incoming(e["site"], e["door"], f"accessctl/{e['site']}/{e['door']}/events/access/{e['type']}",
                    payload, e, "2026-11-29T10:00:00+08:00")


def store(archive: PgArchive, e: dict):
    i = incoming(e)
    return archive.store_event(i.site, i.door, i.topic, i.payload, e, i.received_at)


def partitions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT c.relname FROM pg_inherits JOIN pg_class c ON c.oid = inhrelid"
                            " WHERE inhparent = 'events'::regclass ORDER BY 1").fetchall()
    return [r[0] for r in rows]


CST = timezone(timedelta(hours=8))


@pytest.fixture
def archive(postgres_url):
    a = PgArchive(postgres_url)
    yield a
    a.close()


# ---------------------------------------------------------------- partitions and de-duplication


def test_events_land_in_the_partition_of_their_month_made_on_demand(archive, postgres_url):
    archive.store_events([incoming(e) for e in chain(3, datetime(2026, 10, 31, 23, 58, tzinfo=CST))])
    assert partitions(postgres_url) == ["events_2026_10", "events_2026_11"]
    assert archive.count() == 3
    assert [e["seq"] for e in archive.events(SITE, DOOR)] == [1, 2, 3]


def test_same_seq_with_a_ts_in_another_month_is_a_conflict_never_a_second_row(archive, postgres_url):
    original = event(7, "2026-11-20T09:00:00.000+08:00")
    other_month = event(7, "2026-12-02T09:00:00.000+08:00")
    assert not store(archive, original).duplicate
    result = store(archive, other_month)
    assert result.duplicate
    assert [a.kind for a in result.anomalies] == ["conflicting_copy"]
    assert archive.count(SITE, DOOR) == 1
    assert archive.events(SITE, DOOR)[0]["ts"] == original["ts"]
    [conflict] = archive.conflicts()
    assert (conflict.seq, conflict.hash, conflict.stored_hash, conflict.reason) == (
        7, other_month["hash"], original["hash"], "conflicting_copy")
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM events_2026_12").fetchone()[0] == 0


def test_an_exact_repeat_is_a_duplicate_and_not_a_conflict(archive):
    e = event(1, "2026-11-20T09:00:00.000+08:00")
    store(archive, e)
    result = store(archive, e)
    assert result.duplicate and result.anomalies == []
    assert archive.count() == 1
    assert archive.conflicts() == []


def test_a_batch_with_the_same_key_twice_keeps_the_first_and_records_the_other(archive):
    first = event(5, "2026-11-20T09:00:00.000+08:00")
    second = event(5, "2027-01-03T09:00:00.000+08:00")
    done = archive.store_events([incoming(first), incoming(first), incoming(second)])
    assert (done.stored, done.duplicates, done.conflicts) == (1, 1, 1)
    assert archive.payload(SITE, DOOR, 5) == json.dumps(first, ensure_ascii=False).encode()
    assert [c.hash for c in archive.conflicts()] == [second["hash"]]


def test_has_count_and_events_on_read_the_archive_across_months(archive):
    archive.store_events([incoming(e) for e in chain(4, datetime(2026, 11, 30, 23, 58, tzinfo=CST))])
    archive.store_events([incoming(e) for e in chain(2, datetime(2026, 12, 1, 9, 0, tzinfo=CST), door="vault")])
    assert archive.has(SITE, DOOR, 4) and not archive.has(SITE, DOOR, 5)
    assert archive.count(SITE) == 6 and archive.count(SITE, "vault") == 2
    on_dec_1 = [(d, e["seq"]) for _, d, e in archive.events_on(date(2026, 12, 1))]
    assert on_dec_1 == [(DOOR, 3), (DOOR, 4), ("vault", 1), ("vault", 2)]


def test_an_event_without_an_offset_is_refused_and_nothing_of_the_batch_is_stored(archive):
    good = event(1, "2026-11-20T09:00:00.000+08:00")
    bad = dict(event(2, "2026-11-20T09:01:00.000+08:00"), ts="2026-11-20T09:01:00")
    with pytest.raises(StoreError, match="no UTC offset"):
        archive.store_events([incoming(good), incoming(bad)])
    assert archive.count() == 0


def test_a_tampered_event_is_stored_and_flagged_bad_hash(archive):
    e = dict(event(1, "2026-11-20T09:00:00.000+08:00"), type="access_denied")
    result = store(archive, e)
    assert not result.duplicate
    assert [a.kind for a in result.anomalies] == ["bad_hash"]


# ---------------------------------------------------------------- retention


def test_retention_keeps_an_old_month_that_was_never_exported(archive):
    archive.store_events([incoming(e) for e in chain(3, datetime(2026, 3, 10, 9, 0, tzinfo=CST))])
    result = archive.drop_expired(datetime(2026, 11, 29, tzinfo=CST))
    assert result.dropped == []
    assert result.kept == {date(2026, 3, 1): "never exported"}
    assert archive.count() == 3


def test_retention_drops_an_exported_month_older_than_180_days_and_keeps_the_recent_one(archive, postgres_url):
    archive.store_events([incoming(e) for e in chain(3, datetime(2026, 3, 10, 9, 0, tzinfo=CST))])
    archive.store_events([incoming(e) for e in chain(2, datetime(2026, 6, 10, 9, 0, tzinfo=CST), first_seq=4)])
    out = io.BytesIO()
    assert archive.export_month(date(2026, 3, 1), out, target="/srv/exports/2026-03.jsonl") == 3
    assert [json.loads(line)["seq"] for line in out.getvalue().splitlines()] == [1, 2, 3]
    archive.export_month(date(2026, 6, 1), io.BytesIO(), target="/srv/exports/2026-06.jsonl")
    # 2026-11-29 minus 180 days is 2026-06-02: March is wholly older, June is not.
    result = archive.drop_expired(datetime(2026, 11, 29, tzinfo=CST))
    assert result.dropped == [date(2026, 3, 1)]
    assert partitions(postgres_url) == ["events_2026_06"]
    assert archive.count() == 2 and not archive.has(SITE, DOOR, 1)


def test_retention_keeps_a_month_that_received_events_after_its_export(archive):
    archive.store_events([incoming(e) for e in chain(2, datetime(2026, 3, 10, 9, 0, tzinfo=CST))])
    archive.export_month(date(2026, 3, 1), io.BytesIO(), target="/srv/exports/2026-03.jsonl")
    archive.store_events([incoming(e) for e in chain(1, datetime(2026, 3, 11, 9, 0, tzinfo=CST), first_seq=3)])
    result = archive.drop_expired(datetime(2026, 11, 29, tzinfo=CST))
    assert result.dropped == []
    assert "1 event(s) arrived after the export" in result.kept[date(2026, 3, 1)]


def test_a_late_copy_of_a_dropped_month_goes_to_conflicts_and_does_not_bring_the_month_back(archive, postgres_url):
    events = chain(2, datetime(2026, 3, 10, 9, 0, tzinfo=CST))
    archive.store_events([incoming(e) for e in events])
    archive.export_month(date(2026, 3, 1), io.BytesIO(), target="tape-0007")
    archive.drop_expired(datetime(2026, 11, 29, tzinfo=CST))
    done = archive.store_events([incoming(events[0])])
    assert (done.stored, done.after_retention) == (0, 1)
    assert partitions(postgres_url) == []
    assert [c.reason for c in archive.conflicts()] == ["after_retention"]


def test_retention_shorter_than_180_days_is_refused(archive):
    with pytest.raises(ValueError, match="180"):
        archive.drop_expired(datetime(2026, 11, 29, tzinfo=CST), keep_days=90)


# ---------------------------------------------------------------- batched ingest


def test_batched_ingest_stores_every_event_of_many_doors_once(archive):
    doors = [f"door-{i:02d}" for i in range(20)]
    start = datetime(2026, 11, 30, 20, 0, tzinfo=CST)   # runs into December
    events = [e for d in doors for e in chain(250, start, door=d)]
    batches = [events[i:i + 1000] for i in range(0, len(events), 1000)]
    t0 = time.monotonic()
    for b in batches:
        archive.store_events([incoming(e) for e in b])
    elapsed = time.monotonic() - t0
    log.info("batched ingest: %d events in %.2f s = %.0f events/s", len(events), elapsed, len(events) / elapsed)
    again = archive.store_events([incoming(e) for e in events[:500]])
    assert archive.count() == len(events)
    assert (again.stored, again.duplicates) == (0, 500)
    for d in doors:
        assert [e["seq"] for e in archive.events(SITE, d)] == list(range(1, 251))
