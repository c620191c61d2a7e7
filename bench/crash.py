"""Crash safety, long mode: the controller SIGKILLed at random points, ≥ 1,000 times.

The campaign is the test suite's (:mod:`simulator.crash.campaign`; its bounded version is
``tests/system/test_crash_safety.py``): a child process runs the real controller on simulated
hardware with its MQTT link to a private Mosquitto (the repo's configuration, as the
tests start it) and plays a random door day; it is killed at a random moment (about
one kill in seven while it is still starting), restarted on the same database, and
after every kill the database is checked. At the end one more child flushes the
outbox and the supervisor's persistent-session subscriber must hold every seq.

Run alone::

    .venv/bin/python -m bench.crash [--kills 1000] [--seed N] [--max-run 2.0] [--workdir DIR]

(``--quick``: 50 kills). Writes ``bench/results/crash.json`` (``quick/`` for a quick run)
and exits 0 only when every invariant held. ``run(ws, quick=...)`` is the entry point
for ``python -m bench``. There is no bare baseline here: the figures are counts, and
every target is zero failures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from simulator.crash.campaign import KINDS, run_campaign
from simulator.lab_broker import BrokerFiles, MosquittoBroker, make_broker_files

from .common import RESULTS, Result, check, log
from .data import Workspace

KILLS = 1000
QUICK_KILLS = 50
WHAT = {
    "child": "controllers that died on their own (a traceback)",
    "lock": "restarts with the lock not secure before or after start-up",
    "verify": "kills after which `log verify` failed",
    "gaps": "kills after which seq had a gap",
    "release": "lock releases without their stored event",
    "subscriber": "events missing or altered at the supervisor after the last flush",
}


def run(ws: Workspace, *, quick: bool, kills: int | None = None, seed: int | None = None,
        max_run_s: float = 2.0, broker_files: BrokerFiles | None = None) -> Result:
    kills = kills or (QUICK_KILLS if quick else KILLS)
    seed = seed if seed is not None else int(time.time()) % 100_000
    root = ws.root / "crash"
    result = Result("crash", "Crash safety: the controller SIGKILLed at random points and restarted",
                    data_dir=root.parent, quick=quick, params={"kills": kills, "seed": seed, "max_run_s": max_run_s})
    files = broker_files or make_broker_files(root / "files")
    broker = MosquittoBroker(files, root / "broker")
    broker.start()
    try:
        log(f"crash: {kills} kills (seed {seed}); progress every 50")
        outcome = run_campaign(broker, root / "door", kills=kills, seed=seed, max_run_s=max_run_s,
                               log=lambda line: log(f"crash: {line}"))
    finally:
        broker.close_clients()
        broker.stop(kill=True)
    result.add(check("controller kills (SIGKILL at random points, restart on the same database)", unit="kills",
                     product=outcome.kills, baseline=None, target=f"≥ {KILLS:,}", met=outcome.kills >= KILLS))
    for kind in KINDS:
        found = len(outcome.failed(kind))
        result.add(check(WHAT[kind], unit="count", product=found, baseline=None, target="0", met=found == 0))
    result.detail("campaign", outcome.summary())
    for kind, message in outcome.failures[:50]:
        result.note(f"{kind}: {message}")
    result.note("Each child plays people at the door (roster members and strangers, ID card on the serial "
                "emulator or badge, the gate with and without metal, the door, the exit button, lockdown, "
                "time passing); a journal written with fsync after each lock.release() returned tells the "
                "check which releases happened.")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crash", description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_KILLS} kills")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--max-run", type=float, default=2.0, help="longest run before a kill, seconds")
    parser.add_argument("--workdir", type=Path, help="keep the database, journal and logs here")
    parser.add_argument("--results", type=Path, help="where the JSON goes (default: bench/results[/quick])")
    args = parser.parse_args(argv)
    ws = Workspace(args.workdir or Path(tempfile.mkdtemp(prefix="accessctl-crash-")))
    result = run(ws, quick=args.quick, kills=args.kills, seed=args.seed, max_run_s=args.max_run)
    path = result.write(args.results or (RESULTS / "quick" if args.quick else RESULTS))
    log(f"crash: wrote {path}; data in {ws.root}")
    for row in result.checks:
        print(f"{'ok' if row['met'] else 'FAILED':6}  {row['metric']}: {row['product']} (target {row['target']})")
    return 0 if all(row["met"] for row in result.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
