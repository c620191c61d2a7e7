"""Benchmark: 500 doors through the three-node RabbitMQ cluster into the PostgreSQL archive.

    .venv/bin/python -m bench.fleet [--quick] [--workdir DIR]

Starts its own lab tier (``deploy/rabbitmq/lab-cluster.sh``, a throwaway PostgreSQL 15, as the
test suite does), then runs ``accessctl-sim fleet`` (500 doors, real controller, store, outbox
and MQTT link each, in one process, spread over the three nodes) for PLAY_S seconds with
``--trace`` (every event's store time at its door). The station's ingest
(:class:`firmware_py.station.ingest.ingest.Ingest`, what ``accessctl station serve --archive
postgresql://`` runs) runs in this process with a hook that notes when each event was committed.

Phases, one run:

1. sustained load (SUSTAIN_S): doors store events at RATE/s; the ingest keeps up. Measured:
   event stored at its door → committed to the archive, p50/p99.
2. the station away (DOWN_S): the ingest is stopped (its persistent session stays at the broker)
   while the 500 doors keep working; their events queue at the broker.
3. catch-up: the ingest starts again while the doors keep working. Measured: the time until the
   archive holds as many events as the doors had stored when it came back, and the rate it
   drained at -- the station's full speed, which is the sustained-ingest figure compared with
   the baseline.

Baseline, same run, same PostgreSQL: a bare batched INSERT (1,000 rows per transaction, no
de-duplication, no partitions, no chain) of the very rows the run archived, into a plain table
with a primary key; a bare COPY of them is noted as well.

"A full day" is defined by the fleet's mix: a busy door plays one action every 30 s of its
7-hour office day (08:30-12:00, 14:00-17:30) and stores 1.9 events per action on average, about
1,600 events; rounded up, 2,000 events per door, 1,000,000 for 500 doors.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from firmware_py.link.broker import BrokerSettings
from firmware_py.station.ingest.ingest import Ingest
from simulator.lab_tier import PostgresCluster, RabbitCluster, free_port

from .common import REPO, Result, check, log, percentile

BIN = Path(sys.executable).parent
DAY_EVENTS_PER_DOOR = 2000
TARGET_SHARE = 0.5
TARGET_DAY_S = 300.0
STATION_PW = "station-password-bench"
FLEET_USER, FLEET_PW = "fleet-lab", "fleet-lab-password-1"


def _accounts(cluster: RabbitCluster, station: str) -> None:
    cluster.add_account("station", station, password=STATION_PW)
    cluster.add_fleet_account(FLEET_USER, FLEET_PW)


class Commits:
    """The ingest's hook: when each (door, seq) was first committed."""

    def __init__(self):
        self.at: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()

    def __call__(self, events, t: float) -> None:
        with self.lock:
            for e in events:
                self.at.setdefault((e.door, e.value["seq"]), t)

    def count_until(self, t: float) -> int:
        with self.lock:
            return sum(1 for v in self.at.values() if v <= t)


def _archived(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT door, count(*) FROM events GROUP BY door").fetchall())


def _baseline(url: str) -> tuple[float, float, int]:
    """Rows/s of a bare batched INSERT and of a bare COPY of every archived row (same database)."""
    cols = "site, door, seq, ts, local_date, category, type, hash, prev_hash, hash_ok, topic, payload, received_at"
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT {cols} FROM events").fetchall()
        rates = []
        for name in ("bare_insert", "bare_copy"):
            conn.execute(f"CREATE TABLE {name} (site text, door text, seq bigint, ts timestamptz, local_date date,"
                         " category text, type text, hash text, prev_hash text, hash_ok boolean, topic text,"
                         " payload bytea, received_at timestamptz, PRIMARY KEY (site, door, seq))")
            conn.commit()
            t0 = time.perf_counter()
            for i in range(0, len(rows), 1000):
                with conn.transaction():
                    if name == "bare_insert":
                        conn.cursor().executemany(f"INSERT INTO {name} ({cols}) VALUES ({', '.join(['%s'] * 13)})",
                                                  rows[i:i + 1000])
                    else:
                        with conn.cursor().copy(f"COPY {name} ({cols}) FROM STDIN") as copy:
                            for row in rows[i:i + 1000]:
                                copy.write_row(row)
            rates.append(len(rows) / (time.perf_counter() - t0))
    return rates[0], rates[1], len(rows)


def run(workdir: Path, *, quick: bool = False) -> Result:
    doors, rate = (30, 60.0) if quick else (500, 500.0)
    sustain_s, down_s, after_s = (15, 15, 30) if quick else (60, 60, 90)
    play_s = sustain_s + down_s + after_s
    params = {"doors": doors, "rate": rate, "sustain_s": sustain_s, "down_s": down_s, "after_s": after_s,
              "day_events_per_door": DAY_EVENTS_PER_DOOR}
    result = Result("fleet", f"{doors} doors through the RabbitMQ cluster into PostgreSQL", data_dir=workdir,
                    quick=quick, params=params)
    cluster = RabbitCluster(workdir / "rabbitmq-lab")
    pg_dir = Path(tempfile.mkdtemp(prefix="accessctl-bench-pg-"))
    shutil.chown(pg_dir, "postgres", "postgres")
    pg = PostgresCluster(pg_dir, free_port())
    fleet = None
    try:
        log("starting the RabbitMQ lab cluster and PostgreSQL")
        cluster.start()
        pg.init()
        pg.start()
        url = pg.create_database("fleet")
        station = "station-bench"
        _accounts(cluster, station)
        (workdir / "fleet.password").write_text(FLEET_PW + "\n")
        settings = BrokerSettings(url=cluster.urls[0], username=station, password=STATION_PW, protocol=311,
                                  client_id=station)
        commits = Commits()
        ingests: list[Ingest] = []

        def ingest() -> Ingest:
            i = Ingest(settings, url, beacon_interval_s=0)
            ingests.append(i)
            i.committed.append(commits)
            i.start()
            if not i.wait_connected(60):
                raise RuntimeError("the ingest did not connect")
            return i

        station_ingest = ingest()
        trace = workdir / "trace.txt"
        err = open(workdir / "fleet.err", "w")
        fleet = subprocess.Popen(
            [str(BIN / "accessctl-sim"), "fleet", "--doors", str(doors), "--broker", ",".join(cluster.urls),
             "--protocol", "311", "--db-dir", str(workdir / "doors"), "--rate", str(rate), "--duration",
             str(play_s), "--username", FLEET_USER, "--password-file", str(workdir / "fleet.password"),
             "--trace", str(trace), "--drain-timeout", "900"],
            stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
        log(f"fleet of {doors} doors starting (log: {workdir / 'fleet.err'})")
        while "playing" not in (workdir / "fleet.err").read_text():
            if fleet.poll() is not None:
                raise RuntimeError(f"the fleet ended early:\n{(workdir / 'fleet.err').read_text()[-2000:]}")
            time.sleep(0.5)
        t_play = time.time()
        log("playing: sustained load")
        time.sleep(sustain_s)
        t_down = time.time()
        station_ingest.close()
        log("station stopped; the doors keep working")
        time.sleep(down_s)
        t_up = time.time()
        station_ingest = ingest()
        log("station back: catching up")
        out, _ = fleet.communicate(timeout=play_s + 1200)
        results = {r["door"]: r["last_seq"] for r in map(json.loads, out.splitlines()) if r}
        deadline = time.time() + 600
        while time.time() < deadline:
            archived = _archived(url)
            if all(archived.get(d, 0) >= n for d, n in results.items()):
                break
            time.sleep(2)
        time.sleep(CHAIN_SETTLE_S)
        chains = {d: station_ingest.verified(*("fleet", d)) for d in results}
        station_ingest.close()
        archived = _archived(url)

        # ---------------------------------------------------------------- figures
        stored = []
        for line in trace.read_text().splitlines():
            door, seq, t = line.split()
            stored.append((door, int(seq), float(t)))
        stored_at = sorted(t for _, _, t in stored)
        lat = [commits.at[(d, s)] - t for d, s, t in stored
               if t_play + 5 <= t <= t_down - 5 and (d, s) in commits.at]
        sustained = sum(1 for _, _, t in stored if t_play <= t <= t_down) / (t_down - t_play)
        backlog_target = sum(1 for t in stored_at if t <= t_up)  # stored at the doors when the station came back
        commit_times = sorted(commits.at.values())
        at_up = sum(1 for t in commit_times if t <= t_up)
        t_empty = commit_times[backlog_target - 1] if len(commit_times) >= backlog_target else None
        catch_up_s = (t_empty - t_up) if t_empty else None
        drained = backlog_target - at_up
        drain_rate = drained / catch_up_s if catch_up_s else 0.0
        day = doors * DAY_EVENTS_PER_DOOR
        day_s = day / drain_rate if drain_rate else float("inf")
        insert_rate, copy_rate, rows = _baseline(url)

        lost = {d: (n, archived.get(d, 0)) for d, n in results.items() if archived.get(d, 0) != n}
        broken = {d: c for d, c in chains.items() if c[1] is not None or c[0] != results[d]}
        fleet_log = (workdir / "fleet.err").read_text().splitlines()
        played = next((line for line in fleet_log if "played;" in line), "")
        result.add(check("ingest at full speed (catch-up drain)", unit="events/s", product=drain_rate,
                         baseline=insert_rate, target="≥ 50 % of a bare batched INSERT",
                         met=drain_rate >= TARGET_SHARE * insert_rate))
        result.add(check(f"catch-up of a full day's backlog ({doors} doors × {DAY_EVENTS_PER_DOOR:,} events, "
                         "extrapolated from the drain rate)", unit="s", product=day_s, baseline=None,
                         target=f"≤ {TARGET_DAY_S:.0f} s", met=day_s <= TARGET_DAY_S))
        p99 = percentile(lat, 99) * 1e3 if lat else float("nan")
        result.add(check("event stored at a door → archived, p99 under sustained load", unit="ms", product=p99,
                         baseline=None, target="reported (no target set)", met=bool(lat)))
        result.detail("latency_ms", {"n": len(lat), "p50": percentile(lat, 50) * 1e3 if lat else None, "p99": p99,
                                     "max": max(lat) * 1e3 if lat else None})
        result.detail("sustained_events_per_s", round(sustained, 1))
        result.detail("backlog", {"events_stored_at_doors_when_back": backlog_target, "archived_when_back": at_up,
                                  "drained": drained, "catch_up_s": catch_up_s, "drain_events_per_s": drain_rate})
        result.detail("baseline", {"rows": rows, "bare_insert_rows_per_s": insert_rate,
                                   "bare_copy_rows_per_s": copy_rate})
        result.detail("completeness", {"doors": len(results), "events": sum(results.values()),
                                       "archived": sum(archived.values()), "doors_differing": lost,
                                       "chains_not_verified": broken,
                                       "replay_requests": sum(i.replays_requested for i in ingests)})
        result.detail("fleet_process", played)
        result.note(f"{len(results)} doors stored {sum(results.values()):,} events; the archive holds "
                    f"{sum(archived.values()):,} (one row per (site, door, seq)); doors whose archive differs: "
                    f"{len(lost)}; chains not verified to their end: {len(broken)}.")
        result.note(f"Sustained load {sustained:.0f} events/s offered by the doors; the fleet process: {played}.")
        result.note(f"Backlog when the station came back: {drained:,} events ({down_s} s of {doors} doors), "
                    f"archived in {catch_up_s or float('nan'):.1f} s while the doors kept working.")
        result.note(f"Bare COPY of the same rows: {copy_rate:,.0f} rows/s (bare batched INSERT {insert_rate:,.0f}).")
        return result
    finally:
        if fleet is not None and fleet.poll() is None:
            fleet.kill()
        try:
            cluster.stop()
        finally:
            try:
                pg.stop("immediate")
            finally:
                shutil.rmtree(pg_dir, ignore_errors=True)


CHAIN_SETTLE_S = 3.0  # the ingest verifies chains right after each commit; a moment for the last batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 doors, short phases (results not for the docs)")
    parser.add_argument("--workdir", type=Path, help="where the doors' databases and the lab go")
    parser.add_argument("--results", type=Path, help="where fleet.json goes (default: bench/results[/quick])")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="accessctl-bench-fleet-"))
    result = run(workdir, quick=args.quick)
    result.finish(args.results, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
