"""`accessctl run --simulate` as a process: signals, and commands from the door's own command line."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.constants import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def accessctl(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "firmware_py.cli.main", *args], capture_output=True, text=True,
                          env=ENV, timeout=60, **kwargs)


@pytest.fixture
def service(tmp_path):
    """The service on emulated hardware, MQTT off, until the test ends."""
    config = tmp_path / "venue.toml"
    text = (REPO / "config" / "venue.example.toml").read_text(encoding="utf-8")
    text = text.replace("/var/lib/accessctl/device.key", str(tmp_path / "device.key"))
    config.write_text(text.replace("enabled = true", "enabled = false", 1), encoding="utf-8")
    db = tmp_path / "events.db"
    proc = subprocess.Popen([sys.executable, "-m", "firmware_py.cli.main", "run", "--simulate", "--config", str(config),
                             "--db", str(db)], stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 20
    while not started(db):
        assert time.monotonic() < deadline and proc.poll() is None, "the service did not start"
        time.sleep(0.1)
    proc.args_for_cli = ["--config", str(config), "--db", str(db)]
    proc.db = db
    yield proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def started(db: Path) -> bool:
    if not db.exists():
        return False
    with sqlite3.connect(db) as c:
        try:
            return bool(c.execute("SELECT count(*) FROM events WHERE type='controller_started'").fetchone()[0])
        except sqlite3.OperationalError:
            return False


def event_types(db: Path) -> list[str]:
    with sqlite3.connect(db) as c:
        return [t for (t,) in c.execute("SELECT type FROM events ORDER BY seq")]


def last_detail(db: Path) -> dict:
    import json

    with sqlite3.connect(db) as c:
        return json.loads(c.execute("SELECT body FROM events ORDER BY seq DESC LIMIT 1").fetchone()[0])["detail"]


def test_the_service_stops_cleanly_on_sigterm(service):
    service.send_signal(signal.SIGTERM)
    _, err = service.communicate(timeout=20)
    assert service.returncode == 0, err
    assert event_types(service.db)[-1] == "controller_stopped"
    assert last_detail(service.db)["reason"] == "SIGTERM"


def test_the_stop_on_sigint_is_recorded_as_sigint(service):
    service.send_signal(signal.SIGINT)
    _, err = service.communicate(timeout=20)
    assert service.returncode == 0, err
    assert last_detail(service.db)["reason"] == "SIGINT"


def test_a_second_service_on_the_same_database_is_refused_with_a_clear_message(service):
    result = accessctl("run", "--simulate", *service.args_for_cli)
    assert result.returncode != 0
    assert "another door service is already running on this database" in result.stderr
    assert "Traceback" not in result.stderr
    assert service.poll() is None  # the first one runs on


def test_lockdown_from_the_command_line_is_applied_and_audited(service):
    result = accessctl("lockdown", "on", "--by", "duty officer", *service.args_for_cli)
    assert result.returncode == 0, result.stderr
    assert "lockdown on: done" in result.stdout
    assert event_types(service.db)[-2:] == ["lockdown_on", "command"]
    result = accessctl("lockdown", "off", *service.args_for_cli)
    assert result.returncode == 0, result.stderr
    assert event_types(service.db)[-2:] == ["lockdown_off", "command"]


def test_a_killed_simulator_leaves_no_pcscd_behind(service):
    service.kill()
    service.wait()
    deadline = time.monotonic() + 5
    while subprocess.run(["pgrep", "-f", "accessctl-pcscd-"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the simulator's pcscd outlived it"
        time.sleep(0.1)


def test_lockdown_without_a_running_service_says_it_was_not_applied(tmp_path):
    config = tmp_path / "venue.toml"
    config.write_text((REPO / "config" / "venue.example.toml").read_text(encoding="utf-8"), encoding="utf-8")
    result = accessctl("lockdown", "on", "--wait", "0.5", "--config", str(config), "--db", str(tmp_path / "e.db"))
    assert result.returncode == 1
    assert "no running controller took it" in result.stderr
