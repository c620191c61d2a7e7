"""Benchmark 3: `accessctl log verify` over a million events, and a 100,000-row roster import.

*Verify*: the hash chain of a database holding a synthetic roster and
1,000,000 stored events (made by :func:`bench.data.append_synthetic_events`)
is checked by the library (:func:`firmware_py.storage.eventstore.verify`) and by the
command line (``accessctl log verify --config FILE`` in a child process, which
includes the interpreter's start). Baseline, same run, same file: a bare walk
of the chain — read every row in seq order, SHA-256 of the stored body equals
the stored hash and the next row's ``prev_hash`` — without parsing the JSON.

*Import*: the roster of 100,000 synthetic persons is loaded from its CSV file
into an empty database by :func:`firmware_py.storage.roster.import_csv` (every row
checked, ID numbers validated, hashed and masked; streamed through a private
stage and built beside the live tables in short steps, swapped in at once).
Baseline, same run: bare ``executemany`` of the very rows that import stored
(persons and badges, values ready) into an empty database of the same schema and
indexes (WAL, ``synchronous=FULL``), in one transaction. Import and baseline
alternate for :data:`IMPORT_ROUNDS` rounds; the medians are compared (wall
clock, and CPU time of this process as the steadier figure on a shared machine).
"""

from __future__ import annotations

import cProfile
import hashlib
import io
import pstats
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from firmware_py.storage.db import open_db, transaction
from firmware_py.storage.eventstore import verify

from .common import REPO, Result, check, log, profile_text
from .data import Workspace, import_roster

TARGET_VERIFY_S = 10.0
TARGET_IMPORT_RATIO = 3.0  # issue 12: roster import <= 3x a bare executemany of the same rows, same run
IMPORT_ROUNDS = 3  # import and baseline alternate; medians compared
PROFILE_EVENTS = 200_000  # a profile of verify stops after this many events
PROFILE_ROWS = 20_000  # a profile of the import loads this many rows


class _Enough(Exception):
    pass


def bare_chain_walk(database: Path) -> tuple[int, float]:
    """Rows walked and seconds: SHA-256 of each stored body against its hash, and the links."""
    db = open_db(database)
    try:
        t0 = time.perf_counter()
        prev, count, sha256 = "0" * 64, 0, hashlib.sha256
        for body, prev_hash, h in db.conn.execute("SELECT body, prev_hash, hash FROM events ORDER BY seq"):
            if prev_hash != prev or sha256(body.encode("utf-8")).hexdigest() != h:
                raise RuntimeError(f"the chain is broken after {count} rows")
            prev = h
            count += 1
        return count, time.perf_counter() - t0
    finally:
        db.conn.close()


def library_verify(database: Path) -> tuple[object, float]:
    db = open_db(database)
    try:
        t0 = time.perf_counter()
        outcome = verify(db)
        return outcome, time.perf_counter() - t0
    finally:
        db.conn.close()


def cli_verify(config: Path) -> tuple[str, int, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "firmware_py.cli.main", "log", "verify", "--config", str(config)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    return proc.stdout.strip(), proc.returncode, time.perf_counter() - t0


def profile_verify(database: Path) -> str:
    def stop(done: int, total: int) -> None:
        if done >= PROFILE_EVENTS:
            raise _Enough

    db = open_db(database)
    prof = cProfile.Profile()
    try:
        prof.enable()
        try:
            verify(db, progress=stop)
        except _Enough:
            pass
        finally:
            prof.disable()
    finally:
        db.conn.close()
    return f"(the first {PROFILE_EVENTS:,} events)\n" + profile_text(prof, top=15)


def bare_insert(source: Path, directory: Path) -> tuple[int, float, float]:
    """Insert the persons and badges stored in ``source`` into a new database; rows, seconds and CPU seconds."""
    src = open_db(source)
    persons = src.conn.execute("SELECT * FROM persons").fetchall()
    columns = [d[0] for d in src.conn.execute("SELECT * FROM persons LIMIT 1").description]
    badges = src.conn.execute("SELECT uid, person_id FROM badges").fetchall()
    src.conn.close()
    target = directory / "bare-insert.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    db = open_db(target)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        with transaction(db):
            db.conn.executemany(f"INSERT INTO persons ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                                persons)
            db.conn.executemany("INSERT INTO badges (uid, person_id) VALUES (?, ?)", badges)
        return len(persons), time.perf_counter() - t0, time.process_time() - c0
    finally:
        db.conn.close()


def timed_import(directory: Path, rows: int) -> tuple[float, float]:
    """Seconds and CPU seconds of importing a roster of ``rows`` into a new database in ``directory``."""
    timed: list[float] = []

    @contextmanager
    def stopwatch():
        t0, c0 = time.perf_counter(), time.process_time()
        yield
        timed.extend((time.perf_counter() - t0, time.process_time() - c0))

    import_roster(directory, rows, around=stopwatch)
    return timed[0], timed[1]


def profile_import(directory: Path, rows: int) -> str:
    prof = cProfile.Profile()
    import_roster(directory, rows, around=lambda: prof)  # a Profile is a context manager: enable ... disable
    out = io.StringIO()
    pstats.Stats(prof, stream=out).strip_dirs().sort_stats("tottime").print_stats(20)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    start = next((i for i, line in enumerate(lines) if "function calls" in line), 0)
    return f"(an import of {rows:,} rows; by own time)\n" + "\n".join(line for line in lines[start:] if line.strip())


def run(ws: Workspace, *, quick: bool, persons: int | None = None, events: int | None = None) -> Result:
    persons = persons or (10_000 if quick else 100_000)
    events = events or (100_000 if quick else 1_000_000)
    result = Result("storage", "Log verification and roster import", data_dir=ws.root, quick=quick,
                    params={"events": events, "roster_rows": persons})
    directory = ws.root / "storage"
    directory.mkdir(parents=True, exist_ok=True)

    # ---- import
    rounds = []
    for n in range(IMPORT_ROUNDS):
        log(f"storage: roster import of {persons:,} rows, then the bare insert ({n + 1}/{IMPORT_ROUNDS})")
        import_s, import_cpu_s = timed_import(directory / f"import-{n}", persons)
        rows, bare_s, bare_cpu_s = bare_insert(directory / f"import-{n}" / "events.db", directory)
        rounds.append({"import_s": round(import_s, 3), "import_cpu_s": round(import_cpu_s, 3),
                       "bare_insert_s": round(bare_s, 3), "bare_insert_cpu_s": round(bare_cpu_s, 3)})
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    ratio = median["import_s"] / max(median["bare_insert_s"], 1e-9)
    row = result.add(check(f"roster import, {persons:,} rows (median of {IMPORT_ROUNDS})", unit="s",
                           product=median["import_s"], baseline=median["bare_insert_s"],
                           target=f"≤ {TARGET_IMPORT_RATIO:g}× baseline", met=ratio <= TARGET_IMPORT_RATIO))
    result.detail("import", {"rows": rows, "rounds": rounds, **{k: round(v, 3) for k, v in median.items()},
                             "ratio": round(ratio, 2),
                             "cpu_ratio": round(median["import_cpu_s"] / max(median["bare_insert_cpu_s"], 1e-9), 2),
                             "rows_per_s": round(rows / median["import_s"])})
    log("storage: profiling an import")
    result.profile(row["metric"], profile_import(directory / "profile-import", min(PROFILE_ROWS, persons)))

    # ---- verify
    log(f"storage: {events:,} stored events (built once per run)")
    cfg, gen_s = ws.events_db(persons, events)
    database = cfg.storage.database
    log("storage: baseline bare chain walk")
    walked, bare_walk_s = bare_chain_walk(database)
    log("storage: library verify")
    outcome, lib_s = library_verify(database)
    log("storage: accessctl log verify")
    cli_out, cli_code, cli_s = cli_verify(cfg.path)
    lib_row = result.add(check(f"log verify (library), {outcome.count:,} events", unit="s", product=lib_s,
                               baseline=bare_walk_s, target=f"≤ {TARGET_VERIFY_S:g} s",
                               met=lib_s <= TARGET_VERIFY_S and outcome.ok))
    cli_row = result.add(check(f"`accessctl log verify`, {outcome.count:,} events", unit="s", product=cli_s,
                               baseline=bare_walk_s, target=f"≤ {TARGET_VERIFY_S:g} s",
                               met=cli_s <= TARGET_VERIFY_S and cli_code == 0))
    result.detail("verify", {"events": outcome.count, "ok": outcome.ok, "library_s": round(lib_s, 3),
                             "cli_s": round(cli_s, 3), "cli_output": cli_out, "cli_exit": cli_code,
                             "bare_walk_rows": walked, "bare_walk_s": round(bare_walk_s, 3),
                             "events_per_s": round(outcome.count / lib_s),
                             "database_mb": round(database.stat().st_size / 2**20, 1),
                             "generation_s": round(gen_s, 1)})
    if not (lib_row["met"] and cli_row["met"]):
        log("storage: verify target missed; profiling")
        result.profile(lib_row["metric"], profile_verify(database))
    result.note(f"The roster import and its baseline alternate {IMPORT_ROUNDS} times, each import into a new "
                "database; the medians are compared. CPU time is this process's (the import runs in it); wall "
                "time includes the pauses the import leaves the door between its write steps. The profile is of a "
                "smaller import, always taken.")
    result.note("The stored events were bulk-inserted as valid hash-chained rows (see the decision benchmark's "
                "note); the CLI figure includes starting Python and opening the database. The file was just "
                "written and read by the baseline, so it is in the page cache: these are CPU figures, not "
                "disk-read figures.")
    return result
