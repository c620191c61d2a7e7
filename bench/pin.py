"""Benchmark 5 (GB/T 37078 §6.3): card + PIN → lock release, against card alone in the same run;
and the PIN hash's cost, here and scaled to a Raspberry Pi 4.

One simulated door (:class:`~bench.decision.DoorBench`: the real controller and drivers on the
emulators) and one synthetic roster. Half the persons are in schedule group ``office-pin`` (the
office hours under another name), which the door's ``[policy] pin_schedule_groups`` asks for a PIN;
the others enter by badge alone. Each cycle lets one person of each kind in and out again, the
order alternating, so the card-alone baseline is taken on the same door, database and machine
load as the product:

- *card alone → release*: handling the ``BadgeRead`` (decision) plus handling the clear walk-through
  up to the lock pin reading released (as the decision benchmark's grant);
- *card + PIN → release*: the same, plus handling the keypad's keys (``KeypadKeys``, the PIN and
  ``#``) up to the verdict. The PIN is checked against the person's PIN and duress hashes (two scrypt
  checks, always both, :func:`firmware_py.core.pin.judge_pin`). The simulated door checks on its loop
  (``pin_checks_on_loop``); the service checks on its worker thread, the same two checks and a
  queue hand-off. The person typing is physical time and not counted.

The PIN hash: one :func:`~firmware_py.core.pin.verify_pin` with the parameters of
:mod:`firmware_py.core.pin` (scrypt N=2^14, r=8, p=1: 16 MiB), timed with ``timeit`` (best and
median of :data:`HASH_SAMPLES`), and scaled to a Raspberry Pi 4 by :data:`PI4_FACTOR` (see there).
"""

from __future__ import annotations

import statistics
import time
import timeit
from dataclasses import replace
from datetime import timedelta

from firmware_py.config.schema import Config
from firmware_py.core import pin as pin_hash
from firmware_py.core.inputs import BadgeRead, KeypadKeys
from firmware_py.storage.db import open_db, transaction

from .common import Result, check, log, summary_ms
from .data import Workspace, badge_uid
from .decision import WARMUP_CYCLES, DoorBench

PIN, DURESS_PIN = "73914628", "73914682"
PIN_GROUP = "office-pin"
PERSONS = 100
HASH_SAMPLES = 30
CHECK_BUDGET_MS = pin_hash.CHECK_BUDGET_S * 1e3  # one PIN check on a Pi 4 (issue 21: ≤ 300 ms)
GB50396_CEILING_MS = 2000.0  # GB 50396-2007 5.1.2: complete credential read to lock release
# A Raspberry Pi 4 (Cortex-A72, 1.5 GHz, LPDDR4) is taken as six times slower than one core here on
# scrypt, as docs/osdp-readers.md assumes. scrypt at N=2^14, r=8 is 524,288 Salsa20/8 cores over a
# 16 MiB table: compute first, memory second. Compute: the clock ratio (this machine's core against
# the Pi's 1.5 GHz, /proc/cpuinfo) times at most 2 for the A72's narrower core; memory: the Pi 4's
# STREAM copy is about 5.5 GB/s (sci-pi.org.uk/bench/stream.html), about this VM's (the run records
# it). That bounds the factor near 3.5; 6 keeps a margin for a Pi at its thermal limit.
PI4_FACTOR = 6.0


class PinDoorBench(DoorBench):
    """The decision benchmark's door, with entries by badge alone or by badge and PIN."""

    def enter(self, i: int, pin: str | None) -> tuple[float, float, float, float]:
        """Person ``i`` enters by badge (and ``pin``); the seconds of decision, PIN check and grant, and the
        CPU time this thread (the door's loop) spent from the badge to the release."""
        cpu0 = time.thread_time()
        self.door.inputs.put(BadgeRead("outside", badge_uid(i)))
        t0 = self._handle_until(BadgeRead)
        decision = time.perf_counter() - t0
        self.door.controller.tick()
        pin_s = 0.0
        if pin is not None:
            if self.door.controller.state != "pin":
                raise RuntimeError(f"person {i} was not asked for a PIN: {self._last()}")
            self.door.inputs.put(KeypadKeys("outside", pin + "#"))
            t0 = self._handle_until(KeypadKeys)
            pin_s = time.perf_counter() - t0
            self.door.controller.tick()
        if self.door.controller.state != "screening":
            raise RuntimeError(f"person {i} was not let through to screening: {self._last()}")
        grant, _ = self._walk_through()
        cpu = time.thread_time() - cpu0
        self._pass()
        return decision, pin_s, grant, cpu

    def leave(self, i: int) -> None:
        self._present(i, "inside", False)
        self._walk_through()
        self._pass()

    def _pass(self) -> None:
        self.door.open_door()
        self.door.close_door()
        self.door.advance(timedelta(seconds=3))

    def _last(self) -> str:
        last = self.door.events()[-1]
        return f"{last['type']} {last.get('reason')}"


def pin_door(cfg: Config) -> Config:
    """``cfg`` with schedule group ``office-pin`` (the office hours) asked for a PIN."""
    schedules = {**cfg.calendar.schedules, PIN_GROUP: cfg.calendar.schedules["office"]}
    return replace(cfg, calendar=replace(cfg.calendar, schedules=schedules),
                   policy=replace(cfg.policy, pin_schedule_groups=(PIN_GROUP,)))


def give_pins(cfg: Config) -> None:
    """Every person gets the PIN and duress PIN hashes; the odd-numbered ones go into ``office-pin``."""
    hashes = (pin_hash.hash_pin(PIN), pin_hash.hash_pin(DURESS_PIN))  # one salt for all: the cost is the same
    db = open_db(cfg.storage.database)
    try:
        with transaction(db):
            db.execute("UPDATE persons SET pin_hash = ?, duress_pin_hash = ?", hashes)
            db.execute("UPDATE persons SET schedule_group = ? WHERE CAST(substr(person_id, 2) AS INTEGER) % 2 = 1",
                       (PIN_GROUP,))
    finally:
        db.conn.close()


def hash_cost(samples: int) -> dict:
    """One PIN check (``verify_pin``, the parameters of core/pin.py) timed ``samples`` times, in ms: in CPU
    time of the thread (what the check costs the core; a shared machine's wait for a core left out) and
    in wall time."""
    stored = pin_hash.hash_pin(PIN)
    figures = {"params": {"n": pin_hash.SCRYPT_N, "r": pin_hash.SCRYPT_R, "p": pin_hash.SCRYPT_P,
                          "memory_mib": 128 * pin_hash.SCRYPT_N * pin_hash.SCRYPT_R / 2**20},
               "samples": samples, "pi4_factor": PI4_FACTOR}
    for name, timer in (("cpu", time.thread_time), ("wall", time.perf_counter)):
        times = sorted(timeit.repeat(lambda: pin_hash.verify_pin(PIN, stored), number=1, repeat=samples,
                                     timer=timer))
        figures[name] = {"best_ms": round(times[0] * 1e3, 1), "median_ms": round(statistics.median(times) * 1e3, 1),
                         "worst_ms": round(times[-1] * 1e3, 1)}
    figures["pi4_ms"] = round(figures["cpu"]["best_ms"] * PI4_FACTOR, 1)
    figures["pi4_median_ms"] = round(figures["cpu"]["median_ms"] * PI4_FACTOR, 1)
    return figures


def cpu_mhz() -> float | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(float(line.split(":")[1]) for line in f if line.startswith("cpu MHz"))
    except (OSError, StopIteration, ValueError):
        return None


def copy_bandwidth_mb_s(size_mib: int = 256) -> float:
    """Single-thread memory copy, STREAM-style (bytes read plus bytes written per second), best of 5."""
    src, dst = bytearray(size_mib * 2**20), bytearray(size_mib * 2**20)
    best = min(timeit.repeat(lambda: dst.__setitem__(slice(None), src), number=1, repeat=5))
    return round(2 * len(src) / best / 1e6)


def run(ws: Workspace, *, quick: bool, persons: int = PERSONS, cycles: int | None = None,
        hash_samples: int | None = None) -> Result:
    cycles = cycles or (20 if quick else 100)
    hash_samples = hash_samples or (10 if quick else HASH_SAMPLES)
    result = Result("pin", "Card + PIN → lock release, and the PIN hash's cost (GB/T 37078 §6.3)",
                    data_dir=ws.root, quick=quick,
                    params={"persons": persons, "cycles": cycles, "entries_per_kind": cycles,
                            "warmup_cycles": WARMUP_CYCLES, "hash_samples": hash_samples,
                            "pi4_factor": PI4_FACTOR})
    cfg = ws.roster_db(persons, "pin")
    give_pins(cfg)
    cfg = pin_door(cfg)
    log(f"pin: {cycles} cycles, each one badge entry and one badge + PIN entry, interleaved")
    card, with_pin, pin_part, cpu_card, cpu_pin = [], [], [], [], []
    with PinDoorBench(cfg, persons=persons) as bench:
        for c in range(WARMUP_CYCLES + cycles):
            plain, needs_pin = 2 * (c % (persons // 2)), 2 * (c % (persons // 2)) + 1
            order = ((plain, None), (needs_pin, PIN)) if c % 2 else ((needs_pin, PIN), (plain, None))
            for i, pin in order:
                decision, pin_s, grant, cpu = bench.enter(i, pin)
                bench.leave(i)
                if c >= WARMUP_CYCLES:
                    (with_pin if pin else card).append(decision + pin_s + grant)
                    (cpu_pin if pin else cpu_card).append(cpu)
                    if pin:
                        pin_part.append(pin_s)
    release_card, release_pin = summary_ms(card), summary_ms(with_pin)
    log("pin: timing the PIN hash")
    cost = hash_cost(hash_samples)
    cost["cpu_mhz"], cost["copy_mb_s"] = cpu_mhz(), copy_bandwidth_mb_s(64 if quick else 256)
    result.detail("release_card", release_card)
    result.detail("release_card_pin", release_pin)
    result.detail("pin_check_on_loop", summary_ms(pin_part))
    result.detail("cpu_card", summary_ms(cpu_card))
    result.detail("cpu_card_pin", summary_ms(cpu_pin))
    result.detail("hash", cost)
    p99, base99 = release_pin["p99_ms"], release_card["p99_ms"]
    allowed = base99 + 2 * CHECK_BUDGET_MS
    result.add(check("card + PIN → release p99", unit="ms", product=p99, baseline=base99,
                     target=f"≤ card alone + 2 × {CHECK_BUDGET_MS:g} ms (two PIN checks) and "
                            f"≤ {GB50396_CEILING_MS:,.0f} ms", met=p99 <= min(allowed, GB50396_CEILING_MS)))
    result.add(check("card + PIN → release p99, CPU time of the door's loop", unit="ms",
                     product=result.doc["details"]["cpu_card_pin"]["p99_ms"],
                     baseline=result.doc["details"]["cpu_card"]["p99_ms"],
                     target="— (reported: the wall figure less the wait for a core)", met=True))
    result.add(check("one PIN check (scrypt N=2^14, r=8, p=1), CPU time, best here", unit="ms",
                     product=cost["cpu"]["best_ms"], baseline=None,
                     target="— (reported; median, worst and wall time in the details)", met=True))
    result.add(check(f"one PIN check on a Raspberry Pi 4 (CPU best here × {PI4_FACTOR:g})", unit="ms",
                     product=cost["pi4_ms"], baseline=None, target=f"≤ {CHECK_BUDGET_MS:g} ms",
                     met=cost["pi4_ms"] <= CHECK_BUDGET_MS))
    result.note("Product and baseline are entries at the same door in the same run, interleaved one for one: "
                "card alone = decision + walk-through to the lock pin released; card + PIN adds the handling of "
                "the keypad's keys up to the verdict (two scrypt checks, the PIN's and the duress PIN's). The "
                "person typing and walking is physical time, not counted. Exits ask for no PIN.")
    result.note(f"The PIN hash is deliberately slow. The Pi 4 estimate multiplies this machine's best by "
                f"{PI4_FACTOR:g} (bench/pin.py PI4_FACTOR: clock {cost['cpu_mhz']} MHz here against the Pi's "
                f"1,500 MHz, at most 2× for the A72's narrower core; this machine's single-thread copy "
                f"{cost['copy_mb_s']:,} MB/s STREAM-style against about 5,500 MB/s published for a Pi 4; "
                "the rest is margin). The hash is timed in the thread's CPU time: on a shared machine the wall time "
                "also holds the wait for a core, which a door's Pi, doing nothing else, does not have.")
    return result
