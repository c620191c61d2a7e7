"""The door when its storage misbehaves: a write lock held elsewhere, a full disk, a lost log or secret.

Real SQLite files, the real drivers on mock pins and the real service loop;
the disk-full case uses a small tmpfs mounted for the test (the suite runs as root).
"""

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from firmware_py.config.schema import load_config
from firmware_py.core.clock import SimulatedClock
from firmware_py.core.inputs import BadgeRead
from firmware_py.errors import SecretError, StoreError
from simulator.door_sim import SimulatedDoor
from simulator.runner import prepare_database, read_people
from simulator.scenario import Scenario
from tests.fixtures.constants import PEOPLE, REPO, TZ

P001_BADGE = read_people(PEOPLE)["P001"].badges[0]
GENEROUS_S = 2.0  # the busy timeout the loop used to wait was 10 s


def door_config(directory: Path):
    cfg = load_config(REPO / "config" / "venue.example.toml")
    return replace(cfg, storage=replace(cfg.storage, database=directory / "events.db", secret=directory / "device.key"),
                   mqtt=replace(cfg.mqtt, enabled=False))


def prepared(directory: Path, clock=None):
    cfg = door_config(directory)
    clock = clock or SimulatedClock(datetime(2026, 11, 23, 9, 0, tzinfo=TZ))
    prepare_database(cfg, Scenario(directory / "t.toml", "t", clock.now(), cfg.path, PEOPLE, ()), clock)
    return cfg, clock


@pytest.fixture
def door(tmp_path):
    cfg, clock = prepared(tmp_path)
    with SimulatedDoor(cfg, clock=clock, badges=False) as d:
        yield d


def stored(door) -> list[dict]:
    with sqlite3.connect(door.cfg.storage.database) as c:
        return [json.loads(b) for (b,) in c.execute("SELECT body FROM events ORDER BY seq")]


class WriteLock:
    """Another process's connection holding the database's write lock (BEGIN IMMEDIATE)."""

    def __init__(self, path):
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *exc):
        self.conn.execute("COMMIT")
        self.conn.close()


class LoopThread:
    """The service's own loop (Service.run) on a thread, as `accessctl run` runs it."""

    def __init__(self, door):
        self.service = door.service
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.service.start = lambda: None  # SimulatedDoor already started it

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.service.request_stop(signal.SIGTERM)
        self.thread.join(20)
        assert not self.thread.is_alive(), "the service loop did not stop"


def wait_for(predicate, timeout=GENEROUS_S * 5, what="it"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.005)


# ---------------------------------------------------------------------- lock contention


def test_the_exit_button_releases_at_once_while_another_process_holds_the_write_lock(door):
    with LoopThread(door) as loop, WriteLock(door.cfg.storage.database):
        t0 = time.monotonic()
        door.world.press_exit(hold_s=0.005)
        wait_for(lambda: door.lock_released, what="the release")
        latency = time.monotonic() - t0
        assert latency < GENEROUS_S
        time.sleep(0.2)
        assert loop.thread.is_alive()
    print(f"exit-button release latency under a held write lock: {latency * 1000:.1f} ms")


def test_an_exit_press_the_database_refused_is_stored_later_with_its_own_time(door):
    pressed_at = door.clock.now()
    with WriteLock(door.cfg.storage.database):
        door.press_exit()
        assert door.lock_released
        assert "exit_button" not in [e["type"] for e in stored(door)]
        door.clock.advance(30)
    door.controller.store_backlog()  # what the service loop does on every turn
    events = stored(door)
    exit_event = next(e for e in events if e["type"] == "exit_button")
    stored_precision = pressed_at.replace(microsecond=pressed_at.microsecond // 1000 * 1000)  # milliseconds
    assert datetime.fromisoformat(exit_event["ts"]) == stored_precision


def test_storage_trouble_is_raised_as_a_hardware_fault_once_the_store_works_again(door):
    with WriteLock(door.cfg.storage.database):
        door.press_exit()
        assert "storage" in door.controller.status()["faults"]
    door.controller.store_backlog()
    faults = [e["detail"] for e in stored(door) if e["type"] == "hardware_fault"]
    assert [(f["device"], f["state"]) for f in faults] == [("storage", "fault"), ("storage", "recovered")]
    assert "locked by another process" in faults[0]["fault"]
    assert "storage" not in door.controller.status()["faults"]


def test_a_credential_that_cannot_be_recorded_leaves_the_door_locked_and_the_loop_running(door, caplog):
    with LoopThread(door) as loop, WriteLock(door.cfg.storage.database):
        door.inputs.put(BadgeRead("outside", P001_BADGE))
        time.sleep(0.3)
        door.world.walk_through(persons=1, metal=False, pulse_s=0.005)
        time.sleep(0.5)
        assert not door.lock_released
        assert loop.thread.is_alive()
    assert "locked by another process" in caplog.text
    assert "Traceback" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records if "locked" in r.getMessage())
    refused = [e["detail"] for e in stored(door)
               if e["type"] == "hardware_fault" and e["detail"]["state"] == "recovered"]
    assert refused and refused[0]["refused"] == 1


# ---------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    try:
        with open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    except OSError:  # full; what the last write left in the buffer may only fail when the file closes
        pass
    return filler


def test_a_full_disk_keeps_the_door_running_fail_secure_and_stores_everything_once_there_is_room(small_disk, caplog):
    cfg, clock = prepared(small_disk)
    with SimulatedDoor(cfg, clock=clock, badges=False) as door, LoopThread(door) as loop:
        with sqlite3.connect(cfg.storage.database) as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the next write needs new blocks
        filler = fill(small_disk)
        door.world.press_exit(hold_s=0.005)
        wait_for(lambda: door.lock_released, what="the release")
        wait_for(lambda: "storage" in door.controller.status()["faults"], what="the storage fault")
        door.clock.advance(door.cfg.policy.unlock_window_s + 1)  # the loop's next turn runs the unlock timer
        wait_for(lambda: not door.lock_released, what="the re-lock")
        door.inputs.put(BadgeRead("outside", P001_BADGE))
        time.sleep(0.3)
        door.world.walk_through(persons=1, metal=False, pulse_s=0.005)
        time.sleep(0.5)
        assert not door.lock_released  # the grant could not be recorded: no release
        assert loop.thread.is_alive()
        filler.unlink()
        wait_for(lambda: "storage" not in door.controller.status()["faults"], what="the recovery")
    types = [e["type"] for e in stored(door)]
    assert "exit_button" in types
    assert types[-1] == "controller_stopped"
    assert "the disk is full" in caplog.text


# ---------------------------------------------------------------------- how it stops


def test_the_stop_records_the_signal_that_ended_the_service(door):
    with LoopThread(door):
        pass
    door.close()
    assert stored(door)[-1]["detail"]["reason"] == "SIGTERM"


def test_a_fatal_error_is_recorded_as_the_reason_the_service_stopped(door):
    door.service.start = lambda: None
    door.controller.next_wakeup = lambda: (_ for _ in ()).throw(MemoryError("out of memory"))
    with pytest.raises(MemoryError):
        door.service.run()
    assert stored(door)[-1]["detail"]["reason"].startswith("fatal: MemoryError")


# ---------------------------------------------------------------------- two services


def test_a_second_service_on_the_same_database_refuses_to_start(door):
    with pytest.raises(StoreError, match="another door service is already running"):
        SimulatedDoor(door.cfg, clock=door.clock, badges=False)


def test_the_database_is_free_for_the_next_service_once_the_first_stops(door):
    door.close()
    again = SimulatedDoor(door.cfg, clock=door.clock, badges=False)
    again.close()


def test_a_killed_service_does_not_keep_the_database_locked(tmp_path):
    from firmware_py.storage.db import hold_database

    child = subprocess.Popen(["python3", "-c", "import fcntl, os, sys, time\n"
                              f"fd = os.open({str(tmp_path / 'events.db.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
                              "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    with pytest.raises(StoreError):
        hold_database(tmp_path / "events.db")
    child.kill()
    child.wait()
    hold_database(tmp_path / "events.db")()


# ---------------------------------------------------------------------- the device secret


def test_a_missing_secret_with_a_roster_of_id_hashes_is_an_error_saying_to_restore_it(tmp_path):
    cfg, clock = prepared(tmp_path)
    os.unlink(cfg.storage.secret)
    with pytest.raises(SecretError, match="(?i)restore the secret file from the commissioning backup"):
        SimulatedDoor(cfg, clock=clock, badges=False)
    assert not Path(cfg.storage.secret).exists()


def test_a_missing_secret_with_an_empty_roster_is_created(tmp_path):
    cfg = door_config(tmp_path)
    with SimulatedDoor(cfg, clock=SimulatedClock(datetime(2026, 11, 23, 9, tzinfo=TZ)), badges=False):
        pass
    assert Path(cfg.storage.secret).stat().st_size == 32


# ---------------------------------------------------------------------- the chain head


def test_the_status_carries_the_chain_head(door):
    status = door.controller.status()
    last = stored(door)[-1]
    with sqlite3.connect(door.cfg.storage.database) as c:
        head_hash = c.execute("SELECT hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()[0]
    assert (status["last_seq"], status["last_hash"]) == (last["seq"], head_hash)


def test_a_door_that_starts_on_an_empty_database_after_a_log_raises_a_tamper_alarm(tmp_path):
    cfg, clock = prepared(tmp_path)
    with SimulatedDoor(cfg, clock=clock, badges=False) as door:
        door.press_exit()
        head = door.store.last_seq()
    door.close()
    last = head + 1  # controller_stopped
    for suffix in ("", "-wal", "-shm"):
        Path(f"{cfg.storage.database}{suffix}").unlink(missing_ok=True)
    with SimulatedDoor(cfg, clock=clock, badges=False) as door:
        tamper = [e for e in door.events() if e["type"] == "tamper"]
    assert len(tamper) == 1
    assert tamper[0]["detail"]["device"] == "event_log"
    assert tamper[0]["detail"]["active"] is True
    assert tamper[0]["detail"]["expected_seq"] == last


def test_a_door_restarted_on_its_own_log_raises_no_tamper_alarm(tmp_path):
    cfg, clock = prepared(tmp_path)
    with SimulatedDoor(cfg, clock=clock, badges=False):
        pass
    with SimulatedDoor(cfg, clock=clock, badges=False) as door:
        assert "tamper" not in [e["type"] for e in door.events()]


def test_the_anchor_moves_on_as_the_log_grows(door):
    from firmware_py.storage.eventstore import ChainAnchor

    for _ in range(ChainAnchor.EVERY + 1):
        door.inputs.put(BadgeRead("outside", "DEADBEEF"))
    door.pump()
    seq, _ = ChainAnchor.beside(door.cfg.storage.secret).read()
    assert seq > door.store.last_seq() - ChainAnchor.EVERY


def test_several_presses_while_the_database_is_locked_are_all_stored(door):
    with LoopThread(door) as loop, WriteLock(door.cfg.storage.database):
        for _ in range(3):
            door.world.press_exit(hold_s=0.005)
            time.sleep(0.05)
        backlog = door.controller.event_log.backlog
        wait_for(lambda: [e["type"] for e in backlog].count("exit_button") == 3, what="the third press")
        assert loop.thread.is_alive()
    door.controller.store_backlog()
    assert [e["type"] for e in stored(door)].count("exit_button") == 3


def test_a_passage_while_another_process_holds_the_write_lock_is_stored_later_with_the_occupancy(door):
    door.inputs.put(BadgeRead("outside", P001_BADGE))
    door.pump()
    door.walk_through()
    assert door.lock_released
    door.open_door()
    with WriteLock(door.cfg.storage.database):
        door.close_door()  # the passage cannot be stored now
        assert door.controller.state == "idle" and door.controller.status()["door"] == "closed"
        assert "P001" in door.controller.inside
        assert "passage" not in [e["type"] for e in stored(door)]
    door.controller.store_backlog()
    passage = [e for e in stored(door) if e["type"] == "passage"]
    assert [(e["person"]["person_id"], e["direction"]) for e in passage] == [("P001", "in")]
    with sqlite3.connect(door.cfg.storage.database) as c:
        occupancy = json.loads(c.execute("SELECT value FROM meta WHERE key = 'occupancy'").fetchone()[0])
    assert list(occupancy) == ["P001"]


def test_a_lockdown_while_another_process_holds_the_write_lock_is_stored_later_and_kept(tmp_path):
    cfg, clock = prepared(tmp_path)
    with SimulatedDoor(cfg, clock=clock, badges=False) as door:
        with WriteLock(cfg.storage.database):
            door.controller.set_lockdown(True, "duty officer")
            assert door.controller.lockdown is True
        door.controller.store_backlog()
        assert [e["type"] for e in stored(door)].count("lockdown_on") == 1
    with SimulatedDoor(cfg, clock=clock, badges=False) as again:
        assert again.controller.lockdown is True
