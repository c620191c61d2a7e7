"""The door's rule state through a real SIGKILL of `accessctl run`, and one service per database file.

A door on the real drivers (emulated pins and ID readers, this process, the wall clock shifted to
a Monday morning) lets a staff member in and has its inside reader held after repeated failures;
`accessctl run --simulate` then starts on the same database, takes a lockdown from the command
line and is killed with SIGKILL; a door started again on that database still holds the reader,
is still in lockdown, and after the lockdown lets a visitor through on the escort's passage in.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from firmware_py.config.schema import load_config, with_overrides
from firmware_py.storage import roster
from firmware_py.storage.door_database import open_store
from firmware_py.storage.secret import load_or_create_secret
from simulator.door_sim import SimulatedDoor
from simulator.id_card_device import IdCard, synthetic_id_number
from simulator.runner import read_people
from tests.fixtures.constants import PEOPLE, REPO, TZ

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=TZ)


class MondayClock:
    """The machine's clocks, with the wall clock shown as if the test began on a Monday at 10:00."""

    def __init__(self, start: datetime):
        self._offset = start - datetime.now(TZ)

    def now(self) -> datetime:
        return datetime.now(TZ) + self._offset

    def monotonic(self) -> float:
        return time.monotonic()


@pytest.fixture
def config(tmp_path) -> Path:
    """The example config, MQTT off, a long escort window and hold (the test spans a few service starts)."""
    text = (REPO / "config" / "venue.example.toml").read_text(encoding="utf-8")
    text = text.replace("/var/lib/accessctl/device.key", str(tmp_path / "device.key"))
    text = text.replace("enabled = true", "enabled = false", 1)
    text = text.replace("escort_window_s = 60 ", "escort_window_s = 900").replace(
        "reader_lockout_s = 60 ", "reader_lockout_s = 900")
    path = tmp_path / "venue.toml"
    path.write_text(text, encoding="utf-8")
    cfg = with_overrides(load_config(path), database=tmp_path / "events.db")
    assert (cfg.policy.escort_window_s, cfg.policy.reader_lockout_s) == (900, 900)
    store = open_store(cfg)
    roster.import_csv(store.db, store, PEOPLE, secret=load_or_create_secret(cfg.storage.secret),
                      schedule_groups=set(cfg.calendar.schedules), tz=cfg.site.timezone)
    store.db.conn.close()
    return path


def door_on(config: Path, clock) -> SimulatedDoor:
    cfg = with_overrides(load_config(config), database=config.parent / "events.db")
    door = SimulatedDoor(cfg, clock=clock, badges=False)
    door.start()
    door.pump()
    return door


def card(person_id: str) -> IdCard:
    p = read_people(PEOPLE)[person_id]
    return IdCard(name=p.name, id_number=p.id_number)


def events(db: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(db) as c:
        return list(c.execute("SELECT type, json_extract(body, '$.reason') FROM events ORDER BY seq"))


def accessctl_run(config: Path, db: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "firmware_py.cli.main", "run", "--simulate", "--config",
                             str(config), "--db", str(db)], stderr=subprocess.PIPE, text=True, env=ENV)
    return proc


def wait_for_starts(db: Path, count: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while [t for t, _ in events(db)].count("controller_started") < count:
        assert proc.poll() is None, f"the service ended: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.1)


def test_rule_state_survives_a_sigkill_of_accessctl_run(config):
    db = config.parent / "events.db"
    clock = MondayClock(MONDAY_10)
    door = door_on(config, clock)
    door.present_id_card(card("P001"))  # the escort goes in
    door.walk_through()
    door.open_door()
    door.close_door()
    for n in range(door.controller.policy.max_failures):  # unknown cards at the inside reader: held
        door.present_id_card(IdCard(name="测试生人", id_number=synthetic_id_number(sequence=900 + n)), "inside")
    door.close()
    door.db.conn.close()
    assert ("repeated_failures", None) in events(db)

    proc = accessctl_run(config, db)
    try:
        wait_for_starts(db, 2, proc)
        locked = subprocess.run([sys.executable, "-m", "firmware_py.cli.main", "lockdown", "on", "--config",
                                 str(config), "--db", str(db)], capture_output=True, text=True, env=ENV, timeout=60)
        assert locked.returncode == 0, locked.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(20)
    assert events(db)[-2:] == [("lockdown_on", None), ("command", None)]  # no controller_stopped: killed

    again = door_on(config, clock)
    try:
        again.present_id_card(card("P001"), "inside")
        assert events(db)[-1] == ("access_denied", "reader_locked")
        again.present_id_card(card("V001"))
        assert events(db)[-1] == ("access_denied", "lockdown")
        again.controller.set_lockdown(False, "test")
        again.present_id_card(card("V001"))  # P001 is inside and passed in within the window
        assert again.controller.state == "screening", events(db)[-1]
    finally:
        again.close()
        again.db.conn.close()


def test_a_second_accessctl_run_through_a_symbolic_link_to_the_database_is_refused(config):
    db = config.parent / "events.db"
    link = config.parent / "another-name.db"
    link.symlink_to(db)
    first = accessctl_run(config, db)
    try:
        wait_for_starts(db, 1, first)
        second = subprocess.run([sys.executable, "-m", "firmware_py.cli.main", "run", "--simulate", "--config",
                                 str(config), "--db", str(link)], capture_output=True, text=True, env=ENV,
                                timeout=60)
        assert second.returncode != 0
        assert "another door service is already running on this database" in second.stderr
        assert str(db) in second.stderr and "Traceback" not in second.stderr
        assert first.poll() is None
    finally:
        first.terminate()
        first.wait(20)
    assert [t for t, _ in events(db)].count("controller_started") == 1
