"""A supervision station for tests and benchmarks: its config file, an account, and
`accessctl station serve` as a child process that is ready when :meth:`StationProcess.start` returns.

The test suite's fixtures (tests/fixtures/station.py) and the benchmarks (bench/) both use these.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"  # lab accounts only


def write_station_config(path: Path, broker, archive: Path, *, port: int, client_id: str,
                         signing_key: Path | None = None) -> Path:
    """A station.toml for a ``MosquittoBroker``: the supervisor account, no time beacon; with
    ``signing_key``, the station signs its door commands."""
    s = broker.supervisor
    path.write_text(f"""[broker]
url = "{broker.url}"
username = "{s.username}"
password_file = "{s.password_file}"
ca_file = "{broker.ca_file}"
cert_file = "{s.cert_file}"
key_file = "{s.key_file}"
client_id = "{client_id}"
beacon_interval_s = 0

[archive]
path = "{archive}"

[web]
listen = "127.0.0.1:{port}"
timezone = "Asia/Shanghai"
""" + (f'\n[roster]\nsigning_key = "{signing_key}"\n' if signing_key else ""))
    return path


def add_user_cli(config: Path, name: str, role: str, password: str = PASSWORD) -> subprocess.CompletedProcess:
    """`accessctl station user add` with the password on standard input."""
    return subprocess.run([sys.executable, "-m", "firmware_py.cli.main", "station", "user", "add", name, "--role", role,
                           "--config", str(config)], input=password + "\n", capture_output=True, text=True,
                          cwd=REPO, timeout=60)


def port_taken(log: Path, offset: int) -> bool:
    """Whether the station's log since ``offset`` says its web port was in use."""
    with open(log, "rb") as f:
        f.seek(offset)
        return b"address already in use" in f.read()


class StationProcess:
    """`accessctl station serve --config FILE` as a child process."""

    def __init__(self, config: Path, port: int, log: Path):
        self.config, self.port, self.log = config, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> StationProcess:
        """Start and return once the page serves and the station's subscriber is connected (events
        a door publishes from then on reach the archive)."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "firmware_py.cli.main", "station", "serve", "--config",
                                      str(self.config)], stdout=out, stderr=out, stdin=subprocess.DEVNULL, cwd=REPO,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if port_taken(self.log, offset) and self._move_to_a_free_port():
                    return self.start(max(1.0, deadline - time.monotonic()))
                raise RuntimeError(f"the station exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                urllib.request.urlopen(self.url + "/login", timeout=2).close()
                with open(self.log, "rb") as f:
                    f.seek(offset)
                    if b"connected to mqtt" in f.read():
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the station did not serve within {timeout} s:\n{self.log.read_text()}")

    def _move_to_a_free_port(self) -> bool:
        """Another process took the port between its choice and the station's bind (an outgoing
        connection may be given any free port): listen on another one; False after three moves."""
        self._moves = getattr(self, "_moves", 0) + 1
        if self._moves > 3:
            return False
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        text = self.config.read_text(encoding="utf-8")
        self.config.write_text(text.replace(f'listen = "127.0.0.1:{self.port}"', f'listen = "127.0.0.1:{port}"'),
                               encoding="utf-8")
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        return True

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc, self.proc = self.proc.returncode, None
        return rc


