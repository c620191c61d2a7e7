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
