"""The station's page under idle connections: `accessctl station serve` as a real process, real sockets.

A service gets 1,024 open files unless its unit says otherwise, and every TCP connection is one.
1,100 connections that never send a request must neither make the page unreachable nor cut the
live stream (server-sent events), which is long-lived on purpose.
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from tests.fixtures.constants import REPO
from tests.fixtures.station import Http, add_user_cli, free_port
from tests.system.test_station_web import DOOR, SITE, chained

IDLE_SOCKETS = 1100
FILES = 1024  # the open-file limit a service gets by default (soft and, here, hard alike)


def station_toml(tmp_path, port: int):
    """A station whose broker is not there (a state the page shows): only the page matters here."""
    path = tmp_path / "station.toml"
    path.write_text(f'[broker]\nurl = "mqtt://127.0.0.1:{free_port()}"\nclient_id = "limits-test"\n'
                    f'beacon_interval_s = 0\n\n[archive]\npath = "{tmp_path / "archive.db"}"\n\n'
                    f'[web]\nlisten = "127.0.0.1:{port}"\ntimezone = "Asia/Shanghai"\n')
    return path


def limit_files():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILES, FILES))


@pytest.fixture
def station(tmp_path):
    """`accessctl station serve` with 1,024 open files at most, an account ``victor`` (viewer)."""
    port = free_port()
    config = station_toml(tmp_path, port)
    assert add_user_cli(config, "victor", "viewer").returncode == 0
    log = open(tmp_path / "station.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "firmware_py.cli.main", "station", "serve", "--config", str(config)],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=REPO, preexec_fn=limit_files)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, (tmp_path / "station.log").read_text()
        try:
            urllib.request.urlopen(url + "/login", timeout=2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, (tmp_path / "station.log").read_text()
            time.sleep(0.1)
    proc.url, proc.archive, proc.log = url, tmp_path / "archive.db", tmp_path / "station.log"
    yield proc
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture
def idle_sockets(station):
    """Open connections that never send a byte, as many as an attacker likes (the test's own file limit
    is raised for them)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * IDLE_SOCKETS)), hard))
    port = int(station.url.rsplit(":", 1)[1])
    socks = []

    def open_them(n: int = IDLE_SOCKETS) -> list[socket.socket]:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        return socks

    yield open_them
    for s in socks:
        s.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_with_1100_idle_connections_open_a_real_request_still_gets_its_page(station, idle_sockets):
    idle_sockets()
    time.sleep(0.5)  # the station has accepted what it will

    client = Http(station.url)
    assert client.get("/login").status == 200
    assert client.login("victor").status == 303
    assert client.get("/").status == 200
    assert client.get("/api/doors").json()["doors"] == []


def test_idle_connections_are_closed_while_the_live_stream_stays_open(station, idle_sockets):
    client = Http(station.url)
    assert client.login("victor").status == 303
    got: list[dict] = []
    stream_open = threading.Event()

    def follow() -> None:
        with client.opener.open(urllib.request.Request(station.url + "/api/stream"), timeout=60) as r:
            stream_open.set()
            block = {}
            for raw in r:
                line = raw.decode().rstrip("\n")
                if not line:
                    if block.get("event") == "event":
                        got.append(json.loads(block["data"]))
                        return
                    block = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(": ")
                    block[key] = value

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert stream_open.wait(15)
    socks = idle_sockets(50)
    slow = socks[0]  # one sends its request a piece at a time: idle all the same
    slow.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")

    opened = time.monotonic()
    time.sleep(6)
    slow.sendall(b"X-Slow: 1\r\n")
    # The station's idle-connection timeout is 10 s: every one is closed by then, the slow one too
    # (a header line does not make it busy). Each is given until 17 s after they were opened.
    for s in socks:
        s.settimeout(max(0.1, opened + 17 - time.monotonic()))
        assert s.recv(1) == b"", "an idle connection was left open"

    from firmware_py.station.archive.sqlite import Archive

    archive = Archive(station.archive)
    (event,) = chained([("2026-11-23T09:00:00.000+08:00", "access_granted", "access", {})])
    archive.store_event(SITE, DOOR, f"accessctl/{SITE}/{DOOR}/events/access/access_granted",
                        json.dumps(event).encode(), event, "2026-11-23T09:00:00+08:00")
    archive.close()
    reader.join(15)
    assert [(e["door"], e["seq"]) for e in got] == [(DOOR, 1)], "the live stream was cut"
