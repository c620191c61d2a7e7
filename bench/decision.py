"""Benchmark 1 (and GB 50396 5.1.2, 5.2.2-3): credential read → lock release.

The real controller and the real drivers run on the emulators
(:class:`simulator.door_sim.SimulatedDoor`: gpiozero MockFactory pins, the
resident ID readers on pseudo-terminals). A synthetic person presents a
credential outside, walks through the metal-detector gate, opens and closes
the door, and leaves the same way; the loop here is the controller's event
loop, so it can time each input's handling:

- *decision*: handling the credential input (roster look-up, policy, the
  screening state and its timer). Badges are posted as ``BadgeRead`` into the
  controller's queue: the PC/SC leg (pyscard → pcscd → vpcd) is left out
  because pcscd polls for cards every 400 ms, a fixed delay that says nothing
  about our code (and only one pcscd can run per machine). Every fourth entry
  uses the resident ID card through the real serial driver on its pty.
- *grant*: handling the gate's ``GatePassage`` (posted by the real gate driver
  from the mock pins) up to the lock pin reading released: the
  ``access_granted`` event and its outbox row committed durably (WAL,
  ``synchronous=FULL``), then the lock relay energised. The moment is taken
  when the real :class:`~drivers.door_lock.DoorLock`'s ``release()`` has
  driven the pin (a thin wrapper around it records the time and checks the
  pin); what the controller does after that (lights, timers) is timed
  separately as *grant handling*.
- *credential → release* = decision + grant: our code's share of the time from
  a complete credential read to the lock releasing. The person's walk through
  the gate lies between the two in reality and is not ours to time.

Baseline, measured in the same run on the same disk: a bare durable SQLite
append of one row of the same size (WAL, ``synchronous=FULL``, one
transaction each) into a file of its own, one after each grant, interleaved
with the door's inputs so that other load on the machine weighs on both.
The grant's own ``EventStore.append`` (the durable transaction: event,
outbox row, head pointer) is timed too (``grant_append``), by a wrapper that
calls the real method.

A second sample of the same bare append (``baseline_after_idle``) is taken
after the loop has slept as long as it waited for the walk-through: the grant
starts from a wake-up (a blocking wait on the input queue) while the first
baseline follows the door's busy handling at once, and on a virtual machine a
CPU coming back from idle makes the same append several times slower. It is
reported beside the target's baseline, which stays the first one.
"""

from __future__ import annotations

import cProfile
import queue
import random
import sqlite3
import sys
import time
from datetime import timedelta
from pathlib import Path

from firmware_py.config.schema import Config
from firmware_py.core.clock import SimulatedClock
from firmware_py.core.inputs import BadgeRead, GatePassage, IdCardRead
from simulator.door_sim import SimulatedDoor
from simulator.id_card_device import IdCard

from .common import Result, check, log, profile_text, summary_ms
from .data import BENCH_START, Workspace, badge_uid, id_number, person_id

TARGET_MS = 5.0
TARGET_RATIO = 2.5  # issue 12: the door's share may cost at most 2.5 bare durable appends
GB50396_CEILING_MS = 2000.0  # GB 50396-2007 5.1.2: complete credential read to lock release
ID_CARD_EVERY = 4  # every fourth entry is by resident ID card through the serial driver
WARMUP_CYCLES = 3  # not counted: first imports and cold caches
INPUT_TIMEOUT_S = 5.0
EVENT_BODY_BYTES = 420  # about the size of a stored access_granted event: the baseline appends rows this big


# --------------------------------------------------------------------------- the baseline


class BareAppender:
    """The baseline: one row per durable transaction into a table of its own file on the same disk
    (WAL, ``synchronous=FULL``, ``BEGIN IMMEDIATE`` … ``COMMIT``), as bare as SQLite allows."""

    def __init__(self, directory: Path, *, body_bytes: int = EVENT_BODY_BYTES):
        path = directory / "baseline-append.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        self.body = "x" * body_bytes
        self.seq = 0
        self.last_s = 0.0  # the last append's duration, recorded or not
        self.times: list[float] = []
        self.times_after_idle: list[float] = []

    def append(self, *, record: bool = True, after_idle: bool = False) -> None:
        self.seq += 1
        t0 = time.perf_counter()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO log (seq, body) VALUES (?, ?)", (self.seq, self.body))
        self.conn.execute("COMMIT")
        self.last_s = time.perf_counter() - t0
        if record:
            (self.times_after_idle if after_idle else self.times).append(self.last_s)

    def close(self) -> None:
        self.conn.close()


# --------------------------------------------------------------------------- the door


class TimedLock:
    """The door's real lock driver, with the moment its pin was driven to released recorded."""

    def __init__(self, lock, world):
        self._lock = lock
        self._world = world
        self.released_at: float | None = None

    def release(self) -> None:
        self._lock.release()
        if self._world.lock_released:  # the relay pin reads released now
            self.released_at = time.perf_counter()

    def secure(self) -> None:
        self._lock.secure()

    @property
    def is_released(self) -> bool:
        return self._lock.is_released


class DoorBench:
    """Drives one simulated door and times the controller's handling of credentials and walk-throughs."""

    def __init__(self, cfg: Config, *, persons: int, seed: int = 7):
        self.door = SimulatedDoor(cfg, clock=SimulatedClock(BENCH_START), badges=False)
        self.lock = TimedLock(self.door.controller.lock, self.door.world)
        self.door.controller.lock = self.lock
        self._watch_appends(self.door.service.event_log)
        self.baseline = BareAppender(cfg.storage.database.parent)
        self.persons = persons
        self.rng = random.Random(seed)
        self.decision_badge: list[float] = []
        self.decision_id_card: list[float] = []
        self.grant: list[float] = []
        self.grant_handling: list[float] = []
        self.grant_append: list[float] = []
        self.last_append_s = 0.0
        self.last_wait_s = 0.0  # how long the loop slept in the input queue before the last timed input
        self.release: list[float] = []
        self.profiler: cProfile.Profile | None = None

    def __enter__(self) -> DoorBench:
        self.door.start()
        return self

    def __exit__(self, *exc) -> None:
        self.baseline.close()
        self.door.close()
        self.door.db.conn.close()

    def _watch_appends(self, store) -> None:
        """Time the event log's records (the durable part of a grant, with its commit), calling the real method."""
        append = store.record

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return append(*args, **kwargs)
            finally:
                self.last_append_s = time.perf_counter() - t0

        store.record = timed

    def _handle_until(self, kind) -> float:
        """Handle queued inputs until one of ``kind``; return when its handling started (perf_counter)."""
        deadline = time.monotonic() + INPUT_TIMEOUT_S
        while True:
            waited = time.perf_counter()
            try:
                item = self.door.inputs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"no {kind.__name__} reached the controller within {INPUT_TIMEOUT_S} s") from None
            if self.profiler is not None:
                self.profiler.enable()
            t0 = time.perf_counter()
            self.last_wait_s = t0 - waited
            self.door.controller.handle(item)
            if self.profiler is not None:
                self.profiler.disable()
            if isinstance(item, kind):
                return t0

    def _present(self, i: int, side: str, by_id_card: bool) -> float:
        """Present person ``i``'s credential; return the seconds the controller took to decide."""
        if by_id_card:
            device = self.door.id_devices[side]
            card = IdCard(name=f"测试{person_id(i)}", id_number=id_number(i))
            polls = device.requests["FIND_CARD"]
            if not device.tap(card).wait(INPUT_TIMEOUT_S):
                raise RuntimeError("the emulated ID card reader did not read the card")
            t0 = self._handle_until(IdCardRead)
            seconds = time.perf_counter() - t0
            # As SimulatedDoor.present_id_card: let the driver see the empty reader before the next card.
            device.wait_for_requests("FIND_CARD", polls + 2, INPUT_TIMEOUT_S)
        else:
            self.door.inputs.put(BadgeRead(side, badge_uid(i)))
            t0 = self._handle_until(BadgeRead)
            seconds = time.perf_counter() - t0
        self.door.controller.tick()
        if self.door.controller.state != "screening":
            last = self.door.events()[-1]
            raise RuntimeError(f"{person_id(i)} at the {side} reader was not let through to screening: "
                               f"{last['type']} {last.get('reason')}")
        return seconds

    def _walk_through(self) -> tuple[float, float]:
        """Walk through the gate; return the seconds from handling the walk-through to the lock pin
        released, and to the end of its handling."""
        self.door.world.walk_through(persons=1, metal=False, pulse_s=0.005)
        self.lock.released_at = None
        t0 = self._handle_until(GatePassage)
        handled = time.perf_counter() - t0
        if self.lock.released_at is None or not self.door.world.lock_released:
            last = self.door.events()[-1]
            raise RuntimeError(
                f"the lock did not release after a clear walk-through: {last['type']} {last.get('reason')}")
        self.door.controller.tick()
        return self.lock.released_at - t0, handled

    def cycle(self, *, record: bool, use_id_card: bool) -> None:
        """One person in and out again: two credentials, two walk-throughs, two passages."""
        i = self.rng.randrange(self.persons)
        for side in ("outside", "inside"):
            by_id_card = use_id_card and side == "outside"
            decision = self._present(i, side, by_id_card)
            grant, handled = self._walk_through()
            append_s, wait_s = self.last_append_s, self.last_wait_s
            self.door.open_door()
            self.door.close_door()
            self.door.advance(timedelta(seconds=3))
            if record:
                (self.decision_id_card if by_id_card else self.decision_badge).append(decision)
                self.grant.append(grant)
                self.grant_handling.append(handled)
                self.grant_append.append(append_s)
                self.release.append(decision + grant)
            # The baseline's sample is taken here, between the door's inputs, so that whatever else
            # the machine is doing weighs on both alike.
            self.baseline.append(record=record)
            time.sleep(wait_s)  # as idle as the loop was before the grant
            self.baseline.append(record=record, after_idle=True)

    def run(self, cycles: int) -> None:
        for c in range(WARMUP_CYCLES + cycles):
            self.cycle(record=c >= WARMUP_CYCLES, use_id_card=c % ID_CARD_EVERY == 0)

    def profile(self, cycles: int) -> str:
        """cProfile of the controller's handling only (not the emulators, not the waits) over ``cycles``."""
        self.profiler = cProfile.Profile()
        try:
            for c in range(cycles):
                self.cycle(record=False, use_id_card=c % ID_CARD_EVERY == 0)
        finally:
            prof, self.profiler = self.profiler, None
        return profile_text(prof, top=20)


# --------------------------------------------------------------------------- the benchmark


def measure(cfg: Config, *, label: str, persons: int, cycles: int, result: Result,
            profile_cycles: int) -> dict:
    """Baseline and product for one database; add the check row to ``result``; return the figures."""
    log(f"decision: {label}: {cycles} in-and-out cycles through the simulated door, baseline interleaved")
    with DoorBench(cfg, persons=persons) as bench:
        bench.run(cycles)
        baseline = summary_ms(bench.baseline.times)
        figures = {
            "label": label, "persons": persons,
            "release": summary_ms(bench.release), "decision_badge": summary_ms(bench.decision_badge),
            "decision_id_card": summary_ms(bench.decision_id_card) if bench.decision_id_card else None,
            "grant": summary_ms(bench.grant), "grant_handling": summary_ms(bench.grant_handling),
            "grant_append": summary_ms(bench.grant_append),
            "baseline_append": baseline,
            "baseline_after_idle": summary_ms(bench.baseline.times_after_idle),
        }
        p99, base99 = figures["release"]["p99_ms"], baseline["p99_ms"]
        met = p99 <= TARGET_MS and p99 <= TARGET_RATIO * base99
        row = result.add(check(f"credential → release p99, {label}", unit="ms", product=p99, baseline=base99,
                               target=f"≤ {TARGET_MS:g} ms and ≤ {TARGET_RATIO:g}× baseline", met=met))
        if not met:
            log(f"decision: {label}: target missed ({p99} ms, baseline {base99} ms); profiling")
            result.profile(row["metric"], bench.profile(profile_cycles))
    return figures


def run(ws: Workspace, *, quick: bool, rosters: tuple[int, ...] | None = None, cycles: int | None = None,
        stored_events: int | None = None, profile_cycles: int | None = None) -> Result:
    rosters = rosters or ((100, 10_000) if quick else (100, 10_000, 100_000))
    cycles = cycles or (20 if quick else 100)
    profile_cycles = profile_cycles or max(5, cycles // 4)
    stored_events = stored_events if stored_events is not None else (50_000 if quick else 1_000_000)
    result = Result("decision", "Credential read → lock release (decision + durable event + outbox write)",
                    data_dir=ws.root, quick=quick,
                    params={"rosters": list(rosters), "cycles": cycles, "samples_per_case": 2 * cycles,
                            "warmup_cycles": WARMUP_CYCLES, "stored_events": stored_events,
                            "id_card_every": ID_CARD_EVERY, "baseline_row_bytes": EVENT_BODY_BYTES,
                            "switch_interval_s": sys.getswitchinterval()})
    cases = []
    for persons in rosters:
        cfg = ws.roster_db(persons, f"decision-{persons}")
        cases.append(measure(cfg, label=f"{persons:,} persons", persons=persons, cycles=cycles, result=result,
                             profile_cycles=profile_cycles))
    if stored_events:
        persons = max(rosters)
        log(f"decision: storing {stored_events:,} synthetic events after a {persons:,}-person roster")
        cfg, gen_s = ws.events_db(persons, stored_events)
        result.detail("stored_events_generation_s", round(gen_s, 1))
        cases.append(measure(cfg, label=f"{persons:,} persons + {stored_events:,} stored events",
                             persons=persons, cycles=cycles, result=result,
                             profile_cycles=profile_cycles))
    worst = max(cases, key=lambda c: c["release"]["max_ms"])
    result.add(check("GB 50396 5.1.2: credential → release, slowest of all cases", unit="ms",
                     product=worst["release"]["max_ms"], baseline=None,
                     target=f"≤ {GB50396_CEILING_MS:,.0f} ms (the code's ceiling)",
                     met=worst["release"]["max_ms"] <= GB50396_CEILING_MS))
    result.detail("cases", cases)
    result.note("Badges are posted into the controller's queue as BadgeRead: pcscd's 400 ms card-presence poll "
                "(and the ISO 14443 exchange) is a fixed delay of the PC/SC stack, not of this code. Every "
                f"{ID_CARD_EVERY}th entry reads a resident ID card through the real serial driver on a pty; "
                "its decision includes the HMAC of the number and the hash look-up.")
    result.note("credential → release = handling the credential (decision) + handling the clear walk-through "
                "up to the lock pin reading released (access_granted and its outbox row committed with "
                "synchronous=FULL, then the relay). The person's walk through the gate between the two is "
                "physical time and not counted; with screen_on_exit = false an exit releases at the decision.")
    result.note("The target's baseline is the bare append taken right after the door's handling. "
                "`baseline_after_idle` is the same append after sleeping as long as the loop waited for the "
                "walk-through, the state the grant starts from: the share of the gap that is the machine "
                "waking up rather than our code.")
    result.note(f"{WARMUP_CYCLES} warm-up cycles are not counted; each cycle is one person in and out "
                "(two decisions, two grants, two passages stored). MQTT is off (no broker in this benchmark).")
    if stored_events:
        result.note(f"The {stored_events:,} stored events were bulk-inserted in one transaction as valid, "
                    "hash-chained rows (canonical JSON from per-type templates checked against the event "
                    "store's own encoding); `log verify` accepts them (see the storage benchmark).")
    return result
