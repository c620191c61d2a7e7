"""Benchmark: a door's alarm → visible on ``/alarms`` and on the door's tile, with 500 doors' traffic flowing.

    .venv/bin/python -m bench.alarms [--quick] [--doors 500] [--rate 50] [--alarms 120]

One run on this machine: a private Mosquitto (plain MQTT on loopback, the shipped config's queue
limit), ``accessctl station serve`` as a child process on its SQLite archive, ``--doors`` doors'
traffic at ``--rate`` events per second across them, and one more door of the fleet's site
(``fleet-NNN``, the next number) in this process: the real
:class:`~firmware_py.storage.eventstore.EventStore` and :class:`~firmware_py.link.door_link.MqttLink`.
The traffic is, by default (``--traffic replay``), each door's own hash-chained access events
published from one paho client in turn (what the station receives from doors that each run on
their own Pi); ``--traffic fleet`` runs ``accessctl-sim fleet`` instead (the real controller,
store, outbox and link of every door, all on this machine's two cores beside the station: on this
shared machine the station then took ~21 of 32 events/s and fell behind, so the alarms queued
behind the backlog).
Debian's Chromium (Playwright) holds two pages of an operator logged in: ``/alarms`` and the
overview ``/``.

Each alarm (``door_forced``) is timed from the moment ``EventStore.append`` returns (stored
durably at the door) until its row is in the live queue (a MutationObserver in ``/alarms``
stamps it) and until the door's tile turns to alarm (``data-alarm="true"``, stamped by a
MutationObserver in ``/``). The operator then acknowledges it over the page's API so that the
tile turns back before the next one (a pause of 0.3–0.6 s between alarms).
Baseline, same run, same alarms: the moment a bare paho subscriber (QoS 1) on the door's event
topic receives each one from the broker.

A busy door of the fleet stores about 1.9 events per 30 s (docs/fleet.md), so 500 doors make
about 32 events/s; the default ``--rate`` 50 is a busy day rounded up. The archive's event count
before and after the timed alarms says how much traffic actually flowed meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from .common import RESULTS, Result, check, log, percentile, summary_ms
from .station import BareSubscriber

TARGET_P99_MS = 500.0
TZ = ZoneInfo("Asia/Shanghai")
USER, PASSWORD = "bench-operator", "bench alarm password"
WARMUP = 5
LATE_S = 60.0  # an alarm not on both pages by then ends the run (the station is behind the fleet)

# /alarms: when each of the door's rows arrives in the live queue; /: when its tile turns to alarm.
QUEUE_OBSERVER = """door => {
  window.__seen = {};
  new MutationObserver(records => {
    const now = performance.timeOrigin + performance.now();
    for (const r of records) for (const n of r.addedNodes) {
      if (n.dataset && n.dataset.door === door && !(n.dataset.seq in window.__seen)) window.__seen[n.dataset.seq] = now;
    }
  }).observe(document.querySelector('#open-alarms tbody'), {childList: true});
}"""
TILE_OBSERVER = """door => {
  window.__turned = [];
  const tile = document.querySelector('.tile[data-door="' + door + '"]');
  new MutationObserver(() => {
    if (tile.dataset.alarm === 'true') window.__turned.push(performance.timeOrigin + performance.now());
  }).observe(tile, {attributes: true, attributeFilter: ['data-alarm']});
}"""


def start_broker(workdir: Path):
    """A private Mosquitto on a free loopback port: plain MQTT, anonymous (the demo's lab broker), with
    the shipped configuration's queue for a subscriber that falls behind (deploy/mosquitto/mosquitto.conf:
    ``max_queued_messages 20000``; Mosquitto's default 1000 drops the rest silently)."""
    import pwd
    import shutil

    from simulator import demo

    port = demo.free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 20000\n"
                    f"log_dest file {workdir / 'mosquitto.log'}\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n",
                    encoding="utf-8")
    broker = demo.Child("lab broker (mosquitto)", [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c",
                                                   str(conf)], workdir / "mosquitto.log")
    _wait(lambda: not demo.port_is_free("127.0.0.1", port), 10, "mosquitto listening")
    return broker, f"mqtt://127.0.0.1:{port}"


class ReplayedDoors:
    """``doors`` doors' traffic as the station receives it, from one paho client: each door's own
    hash-chained access events (:func:`bench.station.chained_events`, site ``hn-archive-1``, doors
    ``door-001`` …) published at QoS 1 in turn at ``rate`` events/s across them. The doors' own work
    (each on its own Pi in a venue) is not on this machine; the station's is."""

    def __init__(self, url: str, doors: int, rate: float, per_door: int):
        import paho.mqtt.client as mqtt

        from bench.station import chained_events

        host, port = url.removeprefix("mqtt://").split(":")
        names = [f"door-{i:03d}" for i in range(1, doors + 1)]
        chains = {d: chained_events(d, per_door, date(2026, 11, 23)) for d in names}
        self.messages = [(f"accessctl/{e['site']}/{d}/events/access/access_granted",
                          json.dumps(e, ensure_ascii=False).encode()) for i in range(per_door) for d in names
                         for e in (chains[d][i],)]
        self.rate, self.sent = rate, 0
        self.client = c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-doors-{os.getpid()}")
        c.max_inflight_messages_set(100)
        c.connect(host, int(port), 30)
        c.loop_start()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="replayed-doors", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        for topic, payload in self.messages:
            if self._stop.is_set():
                return
            wait = t0 + self.sent / self.rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.client.publish(topic, payload, qos=1)
            self.sent += 1

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def _archived(archive: Path) -> int:
    with sqlite3.connect(f"file:{archive}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0]


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.02)


def run(workdir: Path, *, doors: int, rate: float, alarms: int, traffic: str = "replay",
        quick: bool = False) -> Result:
    from playwright.sync_api import sync_playwright

    from firmware_py.config.schema import load_config
    from firmware_py.core.clock import SystemClock
    from firmware_py.link.door_link import MqttLink
    from firmware_py.storage.db import open_db
    from firmware_py.storage.eventstore import EventStore
    from simulator import demo
    from simulator.fleet import BASE_CONFIG
    from simulator.fleet_door import SITE, door_config, door_name
    from simulator.lab_station import add_user_cli

    workdir.mkdir(parents=True, exist_ok=True)
    result = Result("alarms", "Door alarm → /alarms and the door's tile, with a fleet's traffic flowing",
                    data_dir=workdir, quick=quick, params={"doors": doors, "rate": rate, "alarms": alarms,
                                                           "traffic": traffic})
    broker, url = start_broker(workdir)
    host, port = url.removeprefix("mqtt://").split(":")
    web_port = demo.free_port()
    config = demo.write_station_config(workdir, url, f"127.0.0.1:{web_port}")
    archive = workdir / "archive.db"
    children: list[subprocess.Popen] = []
    link = bare = db = replayed = None
    try:
        station = demo.start_station(workdir, config, f"http://127.0.0.1:{web_port}/")
        made = add_user_cli(config, USER, "operator", PASSWORD)
        if made.returncode:
            raise RuntimeError(f"station user add failed: {made.stderr}")
        base_url = f"http://127.0.0.1:{web_port}"

        # the door timed here: the fleet's site, the number after the fleet's doors
        name = door_name(doors + 1)
        cfg = door_config(load_config(BASE_CONFIG), doors + 1, db_dir=workdir / "door", broker=url, protocol=5)
        (workdir / "door").mkdir(exist_ok=True)
        db = open_db(cfg.storage.database)
        store = EventStore(db, site=SITE, door=name, clock=SystemClock(TZ))
        link = MqttLink(cfg, post=queue.Queue().put, backoff=(0.1, 0.5))
        link.start()
        link.publish_status({"door": "closed", "lock": "locked", "lockdown": False, "occupancy": 0,
                             "version": "bench", "faults": [], "queued": 0, "last_seq": 0})
        import paho.mqtt.client as mqtt

        bare = BareSubscriber(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{os.getpid()}"),
                              host, int(port), f"accessctl/{SITE}/{name}/events/#")
        started = store.append("system", "controller_started")
        link.notify()

        # the background traffic: the fleet's processes (ended at the end), or its messages replayed
        if traffic == "fleet":
            with open(workdir / "fleet.log", "wb") as fleet_log:
                fleet = subprocess.Popen([sys.executable, "-m", "simulator.cli", "fleet", "--doors", str(doors),
                                          "--broker", url, "--rate", str(rate), "--duration", "3600", "--db-dir",
                                          str(workdir / "fleet"), "--drain-timeout", "5"], stdout=fleet_log,
                                         stderr=subprocess.STDOUT, start_new_session=True, cwd=demo.REPO)
            children.append(fleet)
        else:
            replayed = ReplayedDoors(url, doors, rate, per_door=int(rate * 1800 / doors) + 2)
        log(f"alarms: {doors} doors ({traffic}) at {rate:g} events/s starting")
        _wait(lambda: bare.arrived.get(started["seq"]) is not None, 30, "the timed door's first event")
        t0 = time.monotonic()
        first_count = _archived(archive)
        _wait(lambda: _archived(archive) > first_count + 20 * rate or any(c.poll() is not None for c in children),
              900, "the doors' traffic reaching the archive")
        if any(c.poll() is not None for c in children):
            raise RuntimeError(f"the fleet ended: see {workdir / 'fleet.log'}")
        log(f"alarms: the doors' traffic flows ({time.monotonic() - t0:.0f} s to start)")

        stored: dict[int, float] = {}
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=["--no-sandbox", "--disable-gpu"])
            try:
                context = chromium.new_context(viewport={"width": 1280, "height": 900})
                context.set_default_timeout(60_000)
                queue_page = context.new_page()
                queue_page.goto(base_url + "/alarms")
                queue_page.fill("input[name=username]", USER)
                queue_page.fill("input[name=password]", PASSWORD)
                queue_page.click("button[type=submit]")
                queue_page.wait_for_url(base_url + "/alarms")
                overview = context.new_page()
                overview.goto(base_url + "/")
                overview.wait_for_selector(f'.tile[data-door="{name}"]')
                for page in (queue_page, overview):
                    page.wait_for_selector("body[data-stream=live]")
                queue_page.evaluate(QUEUE_OBSERVER, name)
                overview.evaluate(TILE_OBSERVER, name)
                csrf = queue_page.get_attribute('meta[name="csrf-token"]', "content")
                tiles = overview.locator(".tile").count()
                archived_before, t_before = _archived(archive), time.monotonic()
                turned_at: dict[int, float] = {}
                lost: list[int] = []
                late = None
                for i in range(alarms + WARMUP):
                    turned = len(overview.evaluate("window.__turned"))
                    e = store.append("alarm", "door_forced", detail={"source": "door_contact"})
                    stored[e["seq"]] = time.time()
                    link.notify()
                    seq = e["seq"]
                    try:
                        _wait(lambda seq=seq: seq in bare.arrived, 10, f"alarm #{seq} at the bare subscriber")
                    except RuntimeError:  # acknowledged by the broker to the door, yet delivered to nobody
                        lost.append(seq)
                        log(f"alarms: #{seq} never reached the bare subscriber nor the station; the next")
                        continue
                    try:
                        _wait(lambda seq=seq, turned=turned: queue_page.evaluate(f"'{seq}' in window.__seen")
                              and len(overview.evaluate("window.__turned")) > turned, LATE_S, f"alarm #{seq}")
                    except RuntimeError:  # the station is behind: the run ends here, what it measured is kept
                        late = seq
                        log(f"alarms: #{seq} not on both pages within {LATE_S:g} s: the run stops")
                        break
                    turned_at[seq] = overview.evaluate("window.__turned")[turned]
                    answer = context.request.post(f"{base_url}/api/alarms/{SITE}/{name}/{seq}/acknowledge",
                                                  form={"comment": "bench", "epoch": "1"},
                                                  headers={"X-CSRF-Token": csrf})
                    if answer.status != 200:
                        raise RuntimeError(f"acknowledging #{seq}: {answer.status} {answer.text()[:200]}")
                    tile = overview.locator(f'.tile[data-door="{name}"]')
                    _wait(lambda tile=tile: tile.get_attribute("data-alarm") == "false", 30, f"the tile after #{seq}")
                    if i % 20 == 0:
                        log(f"alarms: {i + 1} of {alarms + WARMUP}")
                    time.sleep(random.uniform(0.3, 0.6))
                seen = queue_page.evaluate("window.__seen")
                flowed = (_archived(archive) - archived_before) / (time.monotonic() - t_before)
            finally:
                chromium.close()
        timed = [s for s in sorted(stored)[WARMUP:] if s not in lost and s in turned_at]
        queue_s = [seen[str(s)] / 1000 - stored[s] for s in timed]
        tile_s = [turned_at[s] / 1000 - stored[s] for s in timed]
        bare_s = [bare.arrived[s] - stored[s] for s in timed if s in bare.arrived]
        worst_s = [max(a, b) for a, b in zip(queue_s, tile_s, strict=True)]
        result.detail("tiles_on_overview", tiles)
        result.detail("traffic_events_per_s", round(flowed, 1))
        result.detail("lost_between_door_and_broker", lost)
        result.detail("samples_ms", [{"seq": s, "queue": round(q * 1e3, 1), "tile": round(t * 1e3, 1),
                                      "bare": round((bare.arrived[s] - stored[s]) * 1e3, 1)}
                                     for s, q, t in zip(timed, queue_s, tile_s, strict=True)])
        if timed:
            both = summary_ms(worst_s)
            result.detail("alarm_to_queue", summary_ms(queue_s))
            result.detail("alarm_to_tile", summary_ms(tile_s))
            result.detail("alarm_to_both", both)
            result.detail("bare_subscriber", summary_ms(bare_s))
            result.add(check("door alarm → visible on /alarms and on the tile (p99, the later of the two)",
                             unit="ms", product=both["p99_ms"], baseline=percentile(bare_s, 99) * 1e3,
                             target=f"p99 ≤ {TARGET_P99_MS:g} ms with {doors} doors' traffic",
                             met=both["p99_ms"] <= TARGET_P99_MS and late is None))
        if late is not None:
            result.detail("late_alarm", {"seq": late, "after_s": LATE_S})
            result.note(f"alarm #{late} was not on both pages within {LATE_S:g} s: the run stopped there")
        if lost:
            result.note(f"{len(lost)} alarms ({lost}) were acknowledged by the broker to the door's link but reached "
                        "neither the bare subscriber nor the station: not timed")
        result.note(f"{len(timed)} alarms timed, {tiles} tiles on the overview; the archive took "
                    f"{flowed:.1f} events/s meanwhile ({rate:g}/s asked for)")
        station.stop()
    finally:
        if replayed is not None:
            replayed.close()
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
        if link is not None:
            link.close()
        if bare is not None:
            bare.close()
        if db is not None:
            db.conn.close()
        broker.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.alarms", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 doors, 20 alarms (results not for the docs)")
    parser.add_argument("--doors", type=int, default=500, help="doors of the background fleet (default 500)")
    parser.add_argument("--rate", type=float, default=50.0, help="their events per second (default 50)")
    parser.add_argument("--alarms", type=int, default=120, help="alarms timed (default 120)")
    parser.add_argument("--traffic", choices=("replay", "fleet"), default="replay",
                        help="the doors' events replayed from one client (default), or accessctl-sim fleet's "
                             "doors running on this machine")
    parser.add_argument("--out", type=Path, help="the result file (default bench/results/alarms.json)")
    parser.add_argument("--workdir", type=Path, help="where the lab goes (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.quick:
        args.doors, args.alarms = min(args.doors, 20), min(args.alarms, 20)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="accessctl-bench-alarms-"))
    result = run(workdir, doors=args.doors, rate=args.rate, alarms=args.alarms, traffic=args.traffic,
                 quick=args.quick)
    path = result.write(RESULTS / "quick" if args.quick else RESULTS)
    if args.out:
        args.out.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    log(f"wrote {path}")
    shown = {k: v for k, v in result.doc["details"].items() if k != "samples_ms"}
    print(json.dumps({"checks": result.doc["checks"], "details": shown}, indent=1, ensure_ascii=False))
    for note in result.doc["notes"]:
        print("-", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
