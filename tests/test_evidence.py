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
from zoneinfo import ZoneInfo

import pytest

from firmware_py.clock import SimulatedClock
from firmware_py.db import open_db, set_meta
from firmware_py.eventstore import EventStore
from firmware_py.events import canonical, event_hash

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config" / "venue.example.toml"
SITE, DOOR = "hn-archive-1", "scan-room"  # the example configuration's
TZ = ZoneInfo("Asia/Shanghai")


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
    return subprocess.run([*(user or []), sys.executable, "-m", "firmware_py.cli", "log", "verify", "--config",
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
