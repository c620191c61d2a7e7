"""The decisions both archives make alike: chain epochs, the head a door's status publishes, and copies of
one seq that differ (DESIGN.md: one pipeline, only storing differs).

The same sequences are stored into the SQLite archive (a file) and the PostgreSQL archive (an empty
database of its own on the session's throwaway cluster) through the same calls, and what each keeps
is compared with the same expectations.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import psycopg
import pytest

from firmware_py.core.events import GENESIS_HASH, event_hash
from firmware_py.station.archive.pg import INGEST_SCHEMA, Incoming, PgArchive
from firmware_py.station.archive.sqlite import Archive

SITE = "hn-archive-1"
DOOR = "scan-room"
AT = "2026-11-29T10:00:00.000+08:00"


def chain(count: int, start: str, *, person: str = "P001") -> list[dict]:
    """``count`` linked events from seq 1, a minute apart from ``start``."""
    out, prev, t = [], GENESIS_HASH, datetime.fromisoformat(start)
    for seq in range(1, count + 1):
        e = {"seq": seq, "ts": (t + timedelta(minutes=seq - 1)).isoformat(timespec="milliseconds"), "site": SITE,
             "door": DOOR, "category": "access", "type": "access_granted", "direction": "in",
             "person": {"person_id": person, "name": "测试员甲", "role": "staff"},
             "credential": {"kind": "resident_id", "masked": "430102********123X"}, "reason": None, "detail": {},
             "prev_hash": prev}
        e["hash"] = event_hash(e)
        out.append(e)
        prev = e["hash"]
    return out


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request, tmp_path_factory):
    """A factory of empty archives of one kind (module-scoped: one cluster serves the module)."""
    made = []
    if request.param == "sqlite":
        def make():
            archive = Archive(tmp_path_factory.mktemp("epochs") / "archive.db")
            made.append((archive, None))
            return archive
    else:
        cluster = request.getfixturevalue("postgres_cluster")

        def make():
            name = f"t_{uuid.uuid4().hex[:12]}"
            archive = PgArchive(cluster.create_database(name))
            made.append((archive, name))
            return archive
    yield make
    for archive, name in made:
        archive.close()
        if name:
            cluster.drop_database(name)


@pytest.fixture
def archive(backend):
    return backend()


def store(archive, e: dict, payload: bytes | None = None):
    payload = json.dumps(e, ensure_ascii=False).encode() if payload is None else payload
    return archive.store_event(SITE, DOOR, f"accessctl/{SITE}/{DOOR}/events/access/access_granted", payload, e, AT)


def status(archive, **fields):
    value = {"online": True, "last_seq": 0, "queued": 0, **fields}
    return archive.store_status(SITE, DOOR, "status", value, AT)


def epochs(archive) -> list[tuple[int, list[str]]]:
    """(epoch, the hashes of its archived events in seq order) of the door, oldest first."""
    return [(e.epoch, [x["hash"] for x in archive.events(SITE, DOOR, epoch=e.epoch)])
            for e in archive.epochs(SITE, DOOR)]


def kinds(archive) -> list[str]:
    return [a.kind for a in archive.anomalies(SITE, DOOR)]


def test_a_door_whose_log_was_reset_opens_a_new_epoch_on_both_archives(archive):
    old, new = chain(3, "2026-11-23T09:00:00.000+08:00"), chain(2, "2026-11-23T10:00:00.000+08:00", person="P002")
    for e in old + new:
        store(archive, e)
    assert epochs(archive) == [(1, [e["hash"] for e in old]), (2, [e["hash"] for e in new])]
    assert archive.conflicts(SITE, DOOR) == []
    assert kinds(archive) == ["new_epoch"]
    assert archive.current_epoch(SITE, DOOR) == 2
    assert [e["seq"] for e in archive.events(SITE, DOOR)] == [1, 2]  # the current epoch's, by default


def test_a_seq_1_older_than_the_epochs_events_is_a_conflicting_copy_not_an_epoch(archive):
    old = chain(3, "2026-11-23T09:00:00.000+08:00")
    early = chain(1, "2026-11-23T08:00:00.000+08:00", person="P002")[0]
    for e in (*old, early):
        store(archive, e)
    assert epochs(archive) == [(1, [e["hash"] for e in old])]
    assert [(c.seq, c.hash) for c in archive.conflicts(SITE, DOOR)] == [(1, early["hash"])]


def test_the_old_chain_growing_again_makes_its_epoch_current_again(archive):
    genuine = chain(4, "2026-11-23T09:00:00.000+08:00")
    forged = chain(1, "2026-11-23T09:30:00.000+08:00", person="P002")[0]
    for e in (*genuine[:3], forged, genuine[3]):
        store(archive, e)
    assert epochs(archive) == [(1, [e["hash"] for e in genuine]), (2, [forged["hash"]])]
    assert kinds(archive) == ["new_epoch", "epoch_resumed"]
    assert archive.current_epoch(SITE, DOOR) == 1


def test_one_batch_decides_epochs_as_one_event_at_a_time(archive):
    """PostgreSQL stores what arrived together in one batch (store_events): a reset, a forged #1, the old
    chain resumed and a second reset inside one batch give the epochs SQLite gives event by event."""
    genuine = chain(4, "2026-11-23T09:00:00.000+08:00")
    forged = chain(1, "2026-11-23T09:30:00.000+08:00", person="P002")[0]
    reset = chain(2, "2026-11-23T10:00:00.000+08:00", person="P003")
    sequence = [*genuine[:3], forged, genuine[3], *reset]
    if isinstance(archive, PgArchive):
        archive.store_events([Incoming(SITE, DOOR, "t", json.dumps(e).encode(), e, AT) for e in sequence],
                             settle=True)
    else:
        for e in sequence:
            store(archive, e)
    assert epochs(archive) == [(1, [e["hash"] for e in genuine]), (2, [forged["hash"]]),
                               (3, [e["hash"] for e in reset])]
    assert kinds(archive) == ["new_epoch", "epoch_resumed", "new_epoch"]
    assert archive.current_epoch(SITE, DOOR) == 3
    assert archive.conflicts(SITE, DOOR) == []


def test_a_repeated_copy_is_a_duplicate_on_both_archives(archive):
    e = chain(1, "2026-11-23T09:00:00.000+08:00")[0]
    store(archive, e)
    again = store(archive, e, json.dumps(e, ensure_ascii=False, indent=1).encode())  # formatted otherwise
    assert again.duplicate and not again.anomalies
    assert archive.conflicts(SITE, DOOR) == []


def test_the_same_hash_with_another_payload_is_a_conflicting_copy_on_both_archives(archive):
    first, second = chain(2, "2026-11-23T09:00:00.000+08:00")
    store(archive, first)
    store(archive, second)
    altered = {**second, "person": {"person_id": "P999", "name": "测试员乙", "role": "staff"}}  # hash kept
    done = store(archive, altered)
    assert [a.kind for a in done.anomalies] == ["conflicting_copy"]
    assert [(c.seq, c.hash) for c in archive.conflicts(SITE, DOOR)] == [(2, second["hash"])]
    assert archive.events(SITE, DOOR) == [first, second]  # the copy whose hash is right stays
    store(archive, altered)  # the same altered copy again is kept once
    assert len(archive.conflicts(SITE, DOOR)) == 1


def test_a_status_that_agrees_with_the_archive_raises_nothing(archive):
    events = chain(3, "2026-11-23T09:00:00.000+08:00")
    for e in events:
        store(archive, e)
    assert status(archive, last_seq=3, last_hash=events[2]["hash"]) == []
    assert status(archive, last_seq=3, last_hash=events[2]["hash"]) == []
    assert kinds(archive) == []


def test_a_status_whose_head_went_back_raises_head_regressed_on_both_archives(archive):
    events = chain(3, "2026-11-23T09:00:00.000+08:00")
    for e in events:
        store(archive, e)
    found = status(archive, last_seq=2, last_hash=events[1]["hash"])
    assert [(a.kind, a.seq) for a in found] == [("head_regressed", 2)]
    assert kinds(archive) == ["head_regressed"]


def test_a_status_naming_another_hash_raises_head_mismatch_on_both_archives(archive):
    events = chain(3, "2026-11-23T09:00:00.000+08:00")
    for e in events:
        store(archive, e)
    found = status(archive, last_seq=3, last_hash="ab" * 32)
    assert [(a.kind, a.seq) for a in found] == [("head_mismatch", 3)]
    assert kinds(archive) == ["head_mismatch"]


def test_an_event_that_contradicts_the_announced_head_raises_head_mismatch(archive):
    events = chain(3, "2026-11-23T09:00:00.000+08:00")
    for e in events[:2]:
        store(archive, e)
    status(archive, last_seq=3, last_hash="cd" * 32)
    done = store(archive, events[2])
    assert "head_mismatch" in [a.kind for a in done.anomalies]
    assert kinds(archive) == ["head_mismatch"]


def test_a_postgresql_archive_of_one_chain_per_door_upgrades_in_place(backend, request):
    """An archive written before epochs (one chain per door, keyed by (site, door, seq)) opens, keeps its
    events as epoch 1, and opens epoch 2 when the door's log is reset."""
    if request.node.callspec.params["backend"] != "postgres":
        return  # the SQLite archive's upgrade is test_archive_migrate's and test_station_epochs'
    archive = backend()
    old = chain(2, "2026-11-23T09:00:00.000+08:00")
    with psycopg.connect(archive.url, autocommit=True) as conn:  # the tables as they were before epochs
        conn.execute("DROP TABLE events, event_keys, conflicts, epochs, anomalies, months CASCADE")
        conn.execute(PRE_EPOCH_SCHEMA)
        for e in old:
            conn.execute("INSERT INTO event_keys VALUES (%s, %s, %s, %s, %s)",
                         (SITE, DOOR, e["seq"], e["ts"], e["hash"]))
            conn.execute("INSERT INTO events (site, door, seq, ts, local_date, category, type, hash, prev_hash,"
                         " hash_ok, topic, payload, received_at) VALUES (%s, %s, %s, %s, %s, 'access',"
                         " 'access_granted', %s, %s, true, 't', %s, %s)",
                         (SITE, DOOR, e["seq"], e["ts"], e["ts"][:10], e["hash"], e["prev_hash"],
                          json.dumps(e, ensure_ascii=False).encode(), AT))
        conn.execute("CREATE TABLE door_chains (site text NOT NULL, door text NOT NULL, verified_to bigint NOT NULL,"
                     " last_hash text NOT NULL, problem text, PRIMARY KEY (site, door))")
        conn.execute("INSERT INTO door_chains VALUES (%s, %s, 2, %s, NULL)", (SITE, DOOR, old[1]["hash"]))
        conn.execute(INGEST_SCHEMA)  # as the ingest does when it opens the archive
        assert conn.execute("SELECT epoch, verified_to FROM door_chains").fetchall() == [(1, 2)]
        conn.execute("INSERT INTO door_chains (site, door, epoch, verified_to, last_hash) VALUES (%s, %s, 2, 0, %s)",
                     (SITE, DOOR, GENESIS_HASH))  # a second chain of the door beside the first
    archive.close()
    archive = PgArchive(archive.url)
    try:
        assert epochs(archive) == [(1, [e["hash"] for e in old])]
        store(archive, old[1])  # a copy of an old event is a duplicate of epoch 1
        assert epochs(archive) == [(1, [e["hash"] for e in old])]
        new = chain(1, "2026-11-23T10:00:00.000+08:00", person="P002")
        store(archive, new[0])
        assert epochs(archive) == [(1, [e["hash"] for e in old]), (2, [new[0]["hash"]])]
    finally:
        archive.close()


PRE_EPOCH_SCHEMA = """
CREATE TABLE event_keys (site text NOT NULL, door text NOT NULL, seq bigint NOT NULL, ts timestamptz NOT NULL,
    hash text NOT NULL, PRIMARY KEY (site, door, seq));
CREATE TABLE events (site text NOT NULL, door text NOT NULL, seq bigint NOT NULL, ts timestamptz NOT NULL,
    local_date date NOT NULL, category text NOT NULL, type text NOT NULL, hash text NOT NULL,
    prev_hash text NOT NULL, hash_ok boolean NOT NULL, topic text NOT NULL, payload bytea NOT NULL,
    received_at timestamptz NOT NULL, received_id bigserial NOT NULL,
    PRIMARY KEY (site, door, seq, ts)) PARTITION BY RANGE (ts);
CREATE TABLE events_2026_11 PARTITION OF events
    FOR VALUES FROM ('2026-11-01 00:00+08') TO ('2026-12-01 00:00+08');
CREATE TABLE conflicts (id bigserial PRIMARY KEY, site text NOT NULL, door text NOT NULL, seq bigint NOT NULL,
    ts timestamptz NOT NULL, hash text NOT NULL, stored_hash text, reason text NOT NULL, topic text NOT NULL,
    payload bytea NOT NULL, received_at timestamptz NOT NULL);
CREATE TABLE months (month date PRIMARY KEY, partition text NOT NULL, starts timestamptz NOT NULL,
    ends timestamptz NOT NULL, dropped_at timestamptz, dropped_rows bigint);
INSERT INTO months VALUES ('2026-11-01', 'events_2026_11', '2026-11-01 00:00+08', '2026-12-01 00:00+08');
"""


def _rehashed(e: dict, **fields) -> dict:
    changed = {**{k: v for k, v in e.items() if k != "hash"}, **fields}
    return {**changed, "hash": event_hash(changed)}


def test_a_bad_hash_and_broken_links_are_kept_as_anomalies_on_both_archives(archive):
    e = chain(6, "2026-11-29T09:00:00.000+08:00")
    store(archive, _rehashed(e[0], prev_hash="2" * 64))  # #1 not linked to the genesis hash
    store(archive, {**e[1], "detail": {"note": "altered"}})  # #2 altered: its hash is no longer its SHA-256
    store(archive, _rehashed(e[2], prev_hash="1" * 64))  # #3 linked to another #2
    store(archive, e[5])  # #6 first, then a #5 that #6 does not name as its predecessor
    store(archive, _rehashed(e[4], detail={"note": "other"}))
    found = [(a.kind, a.seq, a.detail) for a in archive.anomalies(SITE, DOOR)]
    assert found == [
        ("broken_link", 1, "#1: prev_hash is not the genesis hash"),
        ("bad_hash", 2, f"#2: hash {e[1]['hash'][:12]}… is not the sha-256 of the event"),
        ("broken_link", 2, "#2: prev_hash does not match the hash of the archived #1"),
        ("broken_link", 3, "#3: prev_hash does not match the hash of the archived #2"),
        ("broken_link", 6, "#6: prev_hash does not match the hash of #5"),
    ]
