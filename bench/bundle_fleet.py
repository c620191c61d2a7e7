"""Benchmark: a signed roster bundle from the station's publish to applied at 100 simulated doors.

    .venv/bin/python -m bench bundle-fleet [--quick]
    .venv/bin/python -m bench.bundle_fleet [--quick] [--doors N] [--persons N ...] [--rate R]

Issue 19's "publish → applied at 100 simulated doors (p99)". One run, one private Mosquitto on a
free loopback port with a configuration of its own (plain MQTT on 127.0.0.1, anonymous, the venue
broker's ``max_packet_size`` of 4 MiB + 64 KiB; no TLS, as the fleet benchmarks run):

1. the station's keys are made as docs/commissioning.md says (an Ed25519 signing key, its public
   half and a 32-byte site roster key);
2. ``accessctl-sim fleet --roster-keys DIR`` runs DOORS doors (the real controller, store, outbox
   and MQTT link each, with ``[roster]`` station_public_key and site_key), playing their day at
   RATE events/s across the fleet the whole time;
3. for each size, a roster of that many persons (the fleet's own, :func:`simulator.fleet_day.write_roster`,
   plus synthetic persons) is published with the product's own path,
   :func:`firmware_py.station.roster.publish.publish_roster` (what ``accessctl station roster
   publish FILE.csv --site fleet`` runs), each size a newer version to the same doors;
4. a bare paho subscriber in this process notes when each door's ``roster_applied`` event for that
   version arrives from the broker, and when its retained status first says ``roster_version``.

**The end point** is the ``roster_applied`` event as it reaches a subscriber on the broker: the
door has checked the signature, assembled the chunks, applied the rows all or nothing and stored
the event in the same transaction, and its outbox has published it -- what the station sees. The
door's own store time is earlier by its outbox's publish delay (its link's sender is woken by the
store; not measured apart here): the doors' clocks are simulated, so the event's ``ts`` cannot be
used. Each door's figure is measured from the moment the publish call returned (every chunk and
the manifest acknowledged by the broker); the call's own duration (connect, the retained version
looked up, signing) is reported apart.

Baseline, same run, same broker, the fleet still playing: the same bundle's messages (its chunks,
then its manifest, the bytes the station published) sent by a bare paho QoS 1 client on topics no
door reads, timed from the first publish until a bare paho subscriber has the manifest: what the
network and the broker alone cost to move the bundle (median of REPEATS).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.station.config import load_station_config
from firmware_py.station.roster.publish import RETAINED_WAIT_S, publish_roster
from simulator.fleet_day import write_roster
from simulator.fleet_door import SITE, SITE_ROSTER_KEY, STATION_PUBLIC_KEY

from .bundle_fleet_mqtt import Broker, Watch, bare_publish
from .common import REPO, Result, check, log, percentile
from .data import Workspace, badge_uid, id_number, person_id

REPEATS = 5
STATION_ID = "bench-station"
SCHEDULES = """
[roster.schedule.office]
mon = ["08:30-12:00", "14:00-17:30"]
tue = ["08:30-12:00", "14:00-17:30"]
wed = ["08:30-12:00", "14:00-17:30"]
thu = ["08:30-12:00", "14:00-17:30"]
fri = ["08:30-12:00", "14:00-17:30"]

[roster.schedule.extended]
mon = ["07:30-19:00"]
tue = ["07:30-19:00"]
wed = ["07:30-19:00"]
thu = ["07:30-19:00"]
fri = ["07:30-19:00"]
"""  # config/venue.example.toml's groups, which the fleet's doors have


# --------------------------------------------------------------------------- set-up


def make_keys(directory: Path) -> Path:
    """The station's signing key, its public half and the site roster key, named as docs/commissioning.md does."""
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private = directory / "roster-signing.key"
    private.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
    (directory / STATION_PUBLIC_KEY).write_bytes(
        key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo))
    (directory / SITE_ROSTER_KEY).write_bytes(os.urandom(32))
    for secret in (private, directory / SITE_ROSTER_KEY):
        secret.chmod(0o600)
    return private


def station_config(directory: Path, broker: Broker, keys: Path, signing_key: Path) -> Path:
    path = directory / "station.toml"
    path.write_text(f"""[broker]
url = "{broker.url}"
client_id = "{STATION_ID}"

[archive]
path = "{directory / 'archive.db'}"

[roster]
signing_key = "{signing_key}"
site_key = "{keys / SITE_ROSTER_KEY}"
site = "{SITE}"
{SCHEDULES}""", encoding="utf-8")
    return path


def roster_csv(path: Path, persons: int) -> Path:
    """The fleet's roster (the people its day plays with) and synthetic persons up to ``persons``."""
    write_roster(path, seed=1)
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0])
    for i in range(max(0, persons - len(rows))):
        rows.append({"person_id": person_id(i), "name": f"测试 {person_id(i)}", "id_number": id_number(i),
                     "badge_uids": badge_uid(i), "role": "staff", "organisation": "示例档案馆数字化室",
                     "employer_type": "own", "review_date": "2025-12-10", "training_hours": "48",
                     "commitment_date": "2025-12-15", "valid_from": "2026-01-01", "valid_until": "2027-12-31",
                     "schedule_group": "office"})
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def decided_after(db_dir: Path, versions: list[int]) -> dict:
    """From the doors' databases after the run: grants stored after each version's ``roster_applied`` (the
    doors kept deciding on the new roster), the persons each door holds at the end, and the doors' storage
    faults (a write of the door that found the database locked for longer than it waits: the apply's steps
    held the lock)."""
    grants = dict.fromkeys(versions, 0)
    persons = []
    faults = {"doors": 0, "faults": 0, "grants_refused": 0, "longest_s_door_clock": 0.0}
    for path in sorted(db_dir.glob("fleet-*.db")):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT json_extract(body, '$.detail.state'), json_extract(body, '$.detail.refused'), "
                                "json_extract(body, '$.detail.fault_s') FROM events WHERE type = 'hardware_fault' "
                                "AND json_extract(body, '$.detail.device') = 'storage'").fetchall()
            faults["doors"] += any(state == "fault" for state, _, _ in rows)
            for state, refused, fault_s in rows:
                faults["faults"] += state == "fault"
                faults["grants_refused"] += refused or 0
                faults["longest_s_door_clock"] = max(faults["longest_s_door_clock"], fault_s or 0.0)
            for version in versions:
                row = conn.execute("SELECT min(seq) FROM events WHERE type = 'roster_applied' AND "
                                   "json_extract(body, '$.detail.version') = ?", (version,)).fetchone()
                if row[0] is not None:
                    grants[version] += conn.execute("SELECT count(*) FROM events WHERE type = 'access_granted' "
                                                    "AND seq > ?", (row[0],)).fetchone()[0]
            persons.append(conn.execute("SELECT count(*) FROM persons").fetchone()[0])
        finally:
            conn.close()
    return {"granted_after_applied": grants, "persons_at_end": sorted(set(persons)), "storage_faults": faults}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def loadavg() -> float:
    with open("/proc/loadavg", encoding="ascii") as f:
        return float(f.read().split()[0])


# --------------------------------------------------------------------------- one bundle


def publish_and_wait(cfg_path: Path, csv_path: Path, watch: Watch, doors: int, timeout_s: float) -> dict:
    """Publish ``csv_path`` with the product's own path; wait until every door applied it (or refused, or time)."""
    cfg = load_station_config(cfg_path)
    load_at_publish = uptime()
    with watch.lock:
        seen = len(watch.manifests)
    t_call = time.perf_counter()
    published = publish_roster(cfg, csv_path, site=SITE)
    t_return = time.perf_counter()
    version = published.bundle.version
    log(f"bundle-fleet: {published}")
    loads = [loadavg()]
    deadline = time.monotonic() + timeout_s
    next_load = time.monotonic() + 1.0
    while watch.count(version, t_call) < doors and time.monotonic() < deadline:
        time.sleep(0.05)
        if time.monotonic() >= next_load:
            loads.append(loadavg())
            next_load += 1.0
    all_in = time.perf_counter()
    time.sleep(min(5.0, max(0.5, (all_in - t_return) * 0.1)))  # statuses after the last event
    with watch.lock:
        applied = dict(watch.applied.get(version, {}))
        shown = dict(watch.shown.get(version, {}))
        manifest_at = watch.manifests[seen] if len(watch.manifests) > seen else None
        rejected = {door: reason for t, door, reason in watch.rejected if t >= t_call}
    after = [t - t_return for t in applied.values()]
    status_after = [t - t_return for t in shown.values()]
    b = published.bundle

    def figures(samples: list[float]) -> dict | None:
        if not samples:
            return None
        return {"n": len(samples), "p50_ms": round(percentile(samples, 50) * 1e3, 1),
                "p95_ms": round(percentile(samples, 95) * 1e3, 1), "p99_ms": round(percentile(samples, 99) * 1e3, 1),
                "max_ms": round(max(samples) * 1e3, 1), "min_ms": round(min(samples) * 1e3, 1)}

    return {
        "persons": b.count, "version": version, "doors": doors, "applied": len(applied), "rejected": rejected,
        "missing": sorted(set(watch.status) - set(applied) - set(rejected)),
        "wire_bytes": b.wire_bytes, "payload_bytes": b.payload_bytes, "chunks": len(b.chunks),
        "manifest_bytes": len(b.manifest), "largest_message_bytes": max(len(m) for m in (b.manifest, *b.chunks)),
        "publish_call_s": round(t_return - t_call, 3),
        "manifest_at_subscriber_after_return_ms": (None if manifest_at is None
                                                   else round((manifest_at - t_return) * 1e3, 1)),
        "applied_after_return": figures(after),
        "applied_after_call": figures([t - t_call for t in applied.values()]),
        "status_after_return": figures(status_after),
        "per_door_ms": {d: round((t - t_return) * 1e3, 1) for d, t in sorted(applied.items())},
        "load_at_publish": load_at_publish, "load_after": uptime(), "loadavg_1min_max_during": max(loads),
        "published": published,
    }


# --------------------------------------------------------------------------- the run


def run(ws: Workspace, *, quick: bool, doors: int | None = None, sizes: tuple[int, ...] | None = None,
        rate: float | None = None, repeats: int | None = None) -> Result:
    doors = doors or (10 if quick else 100)
    sizes = sizes or ((200,) if quick else (1_000, 100_000))
    rate = rate if rate is not None else (5.0 if quick else 20.0)
    repeats = repeats or (3 if quick else REPEATS)
    root = ws.root / "bundle-fleet"
    root.mkdir(parents=True, exist_ok=True)
    result = Result("bundle-fleet", f"Signed roster bundle: publish → applied at {doors} simulated doors",
                    data_dir=root, quick=quick,
                    params={"doors": doors, "persons": list(sizes), "fleet_rate_events_per_s": rate,
                            "baseline_repeats": repeats, "broker": "mosquitto, plain MQTT on loopback, own config"})
    broker = Broker(root / "broker")
    fleet = watch = None
    err_path = root / "fleet.err"
    try:
        broker.start()
        keys = root / "keys"
        signing = make_keys(keys)
        cfg_path = station_config(root, broker, keys, signing)
        watch = Watch(broker)
        fleet = start_fleet([sys.executable, "-m", "simulator.cli", "fleet", "--doors", str(doors), "--broker",
                             broker.url, "--db-dir", str(root / "doors"), "--rate", str(rate), "--duration", "86400",
                             "--roster-keys", str(keys), "--drain-timeout", "120"], err_path)
        log(f"bundle-fleet: {doors} doors starting (log: {err_path})")
        _wait_online(fleet, err_path, watch, doors)
        time.sleep(1)  # the play settles
        runs = []
        for persons in sizes:
            csv_path = roster_csv(root / f"roster-{persons}.csv", persons)
            log(f"bundle-fleet: publishing {persons:,} persons to {doors} doors")
            timeout_s = 120 + persons * doors * 0.0002
            r = publish_and_wait(cfg_path, csv_path, watch, doors, timeout_s)
            published = r.pop("published")
            log(f"bundle-fleet: {r['applied']}/{doors} applied; p99 {r['applied_after_return']}")
            bare = [bare_publish(broker, watch, published, f"{persons}-{i}") for i in range(repeats)]
            r["baseline_ms"] = {"to_subscriber": [round(a * 1e3, 1) for a, _ in bare],
                                "publisher_acked": [round(k * 1e3, 1) for _, k in bare]}
            r["baseline_median_ms"] = round(statistics.median(a for a, _ in bare) * 1e3, 1)
            runs.append(r)
        os.killpg(fleet.pid, signal.SIGINT)  # as Ctrl-C: every fleet process stops its doors and empties the outboxes
        try:
            out, _ = fleet.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(fleet.pid, signal.SIGKILL)
            out, _ = fleet.communicate()
            result.note("The fleet did not stop within 300 s of SIGINT and was killed: its doors' outboxes were "
                        "not emptied (the figures above do not depend on it).")
        ended = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    finally:
        if fleet is not None and fleet.poll() is None:
            os.killpg(fleet.pid, signal.SIGKILL)
            fleet.wait()
        if watch is not None:
            watch.close()
        broker.stop()

    fleet_log = err_path.read_text().splitlines()
    for r in runs:
        fig = r["applied_after_return"] or {}
        met = r["applied"] == doors
        label = f"{r['persons']:,} persons, {r['chunks']} chunk{'s' if r['chunks'] != 1 else ''}"
        result.add(check(f"publish → applied at {doors} doors, p99 ({label})", unit="ms",
                         product=fig.get("p99_ms", float("nan")), baseline=r["baseline_median_ms"],
                         target="every door applies; p99 reported (issue 19 sets no figure)", met=met))
        result.add(check(f"publish → applied at {doors} doors, p50 ({label})", unit="ms",
                         product=fig.get("p50_ms", float("nan")), baseline=r["baseline_median_ms"],
                         target="— (reported)", met=met))
        result.note(f"{r['persons']:,} persons, version {r['version']}: {r['wire_bytes']:,} bytes signed on the wire "
                    f"({r['payload_bytes']:,} compressed) in {r['chunks']} chunk(s) + a {r['manifest_bytes']:,}-byte "
                    f"manifest, to each of {doors} doors; {r['applied']}/{doors} applied"
                    + (f", refused by {len(r['rejected'])}" if r["rejected"] else "")
                    + (f", silent: {', '.join(r['missing'])}" if r["missing"] else "")
                    + f". Publish → applied p50/p95/p99/max {_ms(fig)}; the doors' statuses showed the version "
                    f"{_ms(r['status_after_return'] or {})}. The publish call itself took {r['publish_call_s']} s "
                    f"(connect, the retained version looked up for {RETAINED_WAIT_S:g} s, signing, every PUBACK). "
                    f"Bare paho, same bytes, same broker: {r['baseline_median_ms']} ms to the subscriber (median of "
                    f"{len(r['baseline_ms']['to_subscriber'])}). Load: {r['load_at_publish']} → {r['load_after']}.")
    after = decided_after(root / "doors", [r["version"] for r in runs])
    f = after["storage_faults"]
    result.note(f"While the doors played and applied: {f['faults']} storage fault(s) at {f['doors']} of {doors} doors "
                f"(a door's write found the database locked past its 50 ms wait; {f['grants_refused']} grant(s) "
                f"refused meanwhile); grants stored after each version was applied: "
                f"{after['granted_after_applied']}; persons at each door at the end: {after['persons_at_end']}.")
    result.detail("doors_after", after)
    result.detail("runs", runs)
    result.detail("fleet", {"doors": doors, "rate": rate, "ended": len(ended),
                            "left_queued": {e["door"]: e["queued"] for e in ended if e.get("queued")},
                            "log": [line for line in fleet_log if "played;" in line or "connected;" in line][-3:]})
    result.detail("uptime_end", uptime())
    return result


def start_fleet(cmd: list[str], err_path: Path) -> subprocess.Popen:
    """``accessctl-sim fleet`` in a process group of its own, stopped later by SIGINT (as Ctrl-C stops it).

    A job a shell starts in the background inherits SIGINT ignored, and so would the fleet: it could
    then never be stopped cleanly. The disposition is set to the default for the child's start only.
    """
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        with open(err_path, "w") as err:
            return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO,
                                    start_new_session=True)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _wait_online(fleet: subprocess.Popen, err_path: Path, watch: Watch, doors: int) -> None:
    """Until the fleet plays and every door's status says online (60 s after it began playing at most)."""
    deadline = time.monotonic() + 300
    while watch.online() < doors:
        if fleet.poll() is not None:
            raise RuntimeError(f"the fleet ended early:\n{err_path.read_text()[-2000:]}")
        if "playing" in err_path.read_text():
            deadline = min(deadline, time.monotonic() + 60)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{watch.online()} of {doors} doors online:\n{err_path.read_text()[-2000:]}")
        time.sleep(0.2)


def _ms(fig: dict) -> str:
    if not fig:
        return "—"
    return f"{fig['p50_ms']:,.0f} / {fig['p95_ms']:,.0f} / {fig['p99_ms']:,.0f} / {fig['max_ms']:,.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bundle_fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 doors, 200 persons (results not for the docs)")
    parser.add_argument("--doors", type=int, help="how many doors (default 100)")
    parser.add_argument("--persons", type=int, nargs="+", help="roster sizes, published in turn (default 1000 100000)")
    parser.add_argument("--rate", type=float, help="events per second the fleet plays meanwhile (default 20)")
    parser.add_argument("--workdir", type=Path, help="where the doors' databases go")
    parser.add_argument("--results", type=Path, help="where bundle-fleet.json goes (default: bench/results[/quick])")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="accessctl-bench-bundle-fleet-"))
    result = run(Workspace(workdir), quick=args.quick, doors=args.doors,
                 sizes=tuple(args.persons) if args.persons else None, rate=args.rate)
    result.finish(args.results, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
