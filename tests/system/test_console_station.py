"""`accessctl-sim console --broker URL` feeds a station: what a person does at the simulated door is
archived by `accessctl station serve` watching the same broker (a lab Mosquitto, both real)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from simulator.demo import start_lab_broker, write_station_config
from simulator.lab_station import StationProcess
from simulator.lab_tier import free_port
from tests.fixtures.constants import REPO

START = "2026-11-23T09:00:00+08:00"


@pytest.fixture
def lab_station(tmp_path):
    """A lab broker (plain MQTT, anonymous) and a station watching it, as the demo has them."""
    broker, url = start_lab_broker(tmp_path)
    port = free_port()
    station = StationProcess(write_station_config(tmp_path, url, f"127.0.0.1:{port}"), port, tmp_path / "station.log")
    try:
        station.start()
        yield url, tmp_path / "archive.db"
    finally:
        station.stop()
        broker.stop()


def test_what_is_done_at_the_console_with_a_broker_is_archived_by_the_station(pcscd, lab_station):
    url, archive = lab_station
    proc = subprocess.run([sys.executable, "-c", "from simulator.cli import main; raise SystemExit(main())",
                           "console", "--broker", url, "--start", START],
                          input="card P002\nwalk\nopen\nclose\nquit\n", capture_output=True, text=True, timeout=90,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "not published" not in proc.stderr and "not connected" not in proc.stderr, proc.stderr
    with sqlite3.connect(archive) as conn:
        rows = conn.execute("SELECT site, door, seq, type, ts FROM events ORDER BY seq").fetchall()
    types = [r[3] for r in rows]
    assert {(r[0], r[1]) for r in rows} == {("hn-archive-1", "scan-room")}
    assert [r[2] for r in rows] == list(range(1, len(rows) + 1))  # every event the door stored, once
    assert "access_granted" in types and "passage" in types, types
    assert rows[-1][4].startswith("2026-11-23T09:00"), rows[-1]  # the simulated clock's time, from --start

