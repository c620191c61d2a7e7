"""The supervisor's monitor: an ordinary MQTT subscriber that shows, archives and checks.

It subscribes to one door, one site or every site under the topic prefix
(DESIGN.md "MQTT"). Every message is first judged (:func:`firmware_py.station.ingest.judge.judge`,
the same judge as the PostgreSQL ingest's): one it refuses (not strict JSON, over 64 KiB, outside
the event vocabulary, another door's body on this door's topic, an event that arrives retained …)
is kept in the archive's ``ingest_rejects`` with the reason, shown as an integrity warning, and
acknowledged like any other. Then:

- an event (``{prefix}/{site}/{door}/events/{category}/{type}``) is archived in the
  monitor's own SQLite file (:mod:`firmware_py.station.archive.sqlite`), de-duplicated by
  ``(site, door, seq)``, its hash and its link to the archived neighbours checked, and
  shown as one readable line (:func:`firmware_py.core.event_line.render`);
- a second, different copy of an archived seq is kept as evidence (the copy that verifies
  best stays in the register) and raises an integrity alarm; a door whose chain restarts
  at seq 1 after a database reset is archived as a new epoch;
- a gap in a door's sequence makes the monitor ask that door for a replay on its
  ``cmd`` topic (``{"id", "action": "replay", "from_seq"}``), at once (a gap below an urgent
  event, which a door sends ahead of its backlog, only once the backlog stopped coming for
  ``replay_interval_s``: :func:`.replay.sent_ahead`), at most once per
  ``replay_interval_s`` per door, again only if the replay makes no progress, with the
  wait doubling after the second request, and at most ``max_replay_requests`` times per
  gap: then it gives up on that gap with a clear line (a forged far-future seq cannot
  make it ask forever, each request adding a ``command`` event at the door);
- an event that arrives with the retain flag is refused: doors never retain events, and the broker
  cannot stop a door's account from doing so, so it is a stale or forged copy kept by the broker
  (on MQTT 5 the events are subscribed with Retain As Published, so one published retained while
  the monitor listens is caught as well);
- the retained ``status`` and ``occupancy`` of each door are kept and shown when they
  change; a door whose status announces a ``last_seq`` the archive lacks, with nothing
  queued, is asked for the missing tail: at once when the status came retained (on
  subscribing: events published before the first subscription were queued for nobody),
  after one ``replay_interval_s`` for a live status (the events may still be in flight).
  The status's ``last_seq``/``last_hash`` is the chain head the door published: the
  archive keeps it, and a status whose head went back (the log was cut or reset) or names
  another hash raises an alarm.

It also publishes the time beacon (GB 50396 5.1.3): a retained ``{prefix}/{site}/time``
``{"ts": ISO 8601 with offset}`` from its own clock every ``beacon_interval_s`` for each
site it watches. Topics and payloads are left exactly as the broker delivers them, so
``mosquitto_sub`` sees what the monitor archived.

The archive commits before paho acknowledges the QoS 1 message (paho sends PUBACK when
``on_message`` returns), and the monitor keeps a persistent session, so the broker
queues events while it is away.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from firmware_py.core.clock import Clock, SystemClock
from firmware_py.core.event_line import printable, render
from firmware_py.errors import MonitorError
from firmware_py.link.broker import BrokerSettings, connect, make_client
from firmware_py.station.archive.sqlite import Archive, Gap, Reject, redact
from firmware_py.station.ingest.judge import Accepted, Rejected, judge
from firmware_py.station.ingest.rejects import RejectBudget
from firmware_py.station.ingest.replay import Replay, replay_decision, replay_request, sent_ahead

log = logging.getLogger(__name__)

STATUS_FIELDS = ("online", "door", "lock", "lockdown", "occupancy", "queued")
RED, YELLOW, GREEN, BOLD_RED, RESET = "\033[31m", "\033[33m", "\033[32m", "\033[1;31m", "\033[0m"


def local_timezone() -> tzinfo:
    """The supervisor's machine's own zone, for a monitor given no site: ``$TZ`` or ``/etc/localtime``
    by its IANA name, else the present offset from UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if not name:
        try:
            link = os.readlink("/etc/localtime")
        except OSError:
            link = ""
        name = link.split("zoneinfo/", 1)[1] if "zoneinfo/" in link else ""
    try:
        return ZoneInfo(name) if name else datetime.now().astimezone().tzinfo
    except (ZoneInfoNotFoundError, ValueError):
        return datetime.now().astimezone().tzinfo


class Monitor:
    """The supervisor's live view and archive of one door, one site or all sites.

    ``broker``: where and as whom to connect. ``archive``: the archive file (or an open
    :class:`Archive`). ``site``/``door``: the scope (``door`` needs ``site``; neither = all).
    ``out``: called with each display line (default: the log). ``colour``: ANSI colours
    (alarms bold red). ``beacon_interval_s``: the time beacon's period, ``None`` for none.
    ``replay_interval_s``: the least time between two replay requests to one door (doubling from the
    third request of a gap on). ``max_replay_requests``: replay requests per gap before giving up.
    ``backfill``: a door seen for the first time is archived from seq 1 (replay requested);
    ``False`` starts at the first seq seen. ``clock``: the monitor's wall clock (its ``now()`` for the
    beacon and receipt times; rate limits always run on real time, as the network does).
    ``client_factory``: builds the paho client from ``broker`` (default :func:`make_client`).
    ``command_key``: the station's Ed25519 signing key; replay requests go signed for their door with it.
    """

    def __init__(self, broker: BrokerSettings, archive: str | Path | Archive, *,
                 site: str | None = None, door: str | None = None, prefix: str = "accessctl",
                 out: Callable[[str], None] | None = None, colour: bool = False,
                 beacon_interval_s: float | None = 60.0, replay_interval_s: float = 5.0,
                 max_replay_requests: int = 5, backfill: bool = True, clock: Clock | None = None,
                 client_factory: Callable[[BrokerSettings], mqtt.Client] = make_client, command_key=None):
        if door and not site:
            raise MonitorError("a door is named within a site: give the site as well")
        self.broker = broker
        self.archive = archive if isinstance(archive, Archive) else Archive(archive)
        self._own_archive = not isinstance(archive, Archive)
        self.site, self.door, self.prefix = site, door, prefix
        self.out = out or (lambda line: log.info("%s", line))
        self.colour = colour
        self.beacon_interval_s = beacon_interval_s
        self.replay_interval_s = replay_interval_s
        self.max_replay_requests = max_replay_requests
        self.backfill = backfill
        self.clock = clock or SystemClock(local_timezone())
        self.client_factory = client_factory
        self.command_key = command_key  # the station's signing key: replay requests go signed
        scope = f"{prefix}/{site or '+'}/{door or '+'}"
        self.topic_filters = [f"{scope}/events/#", f"{scope}/status", f"{scope}/occupancy", f"{scope}/cmd/result"]
        self.client: mqtt.Client | None = None
        # the last replay commands sent: id, site, door, from_seq, at
        self.replay_requests: deque[dict] = deque(maxlen=1000)
        self.command_results: dict[str, dict] = {}
        self.beacons_sent = 0
        self._cond = threading.Condition()
        self._connected = False
        self._subscribed = False
        self._listening = False  # subscribed, every filter granted, on this connection
        self._refused: str | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._sites: set[str] = {site} if site else set()
        self._next_beacon: dict[str, float] = {}
        self._last_request: dict[tuple[str, str], float] = {}
        self._requests_outside_gaps: dict[tuple[str, str, int, int], int] = {}  # (site, door, epoch, from_seq)
        self._given_up_outside_gaps: set[tuple[str, str, int, int]] = set()
        self._last_advance: dict[tuple[str, str], float] = {}
        self._contiguous: dict[tuple[str, str], int] = {}
        self._status: dict[tuple[str, str], dict] = {}
        self._occupancy: dict[tuple[str, str], object] = {}
        self._tail_since: dict[tuple[str, str], float] = {}
        self._publishes: dict[int, str] = {}
        self._denied_topics: set[str] = set()
        self._budget = RejectBudget(time.monotonic)

    # ------------------------------------------------------------------ life cycle
    def start(self, *, wait: bool = True, timeout: float = 10.0) -> Monitor:
        """Connect, subscribe and start the beacon; with ``wait``, return once subscribed or raise
        :class:`MonitorError` (refused login, unreachable broker)."""
        self.client = c = self.client_factory(self.broker)
        c.on_connect, c.on_disconnect, c.on_subscribe = self._on_connect, self._on_disconnect, self._on_subscribe
        c.on_message, c.on_publish = self._on_message, self._on_publish
        connect(c, self.broker)
        c.loop_start()
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick_loop, name="monitor-ticker", daemon=True)
        self._ticker.start()
        if wait and not self.wait_until(lambda: self._subscribed or self._refused, timeout):
            self.close()
            raise MonitorError(f"{self.broker.url}: no connection within {timeout:g} s")
        if self._refused:
            reason = self._refused
            self.close()
            who = self.broker.username or "anonymous"
            raise MonitorError(f"{self.broker.url}: the broker refused the monitor ({who}): {reason}")
        return self

    def stop(self) -> None:
        """Disconnect (the broker keeps the session and queues events for the next start).
        The archive stays open for queries until :meth:`close`."""
        self._stop.set()
        if self._ticker:
            self._ticker.join(5)
            self._ticker = None
        if self.client:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None
        with self._cond:
            self._connected = self._subscribed = self._listening = False
            self._refused = None

    def close(self) -> None:
        """Stop, and close the archive if the monitor opened it."""
        self.stop()
        if self._own_archive:
            self.archive.close()

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """Whether the monitor is listening: connected, and every subscription granted on this connection
        (the page says "connected" only then)."""
        return self._connected and self._listening

    # ------------------------------------------------------------------ queries (see Archive for more)
    def events(self, site: str, door: str, *, epoch: int | None = None) -> list[dict]:
        return self.archive.events(site, door, epoch=epoch)

    def last_contiguous(self, site: str, door: str) -> int:
        return self.archive.last_contiguous(site, door)

    def duplicates(self, site: str | None = None, door: str | None = None) -> int:
        return self.archive.duplicates(site, door)

    def gaps(self, site: str | None = None, door: str | None = None, *, open_only: bool = False) -> list[Gap]:
        return self.archive.gaps(site, door, open_only=open_only)

    def anomalies(self, site: str | None = None, door: str | None = None, kind: str | None = None):
        return self.archive.anomalies(site, door, kind)

    def status(self, site: str, door: str) -> dict | None:
        with self._cond:
            return self._status.get((site, door))

    def wait_until(self, predicate: Callable[[], object], timeout: float = 5.0) -> bool:
        """Wait until ``predicate()`` is true, re-checked after every message; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    def wait_for_seq(self, site: str, door: str, seq: int, timeout: float = 5.0, *, contiguous: bool = False) -> bool:
        """Wait until event ``seq`` of the door is archived (with ``contiguous``: and every one before it)."""
        if contiguous:
            return self.wait_until(lambda: self.archive.last_contiguous(site, door) >= seq, timeout)
        return self.wait_until(lambda: self.archive.has(site, door, seq), timeout)

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            with self._cond:
                self._refused = str(reason_code)
                self._cond.notify_all()
            self._show(f"broker refused the connection: {reason_code}", BOLD_RED)
            return
        if self.broker.protocol == 5:  # events with Retain As Published: one published retained shows as such
            client.subscribe([(f, SubscribeOptions(qos=1, retainAsPublished=f.endswith("/events/#")))
                              for f in self.topic_filters])
        else:
            client.subscribe([(f, 1) for f in self.topic_filters])
        with self._cond:
            self._connected = True
            self._next_beacon.clear()  # a beacon right away
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._cond:
            was = self._connected
            self._connected = self._listening = False
            self._cond.notify_all()
        if was and not self._stop.is_set():
            self._show(f"connection to the broker lost ({reason_code}); reconnecting", YELLOW)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        with self._cond:
            self._subscribed = True
            self._listening = self._connected and not refused
            self._cond.notify_all()
        if refused:
            self._show(f"the broker refused a subscription: {', '.join(refused)}", BOLD_RED)
        self._show(f"connected to {self.broker.url} as {self.broker.username or 'anonymous'}; watching "
                   f"{self.prefix}/{self.site or '*'}/{self.door or '*'}", GREEN)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        topic = self._publishes.pop(mid, None)
        if topic and reason_code.is_failure and topic not in self._denied_topics:
            self._denied_topics.add(topic)
            self._show(f"the broker refused our publish to {topic}: {reason_code}", BOLD_RED)

    def _on_message(self, client, userdata, message):
        try:
            self._handle(message.topic, bytes(message.payload), retained=bool(message.retain))
        except Exception:  # a bad message must not stop the monitor; the gap logic recovers lost events
            log.exception("cannot handle the message on %s", message.topic)
        with self._cond:
            self._cond.notify_all()

    # ------------------------------------------------------------------ messages
    def _handle(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        if not topic.startswith(self.prefix + "/"):
            return
        verdict = judge(self.prefix, topic, payload, retained=retained)
        if verdict.site and verdict.site not in self._sites and isinstance(verdict, Accepted):
            with self._cond:
                self._sites.add(verdict.site)
        if isinstance(verdict, Rejected):
            reason, kept = self._budget.keep(verdict.site, verdict.door, verdict.reason, payload)
            self.archive.store_reject(Reject(self._now_text(), verdict.site, verdict.door, verdict.topic, reason,
                                             kept))
            self._alert(verdict.site, verdict.door, f"refused a message on {topic}: {verdict.reason}")
        elif verdict.kind == "event":
            self._handle_event(verdict.site, verdict.door, topic, verdict.value, payload)
        elif verdict.kind in ("status", "occupancy"):
            self._handle_retained(verdict.site, verdict.door, verdict.kind, verdict.value, retained=retained)
        elif verdict.kind == "result":
            self._handle_result(verdict.site, verdict.door, verdict.value)

    def _now_text(self) -> str:
        return self.clock.now().isoformat(timespec="milliseconds")

    def _handle_event(self, site, door, topic, event: dict, payload: bytes) -> None:
        """Archive an event the judge accepted (:mod:`.judge`: its topic, body and vocabulary are checked)."""
        now = self._now_text()
        stored = self.archive.store_event(site, door, topic, payload, event, now, backfill=self.backfill)
        key = (site, door)
        ahead = not stored.duplicate and sent_ahead(event, stored.contiguous)  # a duress before the backlog
        problems = list(stored.anomalies)
        if stored.epoch_changed:
            with self._cond:  # the sequence of another chain: progress is measured afresh
                self._contiguous.pop(key, None)
                self._last_advance.pop(key, None)
        if not stored.duplicate:
            line = render(event, colour=self.colour)  # the event's texts escaped, its colour codes ours
            self._emit(redact(line if self._single_door else f"{printable(site)}/{printable(door)}  {line}"))
        for a in problems:
            self._alert(site, door, a.detail)
        with self._cond:
            if stored.contiguous > self._contiguous.get(key, -1):
                self._contiguous[key] = stored.contiguous
                self._last_advance[key] = time.monotonic()
            if ahead:  # the door's backlog is behind it: give it one interval, as to a moving sequence
                self._last_advance[key] = time.monotonic()
            self._tail_since.pop(key, None)
        if stored.new_gap:
            g = stored.new_gap
            why = f" (#{event['seq']} {event['type']} came ahead of the door's backlog)" if ahead else ""
            self._show(f"{site}/{door} gap: #{g.first_missing}–#{g.last_missing} missing{why}", YELLOW)
        for g in stored.closed_gaps:
            self._show(f"{site}/{door} gap #{g.first_missing}–#{g.last_missing} closed", GREEN)
        if stored.contiguous < stored.expected:
            self._maybe_request_replay(site, door, stored.contiguous + 1,
                                       first=stored.new_gap is not None and not ahead)

    def _handle_retained(self, site, door, kind, value: object, *, retained: bool = False) -> None:
        if value is None:
            return  # a retained message being cleared
        now = self._now_text()
        for a in self.archive.store_status(site, door, kind, value, now, backfill=self.backfill):
            self._alert(site, door, a.detail)
        key = (site, door)
        with self._cond:
            previous = (self._status if kind == "status" else self._occupancy).get(key)
            (self._status if kind == "status" else self._occupancy)[key] = value
        if kind == "status" and isinstance(value, dict):
            if previous is None or any(previous.get(f) != value.get(f) for f in STATUS_FIELDS):
                self._show(f"{site}/{door} {status_text(value)}",
                           RED if value.get("online") is False or value.get("lockdown") else None)
        elif kind == "occupancy" and value != previous:
            self._emit(printable(f"{site}/{door} 在场 inside: {occupancy_text(value)}"))
        if kind == "status" and retained and isinstance(value, dict):
            state = self.archive.door_state(site, door)
            if state:
                self._ask_for_announced_tail(state, value, wait_s=0.0)

    def _handle_result(self, site, door, result: dict) -> None:
        if result["id"] not in {r["id"] for r in self.replay_requests}:
            return
        with self._cond:
            self.command_results[result["id"]] = result
        if not result.get("ok"):
            self._show(f"{site}/{door} refused replay {result['id']}: {result.get('error')}", RED)

    # ------------------------------------------------------------------ replay requests and beacon
    def _maybe_request_replay(self, site: str, door: str, from_seq: int, *, first: bool = False) -> bool:
        """Ask for a replay unless one went to this door within the wait (``replay_interval_s``, doubling
        from a gap's third request on), or (for a retry) the door's sequence advanced within
        ``replay_interval_s`` (a replay is still arriving). After ``max_replay_requests`` for one gap,
        give up on it: say so once and mark it in the archive."""
        key, now = (site, door), time.monotonic()
        gap = self.archive.open_gap_at(site, door, from_seq)
        state = self.archive.door_state(site, door)
        epoch = state.epoch if state else 1
        if (gap and gap.given_up_at) or (not gap and (site, door, epoch, from_seq) in self._given_up_outside_gaps):
            return False
        sent = gap.replay_requests if gap else self._requests_outside_gaps.get((site, door, epoch, from_seq), 0)
        with self._cond:
            decision = replay_decision(sent=sent, now=now, last_request_at=self._last_request.get(key, -1e9),
                                       advanced_at=self._last_advance.get(key, -1e9),
                                       interval_s=self.replay_interval_s, max_requests=self.max_replay_requests,
                                       first=first, held=(self._status.get(key) or {}).get("online") is False)
            if decision is Replay.ASK:
                self._last_request[key] = now
        if decision is Replay.WAIT:
            return False
        if decision is Replay.GIVE_UP:
            lo, hi = (gap.first_missing, gap.last_missing) if gap else (from_seq, from_seq)
            if gap:
                self.archive.give_up_gap(site, door, gap.epoch, gap.first_missing, self._now_text())
            else:
                self._given_up_outside_gaps.add((site, door, epoch, from_seq))
            text = (f"{site}/{door} gave up asking for #{lo}–#{hi}: {sent} replay requests went unanswered "
                    "(a forged seq, or events the door no longer has); the gap stays open in the archive")
            log.warning("%s", printable(text))
            self._show(text, BOLD_RED)
            return False
        if not gap:
            self._requests_outside_gaps[(site, door, epoch, from_seq)] = sent + 1
        request_id, payload = replay_request(from_seq, "monitor", site=site, door=door, key=self.command_key)
        self._publish(f"{self.prefix}/{site}/{door}/cmd", payload, retain=False)
        with self._cond:
            self.replay_requests.append({**json.loads(payload), "site": site, "door": door, "at": self._now_text()})
        self.archive.note_replay_request(site, door, from_seq)
        self._show(f"{site}/{door} asked for a replay from #{from_seq}", YELLOW)
        return True

    def _publish(self, topic: str, payload: str | bytes, *, retain: bool) -> None:
        client = self.client
        if client is None:
            return
        info = client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            if len(self._publishes) > 1000:  # acknowledgements lost with a connection: forget them
                self._publishes.clear()
            self._publishes[info.mid] = topic

    def publish_beacon(self, site: str) -> str:
        """Publish the retained time beacon of ``site`` now; return its payload."""
        payload = json.dumps({"ts": self.clock.now().isoformat(timespec="milliseconds")})
        self._publish(f"{self.prefix}/{site}/time", payload, retain=True)
        self.beacons_sent += 1
        return payload

    def _tick_loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self._tick()
            except Exception:
                log.exception("monitor housekeeping failed")

    def _tick(self) -> None:
        if not self._connected:
            return
        now = time.monotonic()
        if self.beacon_interval_s:
            with self._cond:
                due = [s for s in self._sites if self._next_beacon.get(s, 0) <= now]
                for s in due:
                    self._next_beacon[s] = now + self.beacon_interval_s
            for s in due:
                self.publish_beacon(s)
        for state in self.archive.doors(self.site, self.door):
            key = (state.site, state.door)
            if not self._ask_for_announced_tail(state, self.status(*key) or {}, wait_s=self.replay_interval_s) \
                    and state.has_hole:
                self._maybe_request_replay(*key, state.contiguous + 1)

    def _ask_for_announced_tail(self, state, status: dict, *, wait_s: float) -> bool:
        """When ``status`` announces a ``last_seq`` beyond what the archive expects and nothing is queued
        at the door, record the tail as a gap and ask for it once it has been missing ``wait_s`` (for
        events still in flight). True when such a tail is announced."""
        key, now = (state.site, state.door), time.monotonic()
        last_seq, queued = status.get("last_seq"), status.get("queued", 0)
        if not (isinstance(last_seq, int) and not isinstance(last_seq, bool) and last_seq > state.expected
                and not queued):
            return False
        with self._cond:
            since = self._tail_since.setdefault(key, now)
        if now - since >= wait_s:
            gap = self.archive.note_expected(*key, last_seq, self._now_text(), backfill=self.backfill)
            if gap:
                self._show(f"{key[0]}/{key[1]} gap: #{gap.first_missing}–#{gap.last_missing} "
                           "announced by the door's status but not received", YELLOW)
                self._maybe_request_replay(*key, state.contiguous + 1, first=True)
        return True

    # ------------------------------------------------------------------ display
    @property
    def _single_door(self) -> bool:
        return bool(self.site and self.door)

    def _emit(self, line: str) -> None:
        try:
            self.out(line)
        except Exception:
            log.exception("the monitor's output failed")

    def _show(self, text: str, colour: str | None = None) -> None:
        """Show one line; what it quotes from the broker (topics, names, errors) is escaped first."""
        text = printable(text)
        self._emit(f"{colour}{text}{RESET}" if colour and self.colour else text)

    def _alert(self, site: str, door: str, detail: str) -> None:
        log.warning("%s", printable(f"{site}/{door}: {detail}"))
        self._show(f"!! {site}/{door} INTEGRITY WARNING 完整性告警: {detail}", BOLD_RED)


def status_text(status: dict) -> str:
    online = "在线 online" if status.get("online") else "离线 OFFLINE"
    parts = [online, f"门 door {status.get('door', '?')}", f"锁 lock {status.get('lock', '?')}"]
    if status.get("lockdown"):
        parts.append("封锁 LOCKDOWN")
    parts.append(f"在场 inside {status.get('occupancy', '?')}")
    parts.append(f"待发 queued {status.get('queued', '?')}")
    if "last_seq" in status:
        parts.append(f"last #{status['last_seq']}")
    return "  ".join(parts)


def occupancy_text(value: object) -> str:
    people = value
    if isinstance(value, dict):
        people = next((v for k, v in value.items() if isinstance(v, list)), [])
    if not isinstance(people, list):
        return str(value)
    if not people:
        return "nobody 无人"
    names = [(p.get("name") or p.get("person_id", "?")) if isinstance(p, dict) else str(p) for p in people]
    return f"{len(names)}: " + ", ".join(names)
