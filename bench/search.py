"""The register's search over a large archive, on SQLite and on PostgreSQL: p99 of 20 searches.

``python -m bench.search [--events N] [--pg URL]`` builds an archive of N events (default
1,000,000: 20 doors × 100 days × 500 a day, 2,000 synthetic people with Chinese and Latin names and
organisations, about 1 in 12 events an alarm or a system event), opens it as the station does
(:meth:`StationStore.prepare_reads` makes the search's indexes, timed), then runs 20 searches as a
supervisor makes them (:data:`SEARCHES`: a day, a door over a week, a type over a month, a part
of a name over a week, an organisation, a person's id in another case, keyset pages deep into a
busy day) through :func:`firmware_py.station.web.search.page`, the page's own code: the SQL and
reading 200 rows. It writes ``bench/results/search.json`` with each search's time, the p50 and
p99 (nearest rank) per archive, and the machine's load before and after. On PostgreSQL the 20
searches run three times on the one archive: without the person-text trigram index, with it (its
build timed) and without it again (:func:`bench_pg`). Without ``--pg`` it starts a throwaway
PostgreSQL cluster (Debian's PostgreSQL 15, as the tests do).

The same generator fills the archives of the search tests (:func:`fill_sqlite`, :func:`fill_pg`).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.common import RESULTS, _loadavg, log, machine_info, percentile

TZ = ZoneInfo("Asia/Shanghai")
SITE = "bench-site"
FIRST_DAY = date(2026, 8, 1)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂英华玉萍红建文辉"
LATIN = ("Anna Schmidt", "James O'Brien", "Maria Garcia", "Li Wei", "Olga Petrova", "Ahmed Khan")
ORGS = ("湖南省档案馆", "长沙安保服务有限公司", "Acme Cleaning Ltd", "湘江物业", "省文物局", "Visitors")
ACCESS = (("access_granted", "in", None), ("passage", "in", None), ("access_granted", "out", None),
          ("passage", "out", None), ("access_denied", "in", "outside_working_hours"), ("exit_button", "out", None))
OTHER = (("alarm", "door_held_open"), ("alarm", "door_forced"), ("alarm", "tailgating"),
         ("system", "lockdown_on"), ("system", "lockdown_off"), ("system", "command"))


def people(count: int, seed: int = 20) -> list[dict]:
    """Synthetic people: ``P0001``…, a Chinese name (or a Latin one for every 25th), an organisation."""
    rnd = random.Random(seed)
    out = []
    for i in range(1, count + 1):
        name = LATIN[i % len(LATIN)] if i % 25 == 0 else (
            rnd.choice(SURNAMES) + "".join(rnd.choice(GIVEN) for _ in range(rnd.choice((1, 2)))))
        out.append({"person_id": f"P{i:04d}", "name": name, "role": "staff", "organisation": ORGS[i % len(ORGS)]})
    return out


def events(*, doors: int, days: int, per_day: int, persons: int = 2000, first: date = FIRST_DAY,
           seed: int = 1) -> Iterator[tuple[str, str, dict]]:
    """(site, door, event) for doors × days × per_day events, each door's seq from 1, in the order a
    station receives them: by time, the doors' events interleaved (07:00 to 19:00 at the site)."""
    rnd = random.Random(seed)
    crowd = people(persons)
    step = 12 * 3600 * 1000 // per_day
    seqs = [0] * doors
    for day in range(days):
        on = first + timedelta(days=day)
        start = datetime(on.year, on.month, on.day, 7, tzinfo=TZ)
        today = []
        for d in range(doors):
            door = f"door-{d:02d}"
            for i in range(per_day):
                seqs[d] += 1
                at = start + timedelta(milliseconds=i * step + rnd.randrange(step))
                today.append((at, door, _event(rnd, crowd, door, seqs[d], at.isoformat(timespec="milliseconds"))))
        today.sort(key=lambda t: t[0])
        for _, door, e in today:
            yield SITE, door, e


def _event(rnd: random.Random, crowd: list[dict], door: str, seq: int, ts: str) -> dict:
    e = {"seq": seq, "ts": ts, "site": SITE, "door": door, "direction": None, "person": None,
         "credential": None, "reason": None, "detail": {}, "prev_hash": "0" * 64, "hash": "1" * 64}
    if rnd.random() < 11 / 12:
        type_, direction, reason = rnd.choice(ACCESS)
        person = rnd.choice(crowd)
        e.update(category="access", type=type_, direction=direction, reason=reason, person=person,
                 credential={"kind": "badge", "masked": f"****{int(person['person_id'][1:]):04d}"})
    else:
        category, type_ = rnd.choice(OTHER)
        e.update(category=category, type=type_)
    return e


def fill_sqlite(path: Path, items) -> float:
    """Write ``items`` ((site, door, event)) into a monitor archive file at ``path`` in one
    transaction (the monitor's schema; epoch 1); seconds taken."""
    from firmware_py.station.archive.sqlite import Archive

    t0 = time.perf_counter()
    Archive(path).close()
    conn = sqlite3.connect(path, isolation_level=None)

    def rows():
        for site, door, e in items:
            topic = f"accessctl/{site}/{door}/events/{e['category']}/{e['type']}"
            yield (site, door, 1, e["seq"], e["ts"], e["ts"][:10], e["category"], e["type"], e["hash"],
                   e["prev_hash"], 0, topic, json.dumps(e, ensure_ascii=False).encode(), e["ts"])

    conn.execute("BEGIN")
    conn.executemany("INSERT INTO events (site, door, epoch, seq, ts, local_date, category, type, hash, prev_hash,"
                     " hash_ok, topic, payload, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows())
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - t0


def fill_pg(url: str, items, batch: int = 20000) -> float:
    """Write ``items`` into a PostgreSQL archive through its own batch ingest (COPY); seconds taken."""
    from firmware_py.station.archive.pg import Incoming, PgArchive

    t0 = time.perf_counter()
    archive = PgArchive(url)
    try:
        chunk = []
        for site, door, e in items:
            chunk.append(Incoming(site, door, f"accessctl/{site}/{door}/events/{e['category']}/{e['type']}",
                                  json.dumps(e, ensure_ascii=False).encode(), e, e["ts"]))
            if len(chunk) >= batch:
                archive.store_events(chunk)
                chunk = []
        if chunk:
            archive.store_events(chunk)
    finally:
        archive.close()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- the searches


def searches(days: int) -> list[tuple[str, dict]]:
    """20 searches (name, query parameters) over an archive of ``days`` days from :data:`FIRST_DAY`."""
    mid = FIRST_DAY + timedelta(days=days // 2)
    last = FIRST_DAY + timedelta(days=days - 1)
    week = (mid - timedelta(days=6)).isoformat()
    month = max(FIRST_DAY, mid - timedelta(days=29)).isoformat()
    d, m = mid.isoformat(), mid.isoformat()
    crowd = people(2000)
    return [
        ("one day, every door", {"from": d, "to": d}),
        ("one day, one door", {"from": d, "to": d, "door": "door-03"}),
        ("a week, one door", {"from": week, "to": m, "door": "door-07"}),
        ("a week, one door, denials", {"from": week, "to": m, "door": "door-07", "type": "access_denied"}),
        ("a month, door forced", {"from": month, "to": m, "type": "door_forced"}),
        ("a month, every alarm", {"from": month, "to": m, "type": "alarm"}),
        ("one day, part of a Chinese name", {"from": d, "to": d, "q": crowd[17]["name"][-1]}),
        ("one day, a whole Chinese name", {"from": d, "to": d, "q": crowd[42]["name"]}),
        ("a week, a whole Chinese name", {"from": week, "to": m, "q": crowd[98]["name"]}),
        ("a week, a whole Latin name", {"from": week, "to": m, "q": crowd[99]["name"]}),
        ("a week, one door, a person id in lower case", {"from": week, "to": m, "door": "door-05", "q": "p0123"}),
        ("one day, part of a Latin name", {"from": d, "to": d, "q": "schmi"}),
        ("one day, an organisation", {"from": d, "to": d, "q": "安保"}),
        ("a week, an organisation and a door", {"from": week, "to": m, "q": "cleaning", "door": "door-12"}),
        ("one day, one door, exact person", {"from": d, "to": d, "door": "door-02", "person": "P0777"}),
        ("one day, register types, every door", {"from": d, "to": d, "type": "passage"}),
        ("page 5 of a busy day", {"from": d, "to": d, "page": 5}),
        ("page 20 of a busy day", {"from": d, "to": d, "page": 20}),
        ("page 3 of a door's week", {"from": week, "to": m, "door": "door-09", "page": 3}),
        ("the whole archive, newest page", {"from": FIRST_DAY.isoformat(), "to": last.isoformat()}),
    ]


def run_searches(store, days: int, size: int = 200) -> list[dict]:
    """Each search of :func:`searches` timed on ``store`` (a page deep in a result is reached by
    keyset first, untimed: the time is that of the page asked for)."""
    from firmware_py.station.web import search

    out = []
    for name, params in searches(days):
        pages = params.pop("page", 1)
        filters = search.parse(params, FIRST_DAY)
        for _ in range(pages - 1):
            found = search.page(store, filters, TZ, size)
            filters = replace(filters, before=found.before)
        t0 = time.perf_counter()
        found = search.page(store, filters, TZ, size)
        ms = (time.perf_counter() - t0) * 1e3
        out.append({"search": name, "params": params, "rows": len(found.rows), "ms": round(ms, 2)})
    return out


def _summary(rows: list[dict]) -> dict:
    times = [r["ms"] for r in rows]
    return {"p50_ms": round(percentile(times, 50), 2), "p99_ms": round(percentile(times, 99), 2),
            "max_ms": round(max(times), 2), "met_150ms": percentile(times, 99) <= 150}


def bench_sqlite(root: Path, items, days: int) -> dict:
    from firmware_py.station.archive.store_sqlite import SqliteStationStore

    path = root / "search.db"
    fill_s = fill_sqlite(path, items)
    store = SqliteStationStore.open(path)
    try:
        t0 = time.perf_counter()
        store.prepare_reads()
        index_s = time.perf_counter() - t0
        run_searches(store, days)  # warm the cache once, as a station that has served a while
        rows = run_searches(store, days)
    finally:
        store.close()
    return {"fill_s": round(fill_s, 1), "index_s": round(index_s, 1), **_summary(rows), "searches": rows}


def bench_pg(url: str, items, days: int) -> dict:
    """The searches with the person-text trigram index (:data:`.store_pg.TRIGRAMS`) and without it, in
    the same run on the same archive: without, with (its build timed), without again."""
    from firmware_py.station.archive.store_pg import TRIGRAMS, PgStationStore

    fill_s = fill_pg(url, items)
    store = PgStationStore(url, zone=TZ.key)

    def timed(sql: str) -> float:
        t0 = time.perf_counter()
        store._run(lambda c: c.execute(sql))
        return time.perf_counter() - t0

    def measured() -> list[dict]:
        store._run(lambda c: c.execute("ANALYZE events"))
        run_searches(store, days)  # warm the cache once, as a station that has served a while
        return run_searches(store, days)

    try:
        t0 = time.perf_counter()
        store.prepare_reads()
        index_s = time.perf_counter() - t0
        timed("DROP INDEX events_person_trgm")
        without = measured()
        trigram_s = timed(TRIGRAMS)
        with_index = measured()
        timed("DROP INDEX events_person_trgm")
        without_again = measured()
    finally:
        store.close()
    return {"fill_s": round(fill_s, 1), "index_s": round(index_s, 1), "trigram_index_s": round(trigram_s, 1),
            **_summary(with_index), "searches": with_index,
            "without_trigrams": {**_summary(without), "searches": without},
            "without_trigrams_again": {**_summary(without_again), "searches": without_again}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="archive size (20 doors, 500 a day)")
    parser.add_argument("--pg", help="a PostgreSQL URL whose database may be filled (default: a throwaway cluster)")
    parser.add_argument("--only", choices=("sqlite", "pg"), help="one archive only")
    parser.add_argument("--out", type=Path, default=RESULTS / "search.json")
    parser.add_argument("--keep", action="store_true", help="keep the archives (a temporary directory)")
    args = parser.parse_args(argv)
    doors, per_day = 20, 500
    days = max(1, args.events // (doors * per_day))
    root = Path(tempfile.mkdtemp(prefix="accessctl-search-"))
    root.chmod(0o755)
    result = {"name": "search", "events": doors * days * per_day, "doors": doors, "days": days,
              "machine": machine_info(root), "target": "p99 of 20 searches <= 150 ms"}
    make = lambda: events(doors=doors, days=days, per_day=per_day)  # noqa: E731
    if args.only in (None, "sqlite"):
        log(f"search: SQLite archive of {result['events']:,} events")
        result["sqlite"] = bench_sqlite(root, make(), days)
        log(f"search: SQLite p99 {result['sqlite']['p99_ms']} ms")
    if args.only in (None, "pg"):
        cluster = None
        url = args.pg
        if not url:
            from simulator.lab_tier import PostgresCluster, free_port

            cluster = PostgresCluster(root / "pg", free_port())
            (root / "pg").mkdir()
            (root / "pg").chmod(0o777)
            cluster.init()
            cluster.start()
            url = cluster.create_database("search")
        try:
            log(f"search: PostgreSQL archive of {result['events']:,} events")
            result["pg"] = bench_pg(url, make(), days)
            pg = result["pg"]
            log(f"search: PostgreSQL p99 {pg['p99_ms']} ms with the trigram index (built in {pg['trigram_index_s']} s),"
                f" {pg['without_trigrams']['p99_ms']} / {pg['without_trigrams_again']['p99_ms']} ms without")
        finally:
            if cluster:
                cluster.stop()
    result["load_after"] = _loadavg()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    log(f"search: wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
