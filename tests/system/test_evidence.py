"""`accessctl log verify` as evidence: read-only, clear about damage, and anchored outside the door.

The chain alone proves nothing to someone with write access to the door's database: an edited
event re-hashed onward, or the tail cut with ``head_seq`` fixed, verifies. What the door
published (its events and its status's chain head) is kept in the monitor's archive, and
``log verify --against ARCHIVE`` checks that the local log still extends it.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from firmware_py.core.clock import SimulatedClock
from firmware_py.core.events import canonical, event_hash
from firmware_py.storage.db import open_db, set_meta
from firmware_py.storage.eventstore import EventStore
from tests.fixtures.constants import REPO, TZ

CONFIG = REPO / "config" / "venue.example.toml"
SITE, DOOR = "hn-archive-1", "scan-room"  # the example configuration's


def door_log(path: Path, count: int, *, start: datetime | None = None) -> Path:
    """A door's event log with ``count`` events, written by the real event store."""
    db = open_db(path)
    clock = SimulatedClock(start or datetime(2026, 11, 23, 9, 0, tzinfo=TZ))
    store = EventStore(db, site=SITE, door=DOOR, clock=clock)
    for i in range(count):
        clock.advance(timedelta(seconds=1))
        store.append("access", "access_denied", direction="in", reason="unknown_credential",
                     credential={"kind": "badge", "masked": f"04****{i:02d}"})
    db.conn.close()
    return path


def verify_cli(db: Path, *args: str, user: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(user or []), sys.executable, "-m", "firmware_py.cli.main", "log", "verify", "--config",
                           str(CONFIG), "--db", str(db), *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO)


# ---------------------------------------------------------------- read-only, missing, damaged (item 21)


@pytest.mark.skipif(os.geteuid() != 0, reason="drops to nobody to take write access away; needs root")
def test_log_verify_reads_a_log_it_has_no_write_access_to():
    work = Path(tempfile.mkdtemp(prefix="accessctl-ro-"))
    try:
        work.chmod(0o755)  # nobody may read the directory and the file, not write them
        db = door_log(work / "events.db", 3)
        db.chmod(0o644)
        before = db.read_bytes()
        proc = verify_cli(db, user=["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "ok 3 events"
        assert db.read_bytes() == before
    finally:
        shutil.rmtree(work)


def test_log_verify_leaves_the_database_file_exactly_as_it_was(tmp_path):
    db = door_log(tmp_path / "events.db", 3)
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE persons")  # the schema would be re-created by a writer
    stamp = (db.read_bytes(), sorted(p.name for p in tmp_path.iterdir()))
    assert verify_cli(db).returncode == 0
    assert (db.read_bytes(), sorted(p.name for p in tmp_path.iterdir())) == stamp


def test_log_verify_on_a_missing_database_is_an_error_not_an_empty_ok(tmp_path):
    proc = verify_cli(tmp_path / "nowhere" / "events.db")
    assert proc.returncode == 2
    assert "no such database" in proc.stderr and "ok" not in proc.stdout
    assert not (tmp_path / "nowhere").exists()


def test_log_verify_on_a_log_without_events_does_not_pass(tmp_path):
    db = open_db(tmp_path / "events.db")
    db.conn.close()
    proc = verify_cli(tmp_path / "events.db")
    assert proc.returncode == 1
    assert "no events" in proc.stdout


def test_log_verify_on_a_file_that_is_not_an_event_log_says_so(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (x)")
    proc = verify_cli(other)
    assert proc.returncode == 2
    assert "not an accessctl event log" in proc.stderr and "Traceback" not in proc.stderr


def test_log_verify_on_a_corrupted_page_gives_a_clear_message_and_exit_2(tmp_path):
    db = door_log(tmp_path / "events.db", 400)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    assert pages > 6
    data = bytearray(db.read_bytes())
    for page in range(2, pages - 1):  # every page but the header page: tables and indexes
        start = page * page_size
        data[start:start + 64] = b"\xa5" * 64
    db.write_bytes(bytes(data))
    proc = verify_cli(db)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "damaged" in proc.stderr and str(db) in proc.stderr


# ---------------------------------------------------------------- anchored outside the door (item 13)


def publish_to_archive(archive_path: Path, db: Path, *, status: bool = True, upto: int | None = None) -> None:
    """What the monitor archives from the door: its events (up to ``upto``) and its status's head."""
    from firmware_py.station.archive.sqlite import Archive

    archive = Archive(archive_path)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT body, hash FROM events ORDER BY seq").fetchall()
    events = [{**json.loads(body), "hash": h} for body, h in rows][:upto]
    for e in events:
        archive.store_event(SITE, DOOR, f"accessctl/{SITE}/{DOOR}/events/{e['category']}/{e['type']}",
                            json.dumps(e, ensure_ascii=False).encode(), e, e["ts"])
    if status and events:
        archive.store_status(SITE, DOOR, "status", {"online": True, "last_seq": events[-1]["seq"],
                                                    "last_hash": events[-1]["hash"], "queued": 0}, events[-1]["ts"])
    archive.close()


def rewrite_from(db: Path, seq: int, change) -> None:
    """Edit event ``seq`` and re-hash the chain from there on, as someone with write access would."""
    with sqlite3.connect(db) as conn:
        prev = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq - 1,)).fetchone()[0]
        for s, body in conn.execute("SELECT seq, body FROM events WHERE seq >= ? ORDER BY seq", (seq,)).fetchall():
            e = json.loads(body)
            if s == seq:
                change(e)
            e["prev_hash"] = prev
            prev = event_hash(e)
            conn.execute("UPDATE events SET body = ?, prev_hash = ?, hash = ?, ts = ?, type = ? WHERE seq = ?",
                         (canonical(e), e["prev_hash"], prev, e["ts"], e["type"], s))


def cut_tail(db: Path, keep: int) -> None:
    """Delete the events after ``keep`` and set head_seq to match, as someone with write access would."""
    conn = open_db(db)
    conn.execute("DELETE FROM outbox WHERE seq > ?", (keep,))
    conn.execute("DELETE FROM events WHERE seq > ?", (keep,))
    set_meta(conn, "head_seq", keep)
    conn.conn.close()


@pytest.fixture
def published(tmp_path):
    """A door log of 5 events and the monitor's archive of what it published."""
    db = door_log(tmp_path / "events.db", 5)
    publish_to_archive(tmp_path / "archive.db", db)
    return db, tmp_path / "archive.db"


def test_a_log_that_extends_what_was_published_verifies_against_the_archive(published):
    db, archive = published
    door_log_more = door_log(db, 2, start=datetime(2026, 11, 23, 10, 0, tzinfo=TZ))  # the door went on
    proc = verify_cli(door_log_more, "--against", str(archive))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok 7 events" in proc.stdout and f"extends what {SITE}/{DOOR} published" in proc.stdout


def test_an_edited_event_rehashed_onward_verifies_alone_but_not_against_the_archive(published):
    db, archive = published
    rewrite_from(db, 3, lambda e: e.update(reason="revoked"))
    assert verify_cli(db).returncode == 0  # the chain alone proves nothing to someone with write access
    proc = verify_cli(db, "--against", str(archive))
    assert proc.returncode == 1
    assert "does not extend what" in proc.stdout and "#3 differs from the published copy" in proc.stdout
    assert "#5 differs" in proc.stdout


def test_a_tail_cut_with_head_seq_fixed_verifies_alone_but_not_against_the_archive(published):
    db, archive = published
    cut_tail(db, 3)
    assert verify_cli(db).returncode == 0
    proc = verify_cli(db, "--against", str(archive))
    assert proc.returncode == 1
    assert "the log ends at #3 but the door published up to #5" in proc.stdout


def test_a_cut_tail_is_found_from_the_status_head_alone(tmp_path):
    db = door_log(tmp_path / "events.db", 5)
    publish_to_archive(tmp_path / "archive.db", db, upto=2)  # events 3-5 never reached the monitor …
    from firmware_py.station.archive.sqlite import Archive

    archive = Archive(tmp_path / "archive.db")
    with sqlite3.connect(db) as conn:
        head = conn.execute("SELECT hash FROM events WHERE seq = 5").fetchone()[0]
    archive.store_status(SITE, DOOR, "status", {"last_seq": 5, "last_hash": head}, "now")  # … its status did
    archive.close()
    cut_tail(db, 4)
    proc = verify_cli(db, "--against", str(tmp_path / "archive.db"))
    assert proc.returncode == 1 and "the door published up to #5" in proc.stdout


def test_a_log_replaced_wholesale_shares_nothing_with_the_archive(published, tmp_path):
    _, archive = published
    other = door_log(tmp_path / "other.db", 5, start=datetime(2026, 11, 23, 9, 30, tzinfo=TZ))
    proc = verify_cli(other, "--against", str(archive))
    assert proc.returncode == 1
    assert "shares no event with the archive" in proc.stdout


def test_after_a_reset_the_new_log_verifies_against_the_archives_new_epoch(published, tmp_path):
    _, archive = published
    fresh = door_log(tmp_path / "fresh.db", 2, start=datetime(2026, 11, 23, 11, 0, tzinfo=TZ))
    publish_to_archive(archive, fresh)
    proc = verify_cli(fresh, "--against", str(archive))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "epoch 2" in proc.stdout


def test_the_old_log_does_not_pass_once_the_door_published_a_newer_chain(published, tmp_path):
    db, archive = published
    publish_to_archive(archive, door_log(tmp_path / "fresh.db", 2, start=datetime(2026, 11, 23, 11, 0, tzinfo=TZ)))
    proc = verify_cli(db, "--against", str(archive))
    assert proc.returncode == 1 and "newer chain (epoch 2" in proc.stdout


def test_verify_against_an_archive_that_never_saw_this_door_is_an_error(tmp_path):
    from firmware_py.station.archive.sqlite import Archive

    db = door_log(tmp_path / "events.db", 2)
    Archive(tmp_path / "archive.db").close()
    proc = verify_cli(db, "--against", str(tmp_path / "archive.db"))
    assert proc.returncode == 2 and f"holds nothing of {SITE}/{DOOR}" in proc.stderr


def test_verify_against_a_missing_archive_is_an_error(tmp_path):
    db = door_log(tmp_path / "events.db", 2)
    proc = verify_cli(db, "--against", str(tmp_path / "none.db"))
    assert proc.returncode == 2 and "no such archive" in proc.stderr
    assert not (tmp_path / "none.db").exists()


# ---------------------------------------------------------------- a forged #1 opens no way round the archive


def at(hh: int, mm: int, ss: int = 0, *, day: int = 23, year: int = 2026) -> datetime:
    return datetime(year, 11, day, hh, mm, ss, tzinfo=TZ)


def publish(archive_path: Path, events: list[dict], received_at: datetime) -> None:
    """Events reaching the monitor at ``received_at`` (its clock, not the events' own times)."""
    from firmware_py.station.archive.sqlite import Archive

    archive = Archive(archive_path)
    when = received_at.isoformat(timespec="milliseconds")
    for e in events:
        archive.store_event(SITE, DOOR, f"accessctl/{SITE}/{DOOR}/events/{e['category']}/{e['type']}",
                            json.dumps(e, ensure_ascii=False).encode(), e, when)
    archive.close()


def log_events(db: Path, first: int = 1) -> list[dict]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT body, hash FROM events WHERE seq >= ? ORDER BY seq", (first,)).fetchall()
    return [{**json.loads(body), "hash": h} for body, h in rows]


def forged_log(path: Path, first_at: datetime, *, then: int = 0, then_at: datetime | None = None) -> Path:
    """What someone with the door's account and write access to its database makes: a new chain whose #1
    (at ``first_at``) they publish, then ``then`` events from ``then_at`` (the morning told again)."""
    door_log(path, 1, start=first_at - timedelta(seconds=1))
    if then:
        door_log(path, then, start=then_at)
    return path


def epoch_numbers(archive_path: Path) -> list[int]:
    from firmware_py.station.archive.sqlite import Archive

    archive = Archive(archive_path, read_only=True)
    try:
        return [e.epoch for e in archive.epochs(SITE, DOOR)]
    finally:
        archive.close()


@pytest.fixture
def forged_first(published, tmp_path):
    """The door published #1-#5 (09:00:01-09:00:05); at 09:30 a forged #1 (a new chain) reached the
    monitor, opening epoch 2; the log the forger wrote goes on with the morning told again (#2-#4 from
    09:00, without the morning's real events)."""
    genuine, archive = published
    forged = forged_log(tmp_path / "forged.db", at(9, 30), then=3, then_at=at(9, 0))
    publish(archive, log_events(forged)[:1], received_at=at(9, 30, 2))
    assert epoch_numbers(archive) == [1, 2]
    assert verify_cli(forged).returncode == 0  # the forged chain verifies alone
    return genuine, forged, archive


def door_goes_on(genuine: Path, archive: Path, *, start: datetime | None = None) -> None:
    """The real door was never reset: it goes on with #6 and #7, which reach the monitor at once."""
    start = start or at(10, 0)
    door_log(genuine, 2, start=start)
    publish(archive, log_events(genuine, 6), received_at=start + timedelta(seconds=3))


def test_a_forged_first_event_does_not_let_a_rewritten_log_pass_once_the_door_goes_on(forged_first):
    genuine, forged, archive = forged_first
    door_goes_on(genuine, archive)

    proc = verify_cli(forged, "--against", str(archive))

    assert proc.returncode == 1, proc.stdout
    assert "does not extend what" in proc.stdout
    assert "epoch 2 is not this door's chain" in proc.stdout
    assert "the chain of epoch 1 went on after epoch 2 began (#6" in proc.stdout


def test_the_genuine_log_still_passes_after_a_forged_first_event_once_the_door_goes_on(forged_first):
    genuine, _, archive = forged_first
    door_goes_on(genuine, archive)

    proc = verify_cli(genuine, "--against", str(archive))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"extends what {SITE}/{DOOR} published (epoch 1" in proc.stdout
    assert "epoch 2 is not this door's chain" in proc.stdout  # said, not hidden


def test_a_rewritten_log_holding_events_from_before_the_old_head_does_not_pass_against_the_new_epoch(forged_first):
    _, forged, archive = forged_first  # the door has not gone on (yet): epoch 2 is the latest chain

    proc = verify_cli(forged, "--against", str(archive))

    assert proc.returncode == 1, proc.stdout
    assert "the log's #2 (2026-11-23T09:00:01" in proc.stdout
    assert "and 2 more do not follow the head of epoch 1 (#5 at 2026-11-23T09:00:05" in proc.stdout


def test_a_forged_chain_published_with_times_before_the_old_head_is_not_the_doors(forged_first):
    genuine, forged, archive = forged_first
    publish(archive, log_events(forged, 2), received_at=at(9, 31))  # the forger publishes the morning again
    assert epoch_numbers(archive) == [1, 2]

    rewritten = verify_cli(forged, "--against", str(archive))
    real = verify_cli(genuine, "--against", str(archive))

    assert rewritten.returncode == 1, rewritten.stdout
    assert "epoch 2 is not this door's chain: its #2 (2026-11-23T09:00:01" in rewritten.stdout
    assert real.returncode == 0, real.stdout + real.stderr
    assert f"extends what {SITE}/{DOOR} published (epoch 1" in real.stdout


def test_a_forged_first_event_dated_in_the_future_is_not_the_doors_once_the_door_goes_on(published, tmp_path):
    genuine, archive = published
    forged = forged_log(tmp_path / "forged.db", at(9, 0, day=23, year=2030))
    publish(archive, log_events(forged), received_at=at(9, 30))  # it follows the old head in time …
    door_goes_on(genuine, archive)  # … but the door's own chain goes on after it

    rewritten = verify_cli(forged, "--against", str(archive))
    real = verify_cli(genuine, "--against", str(archive))

    assert rewritten.returncode == 1 and "epoch 2 is not this door's chain" in rewritten.stdout, rewritten.stdout
    assert real.returncode == 0, real.stdout + real.stderr


def test_a_real_reset_after_a_forged_epoch_is_checked_against_the_first_chain(forged_first, tmp_path):
    genuine, _, archive = forged_first
    door_goes_on(genuine, archive)  # epoch 2 was forged: the door went on
    fresh = door_log(tmp_path / "fresh.db", 2, start=at(11, 0))  # then its database really was reset
    publish(archive, log_events(fresh), received_at=at(11, 0, 5))
    assert epoch_numbers(archive) == [1, 2, 3]

    new = verify_cli(fresh, "--against", str(archive))
    old = verify_cli(genuine, "--against", str(archive))

    assert new.returncode == 0 and "(epoch 3" in new.stdout, new.stdout + new.stderr
    assert old.returncode == 1 and "newer chain (epoch 3" in old.stdout, old.stdout


def test_a_door_that_goes_on_only_by_replaying_old_seqs_has_not_resumed_its_old_chain(published, tmp_path):
    db, archive = published
    fresh = door_log(tmp_path / "fresh.db", 2, start=at(11, 0))
    publish(archive, log_events(fresh), received_at=at(11, 0, 5))  # a real reset
    publish(archive, log_events(db)[2:4], received_at=at(11, 5))  # late copies of old seqs (a replay, a broker)

    proc = verify_cli(fresh, "--against", str(archive))

    assert proc.returncode == 0 and "(epoch 2" in proc.stdout, proc.stdout + proc.stderr


@pytest.fixture
def monitor(mosquitto_broker, tmp_path):
    """The real monitor archiving the door from the test broker into tmp_path/archive.db."""
    from firmware_py.station.ingest.ingest import Ingest
    from tests.system.test_monitor import supervisor_settings

    m = Ingest(supervisor_settings(mosquitto_broker), tmp_path / "archive.db", site=SITE, door=DOOR,
                beacon_interval_s=None, out=lambda line: None)
    m.start()
    yield m
    m.close()


def test_through_the_monitor_a_forged_first_event_from_the_doors_account_gains_nothing(monitor, mosquitto_broker,
                                                                                       tmp_path):
    """The attack end to end: the door's own account publishes the forged #1 to the real monitor."""
    from simulator.lab_broker import door_username

    genuine = door_log(tmp_path / "events.db", 5)
    account = mosquitto_broker.connect(door_username(DOOR))

    def send(events: list[dict]) -> None:
        for e in events:
            account.publish(mosquitto_broker.topic(DOOR, "events", e["category"], e["type"]), json.dumps(e), qos=1)

    send(log_events(genuine))
    assert monitor.wait_for_seq(SITE, DOOR, 5, timeout=10, contiguous=True)
    forged = forged_log(tmp_path / "forged.db", at(9, 30), then=3, then_at=at(9, 0))
    send(log_events(forged)[:1])
    assert monitor.wait_until(lambda: len(monitor.archive.epochs(SITE, DOOR)) == 2, 10)
    door_log(genuine, 2, start=at(10, 0))  # the real door goes on
    send(log_events(genuine, 6))
    assert monitor.wait_until(lambda: len(monitor.events(SITE, DOOR, epoch=1)) == 7, 10)
    monitor.stop()

    rewritten = verify_cli(forged, "--against", str(tmp_path / "archive.db"))
    real = verify_cli(genuine, "--against", str(tmp_path / "archive.db"))

    assert rewritten.returncode == 1 and "epoch 2 is not this door's chain" in rewritten.stdout, rewritten.stdout
    assert real.returncode == 0, real.stdout + real.stderr
