"""Import one roster file in a fresh process and report what it cost, as JSON on standard output.

    python -m tests.system.roster_import_child CONFIG FILE.csv

Prints ``{"rows": N, "import_s": S, "peak_rss_mb": M, "longest_lock_hold_s": H}``:
the process's peak resident memory (ru_maxrss, the interpreter included) and the
longest time a concurrent connection in this process waited for the write lock
while the import ran (a probe thread taking ``BEGIN IMMEDIATE`` over and over).
Used by tests/system/test_roster_import_large.py and for the figures in docs/performance.md.
"""

from __future__ import annotations

import json
import resource
import sqlite3
import sys
import threading
import time


def main(config: str, csv_path: str) -> int:
    from firmware_py.config.schema import load_config
    from firmware_py.core.clock import SystemClock
    from firmware_py.storage import roster
    from firmware_py.storage.db import open_db
    from firmware_py.storage.eventstore import EventStore
    from firmware_py.storage.secret import load_or_create_secret

    cfg = load_config(config)
    db = open_db(cfg.storage.database)
    store = EventStore(db, site=cfg.site.site, door=cfg.site.door, clock=SystemClock(cfg.site.timezone))
    secret = load_or_create_secret(cfg.storage.secret, roster_hashes=roster.id_hash_count(db))
    done = threading.Event()
    waits: list[float] = []

    def probe() -> None:
        conn = sqlite3.connect(cfg.storage.database, isolation_level=None, timeout=120)
        while not done.is_set():
            t0 = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            waits.append(time.perf_counter() - t0)
            conn.execute("COMMIT")
            time.sleep(0.002)
        conn.close()

    prober = threading.Thread(target=probe)
    prober.start()
    t0 = time.perf_counter()
    try:
        result = roster.import_csv(db, store, csv_path, secret=secret, schedule_groups=cfg.calendar.schedules,
                                   tz=cfg.site.timezone)
    finally:
        import_s = time.perf_counter() - t0
        done.set()
        prober.join()
    print(json.dumps({"rows": result.count, "import_s": round(import_s, 3),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "longest_lock_hold_s": round(max(waits, default=0.0), 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
