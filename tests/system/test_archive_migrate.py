"""`accessctl station archive migrate`: an SQLite archive written by the monitor's own code
(:meth:`Archive.store_event`) moved into a real PostgreSQL 15 (one empty database per test)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from firmware_py.cli.main import main
from firmware_py.core.events import GENESIS_HASH, event_hash
from firmware_py.station.archive.pg import Incoming, PgArchive
from firmware_py.station.archive.sqlite import Archive

log = logging.getLogger(__name__)

SITE = "hn-archive-1"
CST = timezone(timedelta(hours=8))
MASKED = "430102********123X"


def make_events(door: str, count: int, *, start: datetime = datetime(2026, 10, 31, 22, 0, tzinfo=CST),
                step: timedelta = timedelta(seconds=30), prev: str = GENESIS_HASH) -> list[dict]:
    """A hash-chained log of ``door`` from seq 1 (shaped as tests/system/test_monitor.py's make_events)."""
    events = []
    for seq in range(1, count + 1):
        e = {"seq": seq, "ts": (start + (seq - 1) * step).isoformat(timespec="milliseconds"), "site": SITE,
             "door": door, "category": "access", "type": "access_granted", "direction": "in",
             "person": {"person_id": "P001", "name": "测试员甲", "role": "staff"},
             "credential": {"kind": "resident_id", "masked": MASKED}, "reason": None, "detail": {},
             "prev_hash": prev}
        e["hash"] = event_hash(e)
        prev = e["hash"]
        events.append(e)
    return events


def altered(e: dict, name: str = "测试员乙") -> dict:
    """Another, self-consistent copy of ``e`` (its own hash right): a conflicting copy."""
    copy = {**e, "person": {**e["person"], "name": name}}
    copy.pop("hash")
    copy["hash"] = event_hash(copy)
    return copy


def topic(e: dict) -> str:
    return f"accessctl/{SITE}/{e['door']}/events/{e['category']}/{e['type']}"


def store_all(archive: Archive, events: list[dict]) -> None:
    for e in events:
        archive.store_event(SITE, e["door"], topic(e), json.dumps(e, ensure_ascii=False).encode(), e,
                            "2026-11-23T10:00:00.000+08:00")


def build(path, *chains: list[dict], fast: bool = False) -> None:
    archive = Archive(path)
    if fast:  # test set-up only: the events are the same, the file just is not fsynced per event
        archive.db.execute("PRAGMA synchronous=OFF")
    try:
        for events in chains:
            store_all(archive, events)
    finally:
        archive.close()


def migrate(capsys, db, url, *extra: str) -> tuple[int, str, str]:
    code = main(["station", "archive", "migrate", "--from", str(db), "--to", url, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def pg_rows(url: str, query: str, params=()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def sqlite_rows(db, query: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def summary_numbers(out: str) -> dict[str, int]:
    m = re.search(r"events: (\d+) in the SQLite archive: (\d+) copied, (\d+) already there, (\d+) conflicting with "
                  r"PostgreSQL, (\d+) of dropped months, (\d+) refused", out)
    assert m, out
    return dict(zip(("events", "copied", "already", "conflicts", "dropped", "refused"), map(int, m.groups())))


@pytest.fixture
def archive_db(tmp_path):
    """Two doors (one spanning a month boundary) and one conflicting copy the monitor kept."""
    db = tmp_path / "archive.db"
    scan, vault = make_events("scan-room", 300), make_events("vault", 120, step=timedelta(minutes=3))
    build(db, scan, vault, [altered(scan[4])])
    return db


# ---------------------------------------------------------------- a complete copy


def test_an_archive_made_by_the_monitor_migrates_completely_and_verifies(capsys, archive_db, postgres_url):
    assert sqlite_rows(archive_db, "SELECT count(*) FROM conflicts") == [(1,)]  # the monitor kept the copy

    code, out, _ = migrate(capsys, archive_db, postgres_url)

    assert code == 0, out
    assert summary_numbers(out) == {"events": 420, "copied": 420, "already": 0, "conflicts": 0, "dropped": 0,
                                    "refused": 0}
    assert pg_rows(postgres_url, "SELECT door, count(*), count(DISTINCT seq) FROM events GROUP BY door ORDER BY door") \
        == [("scan-room", 300, 300), ("vault", 120, 120)]
    assert pg_rows(postgres_url, "SELECT count(*) FROM event_keys") == [(420,)]
    local = sqlite_rows(archive_db, "SELECT site, door, seq, hash FROM events ORDER BY site, door, seq")
    assert pg_rows(postgres_url, "SELECT site, door, seq::int, hash FROM events ORDER BY site, door, seq") == local
    assert pg_rows(postgres_url, "SELECT min(seq), max(seq) FROM events WHERE door = 'vault'") == [(1, 120)]


def test_the_payloads_arrive_byte_for_byte_and_the_months_get_their_partitions(capsys, archive_db, postgres_url):
    migrate(capsys, archive_db, postgres_url)

    local = sqlite_rows(archive_db, "SELECT door, seq, payload FROM events ORDER BY door, seq")
    assert [(d, s, bytes(p)) for d, s, p in pg_rows(postgres_url, "SELECT door, seq::int, payload FROM events"
                                                                   " ORDER BY door, seq")] == local
    parts = pg_rows(postgres_url, "SELECT c.relname FROM pg_inherits JOIN pg_class c ON c.oid = inhrelid"
                                  " WHERE inhparent = 'events'::regclass ORDER BY 1")
    assert parts == [("events_2026_10",), ("events_2026_11",)]


def test_the_conflicting_copies_the_monitor_kept_land_in_postgres_conflicts(capsys, archive_db, postgres_url):
    kept = sqlite_rows(archive_db, "SELECT door, seq, hash, payload FROM conflicts")

    code, out, _ = migrate(capsys, archive_db, postgres_url)

    assert code == 0, out
    assert "conflicting copies kept by the SQLite archive: 1: 1 carried into conflicts" in out
    rows = pg_rows(postgres_url, "SELECT door, seq::int, hash, payload, reason, stored_hash FROM conflicts")
    assert [(d, s, h, bytes(p)) for d, s, h, p, _, _ in rows] == kept
    original = sqlite_rows(archive_db, "SELECT hash FROM events WHERE door = 'scan-room' AND seq = 5")[0][0]
    assert rows[0][4:] == ("conflicting_copy", original)


def test_the_sqlite_archive_is_not_written(capsys, archive_db, postgres_url):
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in archive_db.parent.iterdir()}

    migrate(capsys, archive_db, postgres_url)

    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in archive_db.parent.iterdir()} == before


def test_the_output_says_accounts_acknowledgements_and_audit_are_not_migrated(capsys, archive_db, postgres_url):
    _, out, _ = migrate(capsys, archive_db, postgres_url)

    assert re.search(r"not migrated: station accounts, sessions, alarm acknowledgements and the audit trail", out)


# ---------------------------------------------------------------- running again, conflicts, refusals


def test_a_second_run_copies_nothing_new(capsys, archive_db, postgres_url):
    migrate(capsys, archive_db, postgres_url)
    before = pg_rows(postgres_url, "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM conflicts)")

    code, out, _ = migrate(capsys, archive_db, postgres_url)

    assert code == 0, out
    assert summary_numbers(out) == {"events": 420, "copied": 0, "already": 420, "conflicts": 0, "dropped": 0,
                                    "refused": 0}
    assert "1 carried into conflicts" not in out and "1 already there" in out
    assert pg_rows(postgres_url, "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM conflicts)") == before


def test_an_event_postgres_holds_with_another_hash_is_reported_and_kept_in_conflicts(capsys, archive_db, postgres_url):
    theirs = altered(json.loads(sqlite_rows(archive_db, "SELECT payload FROM events WHERE door = 'vault'"
                                                        " AND seq = 7")[0][0]), name="测试员丙")
    pg = PgArchive(postgres_url)
    pg.store_events([Incoming(SITE, "vault", topic(theirs), json.dumps(theirs).encode(), theirs,
                              "2026-11-20T10:00:00+08:00")])
    pg.close()

    code, out, _ = migrate(capsys, archive_db, postgres_url)

    assert code == 1, out
    assert f"conflict: {SITE}/vault #7: PostgreSQL holds hash {theirs['hash'][:12]}…" in out
    assert summary_numbers(out)["conflicts"] == 1 and summary_numbers(out)["copied"] == 419
    ours = sqlite_rows(archive_db, "SELECT hash FROM events WHERE door = 'vault' AND seq = 7")[0][0]
    assert pg_rows(postgres_url, "SELECT hash, stored_hash FROM conflicts WHERE door = 'vault'") == \
        [(ours, theirs["hash"])]
    assert pg_rows(postgres_url, "SELECT hash FROM events WHERE door = 'vault' AND seq = 7") == [(theirs["hash"],)]


def test_a_conflict_reported_again_on_a_second_run_adds_no_conflict_row(capsys, archive_db, postgres_url):
    theirs = altered(json.loads(sqlite_rows(archive_db, "SELECT payload FROM events WHERE door = 'vault'"
                                                        " AND seq = 7")[0][0]), name="测试员丙")
    pg = PgArchive(postgres_url)
    pg.store_events([Incoming(SITE, "vault", topic(theirs), json.dumps(theirs).encode(), theirs,
                              "2026-11-20T10:00:00+08:00")])
    pg.close()
    migrate(capsys, archive_db, postgres_url)
    conflicts = pg_rows(postgres_url, "SELECT count(*) FROM conflicts")

    code, out, _ = migrate(capsys, archive_db, postgres_url)

    assert code == 1, out
    assert summary_numbers(out)["conflicts"] == 1
    assert pg_rows(postgres_url, "SELECT count(*) FROM conflicts") == conflicts


def test_every_epoch_is_copied_into_its_own_epoch_and_a_second_run_adds_nothing(capsys, tmp_path, postgres_url):
    db = tmp_path / "reset.db"
    first = make_events("scan-room", 40)
    after_reset = make_events("scan-room", 6, start=datetime(2026, 11, 20, 9, 0, tzinfo=CST))
    second_reset = make_events("scan-room", 3, start=datetime(2026, 11, 21, 9, 0, tzinfo=CST))
    build(db, first, after_reset, second_reset)
    assert sqlite_rows(db, "SELECT epoch, count(*) FROM events GROUP BY epoch") == [(1, 40), (2, 6), (3, 3)]

    code, out, _ = migrate(capsys, db, postgres_url)

    assert code == 0, out
    assert summary_numbers(out)["refused"] == 0 and summary_numbers(out)["copied"] == 49
    assert pg_rows(postgres_url, "SELECT epoch, seq::int, hash FROM events ORDER BY epoch, seq") == \
        sqlite_rows(db, "SELECT epoch, seq, hash FROM events ORDER BY epoch, seq")
    assert pg_rows(postgres_url, "SELECT epoch FROM epochs WHERE current") == [(3,)]

    code, out, _ = migrate(capsys, db, postgres_url)

    assert code == 0, out
    assert summary_numbers(out)["already"] == 49 and summary_numbers(out)["copied"] == 0


# ---------------------------------------------------------------- usage errors


def one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_a_missing_sqlite_file_is_a_one_line_error_with_exit_2(capsys, tmp_path, postgres_url):
    code, _, err = migrate(capsys, tmp_path / "nowhere.db", postgres_url)

    assert "nowhere.db: no such file" in one_line_error(code, err)


def test_a_file_that_is_not_an_archive_is_a_one_line_error_with_exit_2(capsys, tmp_path, postgres_url):
    text = tmp_path / "notes.db"
    text.write_text("not a database\n" * 100)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("CREATE TABLE other (x)").connection.close()

    for path, words in ((text, "not an archive"), (empty, "not a monitor archive")):
        code, _, err = migrate(capsys, path, postgres_url)
        assert words in one_line_error(code, err)


def test_an_unreachable_postgresql_is_a_one_line_error_with_exit_2(capsys, archive_db):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    code, _, err = migrate(capsys, archive_db, f"postgresql://station:secret@127.0.0.1:{port}/archive")

    line = one_line_error(code, err)
    assert "cannot open the PostgreSQL archive" in line and "secret" not in line


def test_a_target_that_is_not_a_postgresql_url_is_a_one_line_error_with_exit_2(capsys, archive_db):
    code, _, err = migrate(capsys, archive_db, "mysql://station@127.0.0.1/archive")

    assert "postgresql://" in one_line_error(code, err)


def test_a_batch_below_one_is_a_usage_error(capsys, archive_db, postgres_url):
    code, _, err = migrate(capsys, archive_db, postgres_url, "--batch", "0")

    assert "--batch 0" in one_line_error(code, err)


# ---------------------------------------------------------------- a larger archive


def test_a_larger_archive_shows_progress_and_migrates_completely(capsys, tmp_path, postgres_url):
    db = tmp_path / "large.db"
    t0 = time.monotonic()
    build(db, make_events("scan-room", 12_000, step=timedelta(seconds=7)),
          make_events("vault", 8_000, step=timedelta(seconds=11)), fast=True)
    built_s = time.monotonic() - t0

    code, out, _ = migrate(capsys, db, postgres_url)

    assert code == 0, out
    progress = re.findall(r"progress: (\d+)/20000 rows \(\d+ %\), (\d+) rows/s", out)
    assert [int(done) for done, _ in progress] == [10_000, 20_000]
    assert pg_rows(postgres_url, "SELECT door, count(*) FROM events GROUP BY door ORDER BY door") == \
        [("scan-room", 12_000), ("vault", 8_000)]
    rate = re.search(r"20000 rows in ([\d.]+) s \((\d+) rows/s\)", out)
    log.warning("archive of 20,000 events built through Archive.store_event in %.1f s; migrated in %s s (%s rows/s)",
                built_s, rate.group(1), rate.group(2))


def test_a_row_whose_payload_is_not_an_event_is_refused_by_name_and_the_rest_copied(capsys, archive_db,
                                                                                      postgres_url):
    conn = sqlite3.connect(archive_db)  # the file altered behind the monitor's back
    conn.execute("UPDATE events SET payload = ? WHERE door = 'vault' AND seq = 9", (b"\x00not json",))
    conn.commit()
    conn.close()

    code, out, _ = migrate(capsys, archive_db, postgres_url)

    assert code == 1, out
    assert f"refused: {SITE}/vault #9: its payload is not JSON" in out
    assert summary_numbers(out)["refused"] == 1 and summary_numbers(out)["copied"] == 419
    assert pg_rows(postgres_url, "SELECT count(*) FROM events WHERE door = 'vault' AND seq = 9") == [(0,)]


# ---------------------------------------------------------------- the station's configuration


def station_toml(path, archive: str):
    """A station configuration whose [archive] is ``archive`` (the broker is never contacted here)."""
    password = path.parent / "station.password"
    password.write_text("not used\n")
    path.write_text(f'[broker]\nurl = "mqtt://127.0.0.1:1883"\nusername = "station"\npassword_file = "{password}"\n\n'
                    f'[archive]\npath = "{archive}"\n\n[web]\nlisten = "127.0.0.1:8080"\ntimezone = "Asia/Shanghai"\n')
    return path


def test_without_to_the_station_configurations_postgresql_archive_is_the_target(capsys, archive_db, postgres_url,
                                                                                tmp_path):
    config = station_toml(tmp_path / "station.toml", postgres_url)
    code = main(["station", "archive", "migrate", "--from", str(archive_db), "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert summary_numbers(out)["copied"] == 420
    assert pg_rows(postgres_url, "SELECT count(*) FROM events") == [(420,)]


def test_a_configuration_whose_archive_is_sqlite_is_no_target_and_says_so(capsys, archive_db, tmp_path):
    config = station_toml(tmp_path / "station.toml", str(tmp_path / "other.db"))
    code = main(["station", "archive", "migrate", "--from", str(archive_db), "--config", str(config)])
    _, err = capsys.readouterr()
    assert code == 2
    assert f"[archive] {tmp_path / 'other.db'} is not a PostgreSQL archive" in err and "--to" in err
    assert not (tmp_path / "other.db").exists()


# ---------------------------------------------------------------- planted rows spoil only themselves


def plant(db, door: str, seq: int, change) -> None:
    """Rewrite the stored payload of ``door``'s #``seq`` behind the monitor's back: ``change`` gets the
    event and returns the new payload (bytes) or edits the event in place."""
    conn = sqlite3.connect(db)
    try:
        (payload,) = conn.execute("SELECT payload FROM events WHERE door = ? AND seq = ?", (door, seq)).fetchone()
        event = json.loads(payload)
        new = change(event)
        conn.execute("UPDATE events SET payload = ? WHERE door = ? AND seq = ?",
                     (new if isinstance(new, bytes) else json.dumps(event, ensure_ascii=False).encode(), door, seq))
        conn.commit()
    finally:
        conn.close()


def renumber(db, door: str, seq: int, new_seq: int) -> None:
    """Move ``door``'s #``seq`` to ``new_seq`` (its row and its payload alike)."""
    plant(db, door, seq, lambda e: e.update(seq=new_seq))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE events SET seq = ? WHERE door = ? AND seq = ?", (new_seq, door, seq))
    conn.commit()
    conn.close()


@pytest.fixture
def planted(tmp_path):
    """Three doors; the first two each hold rows that no archive can take, planted in the file."""
    db = tmp_path / "planted.db"
    build(db, make_events("archive-hall", 60), make_events("scan-room", 300),
          make_events("vault", 120, step=timedelta(minutes=3)))
    plant(db, "archive-hall", 7, lambda e: e.update(ts="9999-12-31T23:59:59.000+08:00"))
    plant(db, "archive-hall", 8, lambda e: json.dumps(e).replace('"detail": {}', '"detail": {"v": NaN}').encode())
    plant(db, "archive-hall", 9, lambda e: e.update(ts="0001-01-01T00:00:00.000+08:00"))
    plant(db, "scan-room", 20, lambda e: e.update(type="access\u0000granted"))
    plant(db, "scan-room", 21, lambda e: e.update(door="scan\u0007room"))
    renumber(db, "scan-room", 300, 2**63 - 1)
    conn = sqlite3.connect(db)  # a topic PostgreSQL cannot hold (text with a NUL): only PostgreSQL says so
    conn.execute("UPDATE events SET topic = topic || char(0) WHERE door = 'vault' AND seq = 50")
    conn.commit()
    conn.close()
    return db


def test_planted_rows_are_listed_and_every_good_row_of_every_door_is_copied(capsys, planted, postgres_url):
    code, out, err = migrate(capsys, planted, postgres_url)

    assert code == 1, out + err
    assert "Traceback" not in err
    for door, seq, why in (("archive-hall", 7, "9999-12-31T23:59:59.000+08:00"), ("archive-hall", 8, "NaN"),
                           ("archive-hall", 9, "0001-01-01"), ("scan-room", 20, "control character"),
                           ("scan-room", 21, "door"), ("scan-room", 2**63 - 1, "2^53"),
                           ("vault", 50, "PostgreSQL refused it")):
        assert re.search(rf"refused: {SITE}/{door} #{seq}: .*{re.escape(why)}", out), (door, seq, out)
    assert summary_numbers(out)["refused"] == 7 and summary_numbers(out)["copied"] == 473
    assert pg_rows(postgres_url, "SELECT door, count(*) FROM events GROUP BY door ORDER BY door") == \
        [("archive-hall", 57), ("scan-room", 297), ("vault", 119)]


def test_a_second_run_over_planted_rows_copies_nothing_new_and_lists_them_again(capsys, planted, postgres_url):
    migrate(capsys, planted, postgres_url)

    code, out, _ = migrate(capsys, planted, postgres_url)

    assert code == 1, out
    assert summary_numbers(out) == {"events": 480, "copied": 0, "already": 473, "conflicts": 0, "dropped": 0,
                                    "refused": 7}
