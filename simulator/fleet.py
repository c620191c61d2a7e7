"""`accessctl-sim fleet`: many simulated doors in one process, publishing a busy working day.

Each door (:class:`~simulator.fleet_door.FleetDoor`) is the real controller with its own SQLite
database, durable outbox and MQTT link. Threads are kept in check: the doors' loops run on a
few worker threads (each owns a share of the doors and handles their inputs and timers), so a
door costs the two threads of its MQTT link (paho's network thread and the link's sender).

A run: build the doors (a new database gets the synthetic roster), start them, wait for their
links, then play the day for ``duration_s`` of wall-clock time at ``rate`` events per second
across the fleet; then stop every controller cleanly, wait until every outbox is empty (or
``drain_timeout_s`` passed) and report each door's last seq. Progress goes to standard error, the
result (one JSON line per door) to standard output.
"""

from __future__ import annotations

import json
import logging
import random
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

from firmware_py.config.schema import load_config

from .fleet_day import write_roster
from .fleet_door import SITE, FleetDoor, door_config, door_name
from .scenario import REPO

log = logging.getLogger(__name__)

BASE_CONFIG = REPO / "config" / "venue.example.toml"
DEFAULT_START = "2026-11-23T08:30:00+08:00"  # a Monday, office hours from 08:30
DAY_S = 7 * 3600.0 * 0.95  # the office windows 08:30-12:00 and 14:00-17:30, with a little to spare
EVENTS_PER_ACTION = 1.9  # what the mix of fleet_day.MIX stores per action, on average
THREAD_STACK = 512 * 1024  # two link threads per door: small stacks keep 500 doors' memory low
DOORS_PER_WORKER = 25
DOORS_PER_PROCESS = 100  # paho's select() loop: see _run_processes
DOORS_PER_PROCESS_ROSTER = 50  # with --roster-keys each door holds another SQLite connection (its roster receiver)
CONNECT_WAVE = 25  # doors started (and connecting) at a time
WAVE_WAIT_S = 15.0
MAX_WORKERS = 8


@dataclass(frozen=True)
class LinkCut:
    """Cut a door's link at ``at_s`` (wall seconds from the start of the day's play) for ``for_s``."""

    door: str
    at_s: float
    for_s: float


def parse_cut(text: str) -> LinkCut:
    """``DOOR:AT:FOR`` (e.g. ``fleet-03:5:20``) → :class:`LinkCut`; ValueError naming what is wrong."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"--cut-link {text!r} is not DOOR:AT_S:FOR_S (e.g. fleet-03:5:20)")
    try:
        at, length = float(parts[1]), float(parts[2])
    except ValueError:
        raise ValueError(f"--cut-link {text!r}: AT_S and FOR_S are seconds") from None
    if at < 0 or length <= 0:
        raise ValueError(f"--cut-link {text!r}: AT_S must be >= 0 and FOR_S > 0")
    return LinkCut(parts[0], at, length)


@dataclass
class Worker:
    """A thread that runs a share of the doors: their inputs, timers and actions."""

    doors: list[FleetDoor]
    rate: float  # its share of the fleet's events per second
    events: int = 0  # stored by its doors since they were built
    played_from: int = 0  # ``events`` when the play started
    thread: threading.Thread | None = None
    error: BaseException | None = None
    stopped: bool = False  # its doors' controllers were stopped (the end of the run)
    refreshed_in: str = ""  # the phase in which it last looked at its doors' outboxes
    cut: dict = field(default_factory=dict)  # door name -> "cut" | "restored"


class Fleet:
    """N doors on site ``fleet`` against one broker (or one per door, round robin over ``brokers``)."""

    def __init__(self, doors: int, brokers: list[str], *, db_dir: Path, rate: float, duration_s: float,
                 protocol: int = 5, seed: int = 1, first: int = 1, start: str = DEFAULT_START,
                 username: str = "", password_file: Path | None = None, cuts: tuple[LinkCut, ...] = (),
                 drain_timeout_s: float = 300.0, progress: Callable[[str], None] | None = None,
                 trace: Callable[[str, int], None] | None = None, roster_keys: Path | None = None):
        if doors < 1:
            raise ValueError("--doors must be at least 1")
        if rate <= 0 or duration_s < 0:
            raise ValueError("--rate must be positive and --duration not negative")
        self.rate, self.duration_s, self.drain_timeout_s = rate, duration_s, drain_timeout_s
        self.progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        if first != 1:  # one of several processes: say which doors the lines are about
            own, label = self.progress, f"[{door_name(first)}..{door_name(first + doors - 1)}] "
            self.progress = lambda line: own(label + line)
        self.cuts = {c.door: c for c in cuts}
        self.phase = "building"
        self.t0 = 0.0
        self.start_at = datetime.fromisoformat(start)
        if self.start_at.tzinfo is None:
            raise ValueError(f"--start {start!r} needs a UTC offset (e.g. +08:00)")
        db_dir.mkdir(parents=True, exist_ok=True)
        self.db_dir = db_dir
        roster = write_roster(db_dir / f"fleet-roster-{first:02d}.csv", seed)  # one per process: no races
        base = load_config(BASE_CONFIG)
        per_door = rate * max(duration_s, 1.0) / doors / EVENTS_PER_ACTION  # actions each door will play
        self.gap_s = max(1.0, DAY_S / max(per_door, 1.0))  # simulated time between two actions
        _raise_file_limit()
        threading.stack_size(THREAD_STACK)
        n_workers = max(1, min(MAX_WORKERS, -(-doors // DOORS_PER_WORKER)))
        self.workers = [Worker([], rate / n_workers) for _ in range(n_workers)]
        self.doors: list[FleetDoor] = []
        for i in range(doors):
            index = first + i
            cfg = door_config(base, index, db_dir=db_dir, broker=brokers[i % len(brokers)], protocol=protocol,
                              username=username, password_file=password_file, roster_keys=roster_keys)
            worker = self.workers[i % n_workers]
            door = FleetDoor(cfg, start=self.start_at, roster=roster, rng=random.Random(f"{seed}-{door_name(index)}"),
                             counter=worker, trace=trace)
            worker.doors.append(door)
            self.doors.append(door)
        unknown = set(self.cuts) - {d.name for d in self.doors}
        if unknown:
            raise ValueError(f"--cut-link names doors this fleet does not have: {', '.join(sorted(unknown))}")

    # ------------------------------------------------------------------ the run

    def run(self, *, connect_timeout_s: float = 60.0) -> list[dict]:
        """Play the day; return one result per door (site, door, last_seq and, if any is left, queued)."""
        self._start_in_waves(connect_timeout_s)
        self.phase = "connecting"
        for worker in self.workers:
            worker.thread = threading.Thread(target=self._work, args=(worker,), name="fleet-worker", daemon=True)
            worker.thread.start()
        deadline = time.monotonic() + connect_timeout_s
        while time.monotonic() < deadline and not all(d.link.connected for d in self.doors):
            time.sleep(0.1)
        self.progress(f"fleet: {len(self.doors)} doors on {len(self.workers)} worker threads, "
                      f"{self.connected()}/{len(self.doors)} connected; playing {self.duration_s:g} s at "
                      f"{self.rate:g} events/s (about {self.gap_s:.0f} s of the day between actions)")
        for worker in self.workers:
            worker.played_from = worker.events
        self.t0 = time.monotonic()
        self.phase = "playing"
        try:
            self._watch(self.t0 + self.duration_s, "playing")
        except KeyboardInterrupt:
            self.progress("fleet: interrupted; stopping the doors")
        self.progress(f"fleet: played; {self.resources()}")
        self.phase = "stopping"
        self._wait(lambda: all(w.stopped for w in self.workers), 30)
        self.phase = "draining"
        drained = self._watch(time.monotonic() + self.drain_timeout_s, "draining",
                              done=lambda: self.queued() == 0 and self._fresh())
        self.phase = "closing"
        for worker in self.workers:
            worker.thread.join(60)
        results = []
        for door in self.doors:
            door.refresh()
            result = {"site": SITE, "door": door.name, "last_seq": door.store.last_seq()}
            if door.queued:
                result["queued"] = door.queued
            results.append(result)
            door.close()
        if not drained:
            left = [f"{r['door']} {r['queued']}" for r in results if r.get("queued")]
            self.progress(f"fleet: after {self.drain_timeout_s:g} s, events still queued: {', '.join(left)}")
        self.progress("fleet: done")
        errors = [w.error for w in self.workers if w.error]
        if errors:
            raise RuntimeError(f"a fleet worker failed: {errors[0]!r}")
        return results

    def _start_in_waves(self, timeout_s: float) -> None:
        """Start the doors a wave at a time, each wave once the previous one is connected (or a while
        passed): hundreds of CONNECTs at once made the RabbitMQ lab nodes on this 2-core machine
        close every one of them with "login timeout", again at every retry."""
        for i in range(0, len(self.doors), CONNECT_WAVE):
            wave = self.doors[i:i + CONNECT_WAVE]
            for door in wave:
                door.start()
            self._wait(lambda wave=wave: all(d.link.connected for d in wave), min(timeout_s, WAVE_WAIT_S))

    def _wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _fresh(self) -> bool:
        """Every worker has looked at its outboxes since the drain began."""
        return all(w.refreshed_in == "draining" for w in self.workers)

    def _watch(self, until: float, phase: str, done: Callable[[], bool] | None = None,
               every_s: float = 5.0) -> bool:
        next_line = time.monotonic() + every_s
        last_events, last_t = self.events(), time.monotonic()
        while time.monotonic() < until:
            if done is not None and done():
                return True
            if any(w.error for w in self.workers):
                raise RuntimeError(f"a fleet worker failed: {next(w.error for w in self.workers if w.error)!r}")
            time.sleep(0.1)
            now = time.monotonic()
            if now >= next_line:
                events = self.events()
                self.progress(f"fleet: {now - self.t0:6.0f} s {phase}: {events} events stored "
                              f"({(events - last_events) / (now - last_t):.0f}/s), {self.queued()} queued, "
                              f"{self.connected()}/{len(self.doors)} connected")
                last_events, last_t, next_line = events, now, now + every_s
        return done is None or done()

    # ------------------------------------------------------------------ the worker threads

    def _work(self, worker: Worker) -> None:
        try:
            self._loop(worker)
        except BaseException as exc:  # reported by the main thread
            log.exception("fleet worker failed")
            worker.error = exc

    def _loop(self, worker: Worker) -> None:
        doors = worker.doors
        turn = 0
        next_sweep = next_refresh = 0.0
        while self.phase != "closing":
            now = time.monotonic()
            played = False
            if self.phase == "playing":
                self._cut_links(worker, now - self.t0)
                if worker.events - worker.played_from < worker.rate * (now - self.t0):
                    doors[turn % len(doors)].play(self.gap_s)
                    turn += 1
                    played = True
            elif self.phase in ("stopping", "draining") and not worker.stopped:
                for door, cut in ((d, self.cuts.get(d.name)) for d in doors):
                    if cut and worker.cut.get(door.name) == "cut":  # a cut still open at the end: restore it
                        door.link.resume()
                        worker.cut[door.name] = "restored"
                    door.stop()
                worker.stopped = True
            if now >= next_sweep:
                for door in doors:
                    door.pump()
                next_sweep = now + (0.05 if self.phase == "playing" else 0.25)
            if now >= next_refresh:
                for door in doors:
                    door.refresh()
                worker.refreshed_in = self.phase
                next_refresh = now + (2.0 if self.phase == "playing" else 0.25)
            if not played:
                time.sleep(0.02)

    def _cut_links(self, worker: Worker, elapsed: float) -> None:
        for door in worker.doors:
            cut = self.cuts.get(door.name)
            if cut is None:
                continue
            state = worker.cut.get(door.name)
            if state is None and elapsed >= cut.at_s:
                door.link.suspend()
                worker.cut[door.name] = "cut"
                self.progress(f"fleet: {door.name}: link cut at {elapsed:.1f} s")
            elif state == "cut" and elapsed >= cut.at_s + cut.for_s:
                door.link.resume()
                worker.cut[door.name] = "restored"
                self.progress(f"fleet: {door.name}: link restored at {elapsed:.1f} s")

    # ------------------------------------------------------------------ what can be seen

    def events(self) -> int:
        return sum(w.events for w in self.workers)

    def queued(self) -> int:
        return sum(d.queued for d in self.doors)

    def connected(self) -> int:
        return sum(1 for d in self.doors if d.link.connected)

    def resources(self) -> str:
        status = Path("/proc/self/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return (f"{threading.active_count()} threads, memory {fields.get('VmRSS', '?').strip()} "
                f"(peak {fields.get('VmHWM', '?').strip()})")


def _raise_file_limit() -> None:
    """Each door holds about ten descriptors (two SQLite connections, a socket, paho's wake-up pair)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_fleet(args, out: TextIO = sys.stdout) -> int:
    """The `accessctl-sim fleet` command; exit 0 when every outbox was emptied."""
    per_process = DOORS_PER_PROCESS_ROSTER if args.roster_keys else DOORS_PER_PROCESS
    if args.doors > per_process:
        return _run_processes(args, out, per_process)
    brokers = [b.strip() for b in args.broker.split(",") if b.strip()]
    trace = _Trace(args.trace) if args.trace else None
    fleet = Fleet(args.doors, brokers, db_dir=args.db_dir, rate=args.rate, duration_s=args.duration,
                  protocol=args.protocol, seed=args.seed, first=args.first, start=args.start,
                  username=args.username or "", password_file=args.password_file,
                  cuts=tuple(parse_cut(c) for c in args.cut_link or ()), drain_timeout_s=args.drain_timeout,
                  trace=trace, roster_keys=args.roster_keys)
    try:
        results = fleet.run()
    finally:
        if trace:
            trace.close()
    for result in results:
        out.write(json.dumps(result) + "\n")
    out.flush()
    return 1 if any(r.get("queued") for r in results) else 0


def _run_processes(args, out: TextIO, per_process: int) -> int:
    """More doors than one process can hold: one child `accessctl-sim fleet` per ``per_process`` doors.

    paho's network loop uses ``select()``, which cannot watch a descriptor numbered 1024 or more,
    and each door holds about ten (two SQLite connections, its socket, paho's wake-up pair): past
    ~100 doors the sockets of later doors land above 1023 and never get their CONNECT out (the
    RabbitMQ nodes log "login timeout"); a door with the roster keys holds about four more (its roster
    receiver's SQLite connection: 74 of 100 such doors connected), so those go 50 to a process. The
    children share the rate; their progress goes to standard error as it comes, their results are
    gathered and printed in door order.
    """
    cuts = [parse_cut(c) for c in args.cut_link or ()]
    children = []
    for first in range(args.first, args.first + args.doors, per_process):
        n = min(per_process, args.first + args.doors - first)
        names = {door_name(i) for i in range(first, first + n)}
        cmd = [sys.executable, "-m", "simulator.cli", "fleet", "--doors", str(n), "--first", str(first),
               "--broker", args.broker, "--db-dir", str(args.db_dir), "--rate", str(args.rate * n / args.doors),
               "--duration", str(args.duration), "--protocol", str(args.protocol), "--seed", str(args.seed),
               "--start", args.start, "--drain-timeout", str(args.drain_timeout)]
        if args.username:
            cmd += ["--username", args.username]
        if args.password_file:
            cmd += ["--password-file", str(args.password_file)]
        if args.trace:
            cmd += ["--trace", f"{args.trace}.part{first}"]
        if args.roster_keys:
            cmd += ["--roster-keys", str(args.roster_keys)]
        for c in cuts:
            if c.door in names:
                cmd += ["--cut-link", f"{c.door}:{c.at_s:g}:{c.for_s:g}"]
        children.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO))
    results, codes = [], []
    for child in children:
        while True:
            try:
                stdout, _ = child.communicate()
                break
            except KeyboardInterrupt:  # Ctrl-C reaches the children too (one process group): they stop and drain
                continue
        codes.append(child.returncode)
        results += [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    if args.trace:
        with open(args.trace, "w", encoding="ascii") as merged:
            for part in sorted(args.trace.parent.glob(args.trace.name + ".part*")):
                merged.write(part.read_text(encoding="ascii"))
                part.unlink()
    for result in sorted(results, key=lambda r: r["door"]):
        out.write(json.dumps(result) + "\n")
    out.flush()
    return max(codes)


def add_command(sub) -> None:
    p = sub.add_parser("fleet", help="many simulated doors (real controller, store and MQTT link each) "
                                     "publishing a busy working day",
                       description="N doors fleet-01 ... on site 'fleet', each with the real controller, event "
                                   "store, outbox and MQTT link, play a busy working day on a simulated clock. "
                                   "Progress goes to standard error; at the end, one JSON line per door "
                                   '({"site", "door", "last_seq"}) goes to standard output.')
    p.add_argument("--doors", type=int, required=True, help="how many doors")
    p.add_argument("--broker", required=True,
                   help="mqtt://HOST:PORT (no TLS: a lab broker) or mqtts://; several, comma-separated, spread "
                        "the doors over them (e.g. the three nodes of the RabbitMQ lab cluster)")
    p.add_argument("--db-dir", type=Path, default=Path("fleet-db"),
                   help="the doors' databases and keys (kept: a second run continues each door's log)")
    p.add_argument("--rate", type=float, default=100.0, help="events per second across the fleet (default 100)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of wall-clock time to play (default 60)")
    p.add_argument("--protocol", type=int, choices=(5, 311), default=5, help="MQTT 5, or 311 for RabbitMQ")
    p.add_argument("--seed", type=int, default=1, help="the day's random seed (default 1)")
    p.add_argument("--first", type=int, default=1, help="number of the first door (default 1: fleet-01)")
    p.add_argument("--start", default=DEFAULT_START, help=f"simulated start of the day (default {DEFAULT_START})")
    p.add_argument("--username", help="MQTT account of every door (a broker that refuses anonymous clients)")
    p.add_argument("--password-file", type=Path, help="its password, on the first line")
    p.add_argument("--cut-link", action="append", metavar="DOOR:AT_S:FOR_S",
                   help="cut a door's link AT_S seconds into the play, for FOR_S seconds (repeatable)")
    p.add_argument("--drain-timeout", type=float, default=300.0,
                   help="seconds to wait at the end for every outbox to empty (default 300)")
    p.add_argument("--trace", type=Path, metavar="FILE",
                   help="write 'DOOR SEQ UNIX_TIME' for every event as it is stored (latency measurements)")
    p.add_argument("--roster-keys", type=Path, metavar="DIR",
                   help="take the station's signed roster bundles: DIR holds the station's public key and the "
                        "site roster key as docs/commissioning.md names them (roster-signing.pub, "
                        "site-roster.key, mode 0600), given to every door as its [roster] keys")
    p.add_argument("--verbose", "-v", action="store_true")


class _Trace:
    """``--trace``: one line per stored event, written by the worker threads under one lock."""

    def __init__(self, path: Path):
        self._f = open(path, "w", encoding="ascii", buffering=1 << 16)
        self._lock = threading.Lock()

    def __call__(self, door: str, seq: int) -> None:
        line = f"{door} {seq} {time.time():.4f}\n"
        with self._lock:
            self._f.write(line)

    def close(self) -> None:
        with self._lock:
            self._f.close()

