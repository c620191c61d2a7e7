"""Benchmark: the PostgreSQL station catching up a backlog by itself, against two bare baselines.

    .venv/bin/python -m bench.catchup [--doors 200] [--play-s 60] [--rate 200] [--quick]

What is measured is the station alone, with nothing else running: the doors' cost is not mixed
into it (the fleet benchmark, ``bench.fleet``, plays the doors on the same cores while the station
catches up). One run, one lab tier (``simulator.lab_tier``: the three-node RabbitMQ lab cluster
and a throwaway PostgreSQL 15):

1. two persistent sessions are made on the cluster, with the same subscriptions: the station's
   (its ingest, :class:`firmware_py.station.ingest.ingest.Ingest`, connects once and stops) and a
   bare consumer's; from then on both queues receive every message the doors publish;
2. ``accessctl-sim fleet`` plays DOORS doors for PLAY_S seconds at RATE events/s, empties every
   outbox into the broker and exits: the doors are stopped before anything is measured;
3. the station drains its queue into the archive by itself: the time from its start to the
   commit of the last event of the backlog;
4. baseline 1, same cluster, same backlog: a bare paho-mqtt 2.x QoS 1 consumer (no parsing, no
   archive; paho acknowledges each message as it is handed over) drains its own queue;
5. baseline 2, same PostgreSQL: a bare batched INSERT (1,000 rows per transaction) of the very
   rows the station archived into a plain table with a primary key.

The figures: the station's drain rate, its share of the bare consumer's rate, the bare INSERT
rate, and what a 500-door day (1,000,000 events) would take at the station's rate.
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

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from firmware_py.link.broker import BrokerSettings
from firmware_py.station.ingest.ingest import Ingest
from simulator.lab_tier import PostgresCluster, RabbitCluster, free_port

from .common import REPO, Result, check, log

BIN = Path(sys.executable).parent
DAY_EVENTS = 1_000_000  # a 500-door day (bench.fleet: 2,000 events a door)
TARGET_SHARE = 0.70  # of the bare consumer's rate (issue 17)
TARGET_DAY_S = 300.0
STATION, STATION_PW = "station-catchup", "station-password-catchup"
BARE, BARE_PW = "bare-consumer", "bare-consumer-password"
FLEET_USER, FLEET_PW = "fleet-lab", "fleet-lab-password-1"
FILTERS = [f"accessctl/+/+/{kind}" for kind in ("events/#", "status", "occupancy", "cmd/result")]  # the station's


class BareConsumer:
    """A paho QoS 1 subscriber that only counts: the fastest a client can drain the same queue."""

    def __init__(self, url: str):
        self.port = int(url.rsplit(":", 1)[1])
        self.count = self.events = 0
        self.last_at = 0.0
        self.done = threading.Event()
        self.expected = None
        self.subscribed = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=BARE, protocol=mqtt.MQTTv311,
                             clean_session=False)
        self.c.username_pw_set(BARE, BARE_PW)
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self.subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        self.count += 1
        if "/events/" in message.topic:
            self.events += 1
            self.last_at = time.perf_counter()
            if self.expected is not None and self.events >= self.expected:
                self.done.set()

    def make_session(self) -> None:
        self.c.connect("127.0.0.1", self.port, 30)
        self.c.loop_start()
        self.c.subscribe([(f, 1) for f in FILTERS])
        if not self.subscribed.wait(30):
            raise RuntimeError("the bare consumer was not subscribed")
        self.c.disconnect()
        self.c.loop_stop()

    def drain(self, expected: int, timeout: float) -> tuple[int, int, float]:
        """Connect and take messages until ``expected`` events are in: (events, messages, seconds from
        connecting to the last event), as the station is timed."""
        self.count, self.events, self.expected = 0, 0, expected
        t0 = time.perf_counter()
        self.c.connect("127.0.0.1", self.port, 30)
        self.c.loop_start()
        self.done.wait(timeout)
        self.c.disconnect()
        self.c.loop_stop()
        return self.events, self.count, (self.last_at - t0) if self.events else float("nan")


def _queue_depths(cluster: RabbitCluster) -> dict[str, int]:
    rows = json.loads(cluster.ctl(1, "list_queues", "name", "messages", "--formatter", "json"))
    return {r["name"]: int(r["messages"]) for r in rows}


def _bare_insert(url: str) -> tuple[float, int]:
    """Rows/s of a bare batched INSERT of every archived row (same database), 1,000 per transaction."""
    cols = "site, door, seq, ts, local_date, category, type, hash, prev_hash, hash_ok, topic, payload, received_at"
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT {cols} FROM events").fetchall()
        conn.execute("CREATE TABLE bare_insert (site text, door text, seq bigint, ts timestamptz, local_date date,"
                     " category text, type text, hash text, prev_hash text, hash_ok boolean, topic text,"
                     " payload bytea, received_at timestamptz, PRIMARY KEY (site, door, seq))")
        conn.commit()
        t0 = time.perf_counter()
        for i in range(0, len(rows), 1000):
            with conn.transaction():
                conn.cursor().executemany(f"INSERT INTO bare_insert ({cols}) VALUES ({', '.join(['%s'] * 13)})",
                                          rows[i:i + 1000])
        return len(rows) / (time.perf_counter() - t0), len(rows)


def run(workdir: Path, *, doors: int, play_s: float, rate: float, quick: bool) -> Result:
    params = {"doors": doors, "play_s": play_s, "rate": rate}
    result = Result("catchup", f"the PostgreSQL station draining {doors} stopped doors' backlog alone",
                    data_dir=workdir, quick=quick, params=params)
    cluster = RabbitCluster(workdir / "rabbitmq-lab")
    pg_dir = Path(tempfile.mkdtemp(prefix="accessctl-bench-pg-"))
    shutil.chown(pg_dir, "postgres", "postgres")
    pg = PostgresCluster(pg_dir, free_port())
    try:
        log("starting the RabbitMQ lab cluster and PostgreSQL")
        cluster.start()
        pg.init()
        pg.start()
        url = pg.create_database("catchup")
        cluster.add_account("station", STATION, password=STATION_PW)
        cluster.add_account("station", BARE, password=BARE_PW)
        cluster.add_fleet_account(FLEET_USER, FLEET_PW)
        settings = BrokerSettings(url=cluster.urls[0], username=STATION, password=STATION_PW, protocol=311,
                                  client_id=STATION)

        # 1. both sessions exist before the first door publishes
        first = Ingest(settings, url, beacon_interval_s=0)
        first.start(wait=False)
        if not first.wait_connected(60):
            raise RuntimeError("the station's ingest did not connect")
        first.close()
        bare = BareConsumer(cluster.urls[0])
        bare.make_session()

        # 2. the doors play, empty their outboxes into the broker, and stop
        (workdir / "fleet.password").write_text(FLEET_PW + "\n")
        log(f"{doors} doors play {play_s:.0f} s at {rate:.0f} events/s with the station away")
        with open(workdir / "fleet.err", "w") as err:
            done = subprocess.run(
                [str(BIN / "accessctl-sim"), "fleet", "--doors", str(doors), "--broker", ",".join(cluster.urls),
                 "--protocol", "311", "--db-dir", str(workdir / "doors"), "--rate", str(rate), "--duration",
                 str(play_s), "--username", FLEET_USER, "--password-file", str(workdir / "fleet.password"),
                 "--drain-timeout", "600"], stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO,
                timeout=play_s + 900)
        if done.returncode != 0:
            raise RuntimeError(f"the fleet exited {done.returncode}:\n{(workdir / 'fleet.err').read_text()[-2000:]}")
        last_seq = {r["door"]: r["last_seq"] for r in map(json.loads, done.stdout.splitlines()) if r}
        events = sum(last_seq.values())
        depths, previous = _queue_depths(cluster), None
        while depths != previous:  # the last messages reach both queues' members
            time.sleep(2)
            previous, depths = depths, _queue_depths(cluster)
        station_queue = depths.get(f"mqtt-subscription-{STATION}qos1", 0)
        bare_queue = depths.get(f"mqtt-subscription-{BARE}qos1", 0)
        log(f"doors stopped: {events:,} events stored; queued for the station {station_queue:,}, for the bare "
            f"consumer {bare_queue:,} messages")

        # 3. the station drains alone
        commits: list[tuple[int, float]] = []
        lock = threading.Lock()

        def committed(items, t: float) -> None:
            with lock:
                commits.append((len(items), time.perf_counter()))

        ingest = Ingest(settings, url, beacon_interval_s=0)
        ingest.committed.append(committed)
        t0 = time.perf_counter()
        ingest.start(wait=False)
        deadline = time.monotonic() + 1800
        while ingest.stored < events and time.monotonic() < deadline:
            time.sleep(0.05)
        with lock:
            t_last = commits[-1][1] if commits else float("nan")
            batches = len(commits)
        station_s = t_last - t0
        stored, duplicates, rejected = ingest.stored, ingest.duplicates, ingest.rejected
        ingest.close()
        station_rate = stored / station_s if station_s > 0 else 0.0
        log(f"station: {stored:,} events in {station_s:.1f} s ({station_rate:,.0f} events/s, {batches} commits)")

        # 4. the bare consumer drains the same backlog from the same cluster
        got, messages, bare_s = bare.drain(events, timeout=600)
        bare_rate = got / bare_s if bare_s > 0 else 0.0
        log(f"bare consumer: {got:,} events ({messages:,} messages) in {bare_s:.1f} s ({bare_rate:,.0f} events/s)")

        # 5. a bare batched INSERT of the same rows into the same PostgreSQL
        insert_rate, rows = _bare_insert(url)
        log(f"bare batched INSERT: {rows:,} rows at {insert_rate:,.0f} rows/s")

        # both timed from connecting to the last event of the same backlog (status and occupancy between)
        share = station_rate / bare_rate if bare_rate else 0.0
        day_s = DAY_EVENTS / station_rate if station_rate else float("inf")
        result.add(check("station drain of a stopped fleet's backlog", unit="events/s",
                         product=station_rate, baseline=bare_rate,
                         target=f"≥ {TARGET_SHARE:.0%} of a bare paho QoS 1 consumer on the same backlog",
                         met=share >= TARGET_SHARE))
        result.add(check("a 500-door day (1,000,000 events) caught up at the station's event rate", unit="s",
                         product=day_s, baseline=DAY_EVENTS / insert_rate if insert_rate else None,
                         target=f"≤ {TARGET_DAY_S:.0f} s", met=day_s <= TARGET_DAY_S))
        result.detail("backlog", {"events_stored_at_doors": events, "station_queue_messages": station_queue,
                                  "bare_queue_messages": bare_queue, "doors": len(last_seq)})
        result.detail("station", {"events_archived": stored, "duplicates": duplicates, "rejected": rejected,
                                  "seconds": station_s, "events_per_s": station_rate, "commits": batches})
        result.detail("bare_consumer", {"events": got, "messages": messages, "seconds": bare_s,
                                        "events_per_s": bare_rate})
        result.detail("bare_insert", {"rows": rows, "rows_per_s": insert_rate})
        result.note(f"Doors stopped before measuring: {len(last_seq)} doors stored {events:,} events; the station's "
                    f"queue held {station_queue:,} messages (events, status, occupancy), the bare consumer's "
                    f"{bare_queue:,}.")
        result.note(f"The station archived {stored:,} events in {station_s:.1f} s ({station_rate:,.0f} events/s: "
                    f"{share:.0%} of the bare consumer's {bare_rate:,.0f} events/s over the same backlog); a bare "
                    f"batched INSERT of the same rows ran at {insert_rate:,.0f} rows/s.")
        return result
    finally:
        try:
            cluster.stop()
        finally:
            try:
                pg.stop("immediate")
            finally:
                shutil.rmtree(pg_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.catchup", description=__doc__.splitlines()[0])
    parser.add_argument("--doors", type=int, default=200)
    parser.add_argument("--play-s", type=float, default=60.0, help="seconds the doors play (the station away)")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second across the fleet")
    parser.add_argument("--quick", action="store_true", help="20 doors for 15 s (results not for the docs)")
    parser.add_argument("--workdir", type=Path, help="where the doors' databases and the lab go")
    parser.add_argument("--results", type=Path, help="where catchup.json goes (default: bench/results[/quick])")
    args = parser.parse_args(argv)
    if args.quick:
        args.doors, args.play_s, args.rate = 20, 15.0, 60.0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="accessctl-bench-catchup-"))
    result = run(workdir, doors=args.doors, play_s=args.play_s, rate=args.rate, quick=args.quick)
    result.finish(args.results, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
