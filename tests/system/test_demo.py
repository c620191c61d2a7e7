"""`accessctl-sim demo`: the morning through a lab broker into the station, as a newcomer runs it.

Each test runs the real command as a child process (its own Mosquitto, station and private pcscd)
and looks at what it leaves: its output, the station's archive, the page.
"""

import json
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulator.scenario import load_scenario
from tests.fixtures.constants import REPO
from tests.fixtures.station import Http, free_port

SCENARIO = REPO / "scenarios" / "demo_day.toml"
ADDRESS = re.compile(r"^  station  (http://127\.0\.0\.1:\d+/)", re.M)
LOGIN = re.compile(r"^  login    (\S+) / (\S+)  \(operator\)", re.M)
FIGURES = re.compile(r"the door stored (\d+) events \(last seq (\d+)\); the station archived (\d+) of them")
DEMO_TIMEOUT_S = 120


def demo_command(workdir: Path, port: int, *more: str) -> list[str]:
    return [sys.executable, "-m", "simulator.cli", "demo", "--workdir", str(workdir),
            "--listen", f"127.0.0.1:{port}", *more]


def run_demo(workdir: Path, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(demo_command(workdir, port, "--exit-after-morning"), capture_output=True, text=True,
                          cwd=REPO, timeout=DEMO_TIMEOUT_S, stdin=subprocess.DEVNULL)


def archived_events(workdir: Path) -> list[tuple[int, int, int, dict]]:
    """(epoch, seq, hash_ok, event) of every archived event, in order."""
    conn = sqlite3.connect(workdir / "archive.db")
    try:
        rows = conn.execute("SELECT epoch, seq, hash_ok, payload FROM events ORDER BY epoch, seq").fetchall()
    finally:
        conn.close()
    return [(epoch, seq, ok, json.loads(payload)) for epoch, seq, ok, payload in rows]


def door_events(workdir: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(workdir / "door.db")
    try:
        return conn.execute("SELECT seq, hash FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


def expectations_met(events: list[dict]) -> list[str]:
    """The scenario's expectations, checked in order against ``events``: what is missing."""
    missing, position = [], 0
    for step in load_scenario(SCENARIO).steps:
        for wanted in step.expect or ():
            for i in range(position, len(events)):
                e = events[i]
                if all(((e.get("person") or {}).get("person_id") if k == "person" else e.get(k)) == v
                       for k, v in wanted.items()):
                    position = i + 1
                    break
            else:
                missing.append(f"step {step.number}: {wanted}")
    return missing


def assert_morning_archived(done: subprocess.CompletedProcess, workdir: Path) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    stored, last_seq, held = map(int, FIGURES.search(done.stdout).groups())
    rows = archived_events(workdir)
    assert [seq for _, seq, _, _ in rows] == list(range(1, last_seq + 1))  # one epoch, no gap, nothing else
    assert {epoch for epoch, _, _, _ in rows} == {1} and all(ok == 1 for _, _, ok, _ in rows)
    assert [(seq, e["hash"]) for _, seq, _, e in rows] == door_events(workdir)  # the door's own log, hash for hash
    assert stored == held == last_seq
    events = [e for _, _, _, e in rows]
    assert expectations_met(events) == []
    assert events[-1]["type"] == "controller_stopped"


@pytest.fixture(scope="module")
def morning(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One demo played with ``--exit-after-morning`` in a fresh work directory, for the tests that only
    read what it printed and left (the morning takes seconds); none of them changes that directory."""
    workdir = tmp_path_factory.mktemp("morning") / "demo"
    return run_demo(workdir, free_port()), workdir


def test_the_demo_plays_the_morning_into_the_station_and_stops_after_it(morning):
    done, workdir = morning
    assert ADDRESS.search(done.stdout) and LOGIN.search(done.stdout), done.stdout
    assert re.search(r"^  login    viewer / \S+  \(viewer\)$", done.stdout, re.M), done.stdout
    assert re.search(r"^  login    admin / \S+  \(admin\)$", done.stdout, re.M), done.stdout
    assert_morning_archived(done, workdir)


def test_a_station_beside_the_simulated_door_leaves_the_mornings_outcome_unchanged(morning, tmp_path):
    done, workdir = morning
    assert done.returncode == 0, done.stdout + done.stderr
    types = [e["type"] for _, _, _, e in archived_events(workdir)]
    # no wall-clock beacon taken (clock alarms), no link counted down before the morning began
    assert not {"clock_drift", "clock_unsynchronised", "link_down"} & set(types), types
    alone_db = tmp_path / "alone.db"
    alone = subprocess.run([sys.executable, "-m", "simulator.cli", "run", str(SCENARIO), "--db", str(alone_db)],
                           capture_output=True, text=True, cwd=REPO, timeout=DEMO_TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    conn = sqlite3.connect(alone_db)
    alone_types = [t for (t,) in conn.execute("SELECT type FROM events ORDER BY seq")]
    conn.close()
    # the same morning as without any broker, but for the door saying its link came up
    assert [t for t in types if t != "link_up"] == alone_types

def test_a_second_demo_in_the_same_work_directory_starts_afresh(morning, tmp_path):
    first, first_workdir = morning
    assert first.returncode == 0, first.stdout + first.stderr
    workdir = tmp_path / "demo"  # the first morning's work directory as it left it, every file
    shutil.copytree(first_workdir, workdir, symlinks=True)
    second = run_demo(workdir, free_port())
    assert_morning_archived(second, workdir)  # the first morning's events are gone, not a second epoch
    assert "tamper" not in {e["type"] for _, _, _, e in archived_events(workdir)}  # no stale anchor of the first
    assert LOGIN.search(second.stdout).group(2) != LOGIN.search(first.stdout).group(2)


def wait_for(pattern: re.Pattern, proc: subprocess.Popen, timeout: float = DEMO_TIMEOUT_S) -> tuple[str, re.Match]:
    """Read the demo's output until ``pattern`` matches; all of it so far and the match."""
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        m = pattern.search(seen)
        if m:
            return seen, m
    raise AssertionError(f"the demo did not print {pattern.pattern!r}:\n{seen}")


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def children_of(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_during_the_morning_stops_the_door_the_station_and_the_broker(tmp_path):
    proc = subprocess.Popen(demo_command(tmp_path / "demo", free_port()), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO, stdin=subprocess.DEVNULL)
    try:
        seen, _ = wait_for(re.compile(r"-- step 3: "), proc)  # the morning is under way
        kids = children_of(proc.pid)  # the broker, the station and the private pcscd
        assert len(kids) >= 3, kids
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130, seen + rest
        assert "stopping (SIGINT)" in rest and "open http" not in rest
        assert [k for k in kids if alive(k)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_demo_serves_the_page_to_its_printed_login_until_sigterm(tmp_path):
    workdir, port = tmp_path / "demo", free_port()
    proc = subprocess.Popen(demo_command(workdir, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=REPO, stdin=subprocess.DEVNULL)
    try:
        seen, _ = wait_for(re.compile(r"^open http://\S+ and log in", re.M), proc)
        url = ADDRESS.search(seen).group(1)
        name, password = LOGIN.search(seen).groups()
        broker_port = int(re.search(r"^  broker   mqtt://127\.0\.0\.1:(\d+)", seen, re.M).group(1))

        web = Http(url)
        assert web.login(name, "not the password").status == 401
        reply = web.login(name, password)
        assert reply.status == 303 and "station_session" in reply.headers.get("set-cookie", "")
        overview = web.get("/")
        assert overview.status == 200 and 'data-door="scan-room"' in overview.text
        assert 'data-type="screening_alarm"' in web.get("/alarms").text  # the phone at 08:40 awaits an operator

        other = subprocess.run(demo_command(workdir, free_port(), "--exit-after-morning"), capture_output=True,
                               text=True, cwd=REPO, timeout=60, stdin=subprocess.DEVNULL)
        assert other.returncode == 2 and "another demo is running" in other.stderr

        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, seen + rest
        assert not port_open(port) and not port_open(broker_port)  # the station and the broker are gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
