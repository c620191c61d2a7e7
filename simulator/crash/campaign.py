"""Kill the controller at random and check what survived: the crash-safety campaign and its long mode.

:func:`run_campaign` imports the synthetic roster into a fresh database, then
repeats: start :mod:`simulator.crash.door_child` on that database (a new simulated
morning a little after the last stored event), SIGKILL it at a random moment
(sometimes while it is still starting), and check the invariants on what is
on disk. At the end one more child runs until the broker has acknowledged
the whole outbox, and the supervisor's persistent-session subscriber must
hold every seq. The invariants (:class:`Campaign.check`):

- ``log verify`` passes and ``seq`` runs 1..N without a gap;
- every journaled lock release has its stored event (``access_granted`` at the
  release's ``last_seq``, ``exit_button`` at ``last_seq + 1``);
- each child's lock pin was secure before start-up and after it;
- no child died on its own (a traceback is a failure);
- after the final flush the subscriber has every seq, each payload with the stored hash.

Long mode (the issue's ≥ 1,000 kills; needs mosquitto, and root as the tests do)::

    .venv/bin/python -m bench.crash --kills 1000 [--seed N]

The pytest version is ``tests/system/test_crash_safety.py`` (``CRASH_KILLS=N`` raises its bound).
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from firmware_py.core.clock import SimulatedClock
from firmware_py.storage import roster
from firmware_py.storage.db import open_db
from firmware_py.storage.eventstore import EventStore, verify
from firmware_py.storage.secret import load_or_create_secret
from simulator.crash import REPO, TZ
from simulator.crash.door_child import PEOPLE, child_config

FIRST_MORNING = datetime(2026, 11, 23, 8, 45, tzinfo=TZ)  # a Monday
KINDS = ("child", "lock", "verify", "gaps", "release", "subscriber")


@dataclass
class CampaignResult:
    kills: int = 0
    kills_while_starting: int = 0
    self_exits: int = 0
    events: int = 0
    releases: dict = field(default_factory=dict)  # via -> count
    types: dict = field(default_factory=dict)  # event type -> count
    received: int = 0  # distinct seqs at the subscriber
    duplicates: int = 0  # messages beyond the first per seq
    seconds: float = 0.0
    failures: list = field(default_factory=list)  # (kind, message); kinds in KINDS

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "failures"} | {
            "failures": [f"{kind}: {message}" for kind, message in self.failures[:20]]}

    def failed(self, kind: str) -> list[str]:
        """The failures of one kind (see :data:`KINDS`)."""
        return [message for k, message in self.failures if k == kind]


def next_start(last_ts: str | None) -> datetime:
    """A moment just after the last stored event; past 17:00 or at a weekend, the next working morning."""
    if last_ts is None:
        return FIRST_MORNING
    t = datetime.fromisoformat(last_ts).astimezone(TZ) + timedelta(seconds=1)
    if t.hour >= 17 or t.weekday() >= 5:
        day = t.date() + timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        t = datetime.combine(day, FIRST_MORNING.timetz())
    return t


class Campaign:
    """One database, one journal, one subscriber; children started and killed in turn."""

    def __init__(self, broker, workdir: Path, *, seed: int = 1, max_run_s: float = 1.5, log=None):
        self.broker = broker
        self.workdir = Path(workdir)
        self.rng = random.Random(seed)
        self.seed = seed
        self.max_run_s = max_run_s
        self.log = log or (lambda line: None)
        self.database = self.workdir / "events.db"
        self.journal = self.workdir / "releases.jsonl"
        self.stderr_log = self.workdir / "children.log"
        self._stderr_at = 0
        account = broker.door("scan-room")
        self.args = {"database": str(self.database), "journal": str(self.journal), "broker": broker.url,
                     "ca_file": str(broker.ca_file), "username": account.username,
                     "password_file": str(account.password_file), "cert_file": str(account.cert_file),
                     "key_file": str(account.key_file)}
        self.result = CampaignResult()
        self.runs = 0
        self._journal_checked = 0
        self.subscriber = broker.connect(client_id=f"crash-supervisor-{seed}", clean_start=False,
                                         session_expiry_s=3600)
        self.subscriber.subscribe(broker.topic("scan-room", "events", "#"))

    # ------------------------------------------------------------------ set-up and children

    def prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = child_config(self.args)
        db = open_db(cfg.storage.database)
        store = EventStore(db, site=cfg.site.site, door=cfg.site.door, clock=SimulatedClock(FIRST_MORNING))
        roster.import_csv(db, store, PEOPLE, secret=load_or_create_secret(cfg.storage.secret),
                          schedule_groups=set(cfg.calendar.schedules), tz=cfg.site.timezone)
        db.conn.close()

    def _spawn(self, **extra) -> subprocess.Popen:
        self.runs += 1
        args = {**self.args, "run": self.runs, "seed": self.seed * 100003 + self.runs,
                "start": next_start(self._last_ts()).isoformat(), **extra}
        with open(self.stderr_log, "a") as err:  # a file, not a pipe: nobody reads a killed child's pipe
            err.write(f"---- run {self.runs}\n")
            err.flush()
            self._stderr_at = err.tell()
            return subprocess.Popen([sys.executable, "-m", "simulator.crash.door_child", json.dumps(args)], cwd=REPO,
                                    stdout=subprocess.PIPE, stderr=err, text=True)

    def _last_ts(self) -> str | None:
        with sqlite3.connect(self.database) as conn:
            row = conn.execute("SELECT ts FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def _read_ready(self, child: subprocess.Popen, timeout: float) -> dict | None:
        """Wait for the child's ``ready`` line; None if it did not come (the child died or is slow)."""
        box: list = []
        reader = threading.Thread(target=lambda: box.append(child.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        line = box[0] if box else ""
        if not line.startswith("ready "):
            return None
        return json.loads(line.split(" ", 1)[1])

    def kill_once(self, *, while_starting: bool | None = None) -> None:
        """Start a child and SIGKILL it: at a random moment of its run or, now and then, while it starts."""
        child = self._spawn()
        if while_starting is None:
            while_starting = self.rng.random() < 0.15
        if while_starting:  # somewhere in imports, driver set-up, controller_started, the first connect
            time.sleep(self.rng.uniform(0.0, 1.2))
            ready = None
        else:
            ready = self._read_ready(child, timeout=20)
            if ready is None:
                self._died(child, "no ready line")
                return
            time.sleep(self.rng.uniform(0.0, self.max_run_s))
        if child.poll() is not None:
            self._died(child, "exited on its own")
            return
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        self.result.kills += 1
        self.result.kills_while_starting += while_starting
        if ready is not None:
            self._check_ready(ready)
        self.check()

    def run_child(self, **extra) -> subprocess.Popen:
        """Start a child with extra arguments (``die_after_release``, ``steps``) and wait for it to end."""
        child = self._spawn(**extra)
        child.wait(timeout=60)
        return child

    def _died(self, child: subprocess.Popen, what: str) -> None:
        child.kill()
        child.wait()
        with open(self.stderr_log, errors="replace") as f:
            f.seek(self._stderr_at)
            err = f.read()
        self.result.self_exits += 1
        self.result.failures.append(("child", f"run {self.runs}: the child {what} (exit {child.returncode}):\n"
                                              f"{err[-3000:]}"))

    def failures(self) -> list[str]:
        return [f"{kind}: {message}" for kind, message in self.result.failures]

    def _check_ready(self, ready: dict) -> None:
        if ready["before"] != "secure" or ready["after"] != "secure":
            self.result.failures.append(("lock", f"run {self.runs}: lock {ready['before']} before start-up, "
                                                 f"{ready['after']} after it"))

    # ------------------------------------------------------------------ the invariants

    def stored(self) -> list[tuple[int, str, str]]:
        with sqlite3.connect(self.database) as conn:
            return conn.execute("SELECT seq, type, hash FROM events ORDER BY seq").fetchall()

    def check(self) -> None:
        """What must hold on disk after every kill."""
        db = open_db(self.database)
        try:
            verdict = verify(db)
        finally:
            db.conn.close()
        if not verdict.ok:
            self.result.failures.append(("verify", f"run {self.runs}: log verify: {verdict}"))
        rows = self.stored()
        seqs = [r[0] for r in rows]
        if seqs != list(range(1, len(seqs) + 1)):
            self.result.failures.append(("gaps", f"run {self.runs}: seq has gaps: {_gaps(seqs)}"))
        types = {seq: type_ for seq, type_, _ in rows}
        lines = self.journal.read_text().splitlines() if self.journal.exists() else []
        for line in lines[self._journal_checked:]:
            entry = json.loads(line)
            via, last = entry["via"], entry["last_seq"]
            self.result.releases[via] = self.result.releases.get(via, 0) + 1
            # every release is preceded by its stored event: it is the last one when the relay moves
            expected = {"_grant": "access_granted", "_on_exit_button": "exit_button"}.get(via)
            if expected is None or types.get(last) != expected:
                wanted = f"{expected} at seq {last}" if expected else "a release by the grant or the exit button only"
                self.result.failures.append(("release",
                    f"run {entry['run']}: lock released by {via} after seq {last} without its stored event: "
                    f"wanted {wanted}, found {types.get(last, 'nothing')}"))
        self._journal_checked = len(lines)

    def flush_and_check_subscriber(self, timeout: float = 60) -> None:
        """One last child runs until the outbox is empty; the subscriber must then hold every seq."""
        child = self._spawn(flush=True)
        try:
            ready = self._read_ready(child, timeout=20)
            if ready is None:
                self._died(child, "no ready line (flush)")
                return
            self._check_ready(ready)
            line = _readline(child, timeout)
            if not line.startswith("flushed "):
                self._died(child, f"did not flush the outbox within {timeout} s")
                return
            last = json.loads(line.split(" ", 1)[1])["last_seq"]
            rows = self.stored()
            hashes = {seq: h for seq, _, h in rows if seq <= last}
            deadline = time.monotonic() + 10
            while True:
                got = self._received()
                if set(hashes) <= set(got) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
            child.wait()
        self.check()
        missing = sorted(set(hashes) - set(got))
        if missing:
            self.result.failures.append(("subscriber", f"the subscriber lacks {len(missing)} of {len(hashes)} "
                                                       f"seqs: {_gaps(missing, limit=10)}"))
        wrong = [seq for seq, h in got.items() if seq in hashes and h != hashes[seq]]
        if wrong:
            self.result.failures.append(("subscriber", f"the subscriber got other content than stored for seqs "
                                                       f"{wrong[:10]}"))
        self.result.events = len(rows)
        self.result.received = len(got)
        self.result.duplicates = len(self.subscriber.received()) - len(got)
        for _, type_, _ in rows:
            self.result.types[type_] = self.result.types.get(type_, 0) + 1

    def _received(self) -> dict[int, str]:
        got: dict[int, str] = {}
        for m in self.subscriber.received():
            event = json.loads(m.payload)
            got.setdefault(event["seq"], event["hash"])
        return got

    def close(self) -> None:
        self.subscriber.disconnect()


def run_campaign(broker, workdir: Path, *, kills: int, seed: int = 1, max_run_s: float = 1.5,
                 log=None) -> CampaignResult:
    """Prepare, kill ``kills`` times, flush, check; return the counts and every failure found."""
    started = time.monotonic()
    campaign = Campaign(broker, workdir, seed=seed, max_run_s=max_run_s, log=log)
    try:
        campaign.prepare()
        for i in range(kills):
            campaign.kill_once()
            if log and (i + 1) % 50 == 0:
                log(f"{i + 1} kills, {len(campaign.stored())} events, {len(campaign.result.failures)} failures, "
                    f"{time.monotonic() - started:.0f} s")
        campaign.flush_and_check_subscriber()
    finally:
        campaign.close()
    campaign.result.seconds = round(time.monotonic() - started, 1)
    return campaign.result


def _readline(child: subprocess.Popen, timeout: float) -> str:
    box: list = []
    reader = threading.Thread(target=lambda: box.append(child.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


def _gaps(seqs: list[int], limit: int = 5) -> str:
    expected, out = 1, []
    for s in seqs:
        if s != expected:
            out.append(f"{expected}..{s - 1}" if s > expected else f"{s} out of order")
        expected = max(expected, s + 1)
    return ", ".join(out[:limit]) if out else ", ".join(map(str, seqs[:limit]))
