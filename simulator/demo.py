"""`accessctl-sim demo`: a morning at the door, watched from the supervision station.

Everything runs on this machine, on loopback, from one work directory (``var/demo/`` by default):

1. a private Mosquitto (a *lab* broker: plain MQTT, anonymous, 127.0.0.1 only, persistence in the
   work directory; never the production config in ``deploy/mosquitto/``);
2. the station, `accessctl station serve` as a child process, with its archive in the work
   directory, no time beacon (the door lives on simulated time) and a demo account;
3. the morning of ``scenarios/demo_day.toml`` played by :class:`~simulator.runner.ScenarioRunner`
   on simulated hardware, publishing through the broker, its events printed as they happen;
4. then the page keeps serving until Ctrl-C or SIGTERM (``--exit-after-morning``: stop as soon as
   the station has archived every event the door stored).

Each run starts afresh: the previous demo's broker store, archive, logs and account in the work
directory are deleted first (only those files: the directory may hold other things). A lock on
the work directory keeps two demos from sharing it. Children are started in their own session, so
Ctrl-C reaches only the demo, which stops them in order; they are also told to die with the demo
(``PR_SET_PDEATHSIG``) should it be killed outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import pwd
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from firmware_py.errors import DemoError

from .scenario import REPO, load_scenario

SCENARIO = REPO / "scenarios" / "demo_day.toml"
DEFAULT_WORKDIR = Path("var/demo")
DEFAULT_LISTEN = "127.0.0.1:8080"
DEMO_USER = "demo"
DEMO_ROLE = "operator"
# Besides the operator, one account of each other role, so a newcomer sees what each may do.
DEMO_ACCOUNTS = ((DEMO_USER, DEMO_ROLE), ("viewer", "viewer"), ("admin", "admin"))
START_TIMEOUT_S = 30.0
ARCHIVE_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# What a run leaves in the work directory, and the only names a new run deletes.
RUN_FILES = ("mosquitto.conf", "mosquitto.log", "mosquitto", "station.toml", "station.log", "archive.db",
             "archive.db-wal", "archive.db-shm", "door.db", "door.db-wal", "door.db-shm", "door.db.key",
             "door.db.key.head", "door.db.lock")
LOCK_FILE = "demo.lock"


class Stop(BaseException):
    """Ctrl-C or SIGTERM: stop everything and leave (a BaseException, as KeyboardInterrupt: the door's
    loop survives any ``Exception`` raised in it, and must not survive this one)."""


# ------------------------------------------------------------------ the work directory


def lock_workdir(workdir: Path):
    """Hold the work directory's lock for this run (released when the process ends)."""
    workdir.mkdir(parents=True, exist_ok=True)
    handle = open(workdir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DemoError(f"{workdir}: another demo is running in this work directory (stop it, or give "
                        "--workdir DIR)") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def reset_workdir(workdir: Path) -> None:
    """Delete what a previous run left (only :data:`RUN_FILES`)."""
    for name in RUN_FILES:
        path = workdir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


# ------------------------------------------------------------------ child processes


def _die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when the demo ends, however it ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """A child process of the demo, its output in ``log``."""

    def __init__(self, name: str, argv: list[str], log: Path, *, env: dict | None = None):
        self.name, self.log = name, log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=_die_with_parent, env=env, cwd=REPO)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def died(self) -> DemoError:
        return DemoError(f"the {self.name} exited with status {self.proc.returncode}; see {self.log}:\n"
                         f"{self.log_tail()}")

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT_S`; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _wait(condition: Callable[[], bool], child: Child, what: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if not child.running:
            raise child.died()
        if time.monotonic() > deadline:
            raise DemoError(f"{what} within {timeout:.0f} s; see {child.log}:\n{child.log_tail()}")
        time.sleep(0.05)


def start_lab_broker(workdir: Path) -> tuple[Child, str]:
    """A private Mosquitto on a free loopback port: plain MQTT, anonymous, persistence in the work directory."""
    program = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if program is None:
        raise DemoError("mosquitto is not installed (apt-get install mosquitto; scripts/dev.sh demo does it)")
    store = workdir / "mosquitto"
    store.mkdir(exist_ok=True)
    port = free_port()
    conf = workdir / "mosquitto.conf"
    # A lab broker for the demo only: loopback, no TLS, no accounts. Started as root, Mosquitto would
    # switch to the "mosquitto" user, which may not write the work directory: it stays who we are.
    conf.write_text(f"# accessctl-sim demo: a lab broker, never the production config (deploy/mosquitto/)\n"
                    f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                    f"persistence true\npersistence_location {store}/\n"
                    f"log_dest file {workdir / 'mosquitto.log'}\n"
                    f"user {pwd.getpwuid(os.geteuid()).pw_name}\n", encoding="utf-8")
    broker = Child("lab broker (mosquitto)", [program, "-c", str(conf)], workdir / "mosquitto.log")

    def accepts() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    try:
        _wait(accepts, broker, f"mosquitto did not accept connections on 127.0.0.1:{port}")
    except BaseException:
        broker.stop()
        raise
    return broker, f"mqtt://127.0.0.1:{port}"


def write_station_config(workdir: Path, broker_url: str, listen: str) -> Path:
    path = workdir / "station.toml"
    path.write_text(f"""# accessctl-sim demo: a throwaway station beside the simulated door
[broker]
url = "{broker_url}"
client_id = "accessctl-station-demo"
beacon_interval_s = 0   # the simulated door lives on simulated time: no wall-clock beacon

[archive]
path = "{workdir / 'archive.db'}"

[web]
listen = "{listen}"
timezone = "Asia/Shanghai"
""", encoding="utf-8")
    return path


def add_demo_accounts(archive: Path) -> list[tuple[str, str, str]]:
    """The demo's accounts (:data:`DEMO_ACCOUNTS`), each with a fresh random password: (name, role, password)."""
    from firmware_py.station.accounts import accounts, audit
    from firmware_py.station.archive.open import open_station_store

    made = []
    store = open_station_store(archive)
    try:
        now = datetime.now().astimezone()
        for name, role in DEMO_ACCOUNTS:
            password = secrets.token_urlsafe(9)
            accounts.add_account(store, name, role, password, now)
            audit.record(store, at=now, who="accessctl-sim demo", address="local", action="station user add",
                         detail={"name": name, "role": role}, result="ok")
            made.append((name, role, password))
    finally:
        store.close()
    return made


def start_station(workdir: Path, config: Path, url: str) -> Child:
    """`accessctl station serve`; returns once the page answers and the subscriber is connected."""
    import urllib.request

    command = [sys.executable, "-m", "firmware_py.cli.main", "station", "serve", "--config", str(config)]
    station = Child("station", command, workdir / "station.log", env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def ready() -> bool:
        text = station.log.read_text(errors="replace")
        if "connected to mqtt" not in text:
            return False
        try:
            urllib.request.urlopen(url + "login", timeout=2).close()
            return True
        except OSError:
            return False

    try:
        _wait(ready, station, f"the station did not serve {url} with its subscriber connected")
    except BaseException:
        station.stop()
        raise
    return station


# ------------------------------------------------------------------ the archive


def archived(archive: Path, events: list[dict]) -> int:
    """How many of the door's ``events`` the archive holds, the same (seq and hash)."""
    if not events or not archive.exists():
        return 0
    site, door = events[0]["site"], events[0]["door"]
    conn = sqlite3.connect(f"file:{archive}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute("SELECT seq, hash FROM events WHERE site=? AND door=?", (site, door)).fetchall()
    except sqlite3.OperationalError:  # the station has not made its tables yet
        return 0
    finally:
        conn.close()
    held = set(rows)
    return sum((e["seq"], e["hash"]) in held for e in events)


def wait_archived(archive: Path, events: list[dict], station: Child, timeout: float = ARCHIVE_TIMEOUT_S) -> int:
    deadline = time.monotonic() + timeout
    while True:
        held = archived(archive, events)
        if held == len(events) or time.monotonic() > deadline or not station.running:
            return held
        time.sleep(0.1)


# ------------------------------------------------------------------ the demo


def choose_listen(listen: str | None) -> tuple[str, str]:
    """The page's HOST:PORT and a note: the default 127.0.0.1:8080, or a free port when that one is taken."""
    from firmware_py.station.config import parse_listen

    host, port = parse_listen(listen or DEFAULT_LISTEN, "--listen")
    if port_is_free(host, port):
        return f"{host}:{port}", ""
    if listen is not None:
        raise DemoError(f"--listen {listen}: that port is in use")
    free = free_port()
    return f"127.0.0.1:{free}", f" ({DEFAULT_LISTEN} is in use)"


def _raise_stop(signum, frame):
    raise Stop(signal.Signals(signum).name)


def run_demo(*, workdir: Path = DEFAULT_WORKDIR, listen: str | None = None, exit_after_morning: bool = False,
             out: Callable[[str], None] = print) -> int:
    """Play the morning through a lab broker into the station; 0 when it went as the scenario says."""
    workdir = workdir.resolve()
    scenario = load_scenario(SCENARIO)
    lock = lock_workdir(workdir)
    children: list[Child] = []
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    serving = False
    try:
        reset_workdir(workdir)
        address, note = choose_listen(listen)
        url = f"http://{address}/"
        broker, broker_url = start_lab_broker(workdir)
        children.append(broker)
        archive = workdir / "archive.db"
        logins = add_demo_accounts(archive)
        password = logins[0][2]
        station = start_station(workdir, write_station_config(workdir, broker_url, address), url)
        children.append(station)
        out(f"demo work directory {workdir} (emptied of the previous demo's files at each start)")
        out(f"  broker   {broker_url}  lab broker: loopback, anonymous, no TLS; not the production config")
        out(f"  station  {url}{note}  archive {archive}, log {station.log}")
        for name, role, secret in logins:
            out(f"  login    {name} / {secret}  ({role})")
        out("")
        result = play_morning(scenario, broker_url, workdir, out)
        held = wait_archived(archive, result.events, station)
        last_seq = result.events[-1]["seq"] if result.events else 0
        out(f"the door stored {len(result.events)} events (last seq {last_seq}); the station archived {held} "
            f"of them ({time.monotonic() - started:.1f} s since the demo started)")
        if not result.ok or held != len(result.events):
            if not station.running:
                raise station.died()
            out("demo FAILED: " + ("the scenario's expectations were not met" if not result.ok
                                   else f"{len(result.events) - held} events did not reach the archive; see "
                                        f"{station.log}"))
            return 1
        if exit_after_morning:
            return 0
        serving = True
        out("")
        out(f"open {url} and log in as {DEMO_USER} / {password}; Ctrl-C stops the station and the broker")
        while True:
            for child in children:
                if not child.running:
                    raise child.died()
            time.sleep(0.5)
    except Stop as stop:
        out(f"\nstopping ({stop})")
        return 0 if serving else 130
    finally:
        for s in previous:
            signal.signal(s, signal.SIG_IGN)  # a second Ctrl-C does not cut the clean-up short
        for child in reversed(children):
            child.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        lock.close()


def play_morning(scenario, broker_url: str, workdir: Path, out: Callable[[str], None]):
    from .pcsc_stack import badge_stack
    from .runner import ScenarioRunner

    with badge_stack() as badges:
        if not badges.available:
            print(f"note: badge readers are not simulated: {badges.why}", file=sys.stderr)
        return ScenarioRunner(scenario, workdir=workdir, db=workdir / "door.db", broker=broker_url, badges=badges,
                              out=out, colour=sys.stdout.isatty()).run()
