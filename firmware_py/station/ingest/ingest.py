"""The station's ingest, for both archives: receive, judge, store, acknowledge, and ask for what is missing.

One class, :class:`Ingest`, does it all over an archive that only stores
(:class:`~firmware_py.station.archive.ingest_store.IngestStore`: the SQLite file or PostgreSQL). It
subscribes to one door, one site or every site under the topic prefix (DESIGN.md "MQTT") through
the station's one MQTT loop (:mod:`.loop`): a persistent session, QoS 1, manual acknowledgements.
Every message is judged once (:func:`~firmware_py.station.ingest.judge.judge`); a batch of what
arrived is stored, and only once the archive says it is durable is the batch acknowledged, so a
station killed or an archive away loses nothing (the broker delivers it again; the archive stores
each (site, door, seq) once). An archive that is away is tried again with a growing wait; a message
whose data it cannot hold is kept in ``ingest_rejects`` instead. Then:

- a refused message (not strict JSON, over 64 KiB, outside the event vocabulary, another door's
  body on this door's topic, an event that arrives retained …) is kept in the archive's
  ``ingest_rejects`` with the reason, shown as an integrity warning, and acknowledged like any other;
- an event is archived, de-duplicated by ``(site, door, seq)``, its hash and its link to the
  archived neighbours checked, and shown as one readable line
  (:func:`firmware_py.core.event_line.render`); a second, different copy of an archived seq is kept
  as evidence (the copy that verifies best stays in the register) and raises an integrity alarm; a
  door whose chain restarts at seq 1 after a database reset is archived as a new epoch;
- a gap in a door's sequence makes the ingest ask that door for a replay on its ``cmd`` topic
  (``{"id", "action": "replay", "from_seq"}``, :mod:`.replay`): at once for a gap just found (a gap
  below an urgent event, which a door sends ahead of its backlog, only once the backlog stopped
  coming for ``replay_interval_s``: :func:`.replay.sent_ahead`), then
  at most once per ``replay_interval_s`` per door, again only if the replay makes no progress, with
  the wait doubling after the second request, never while the door is offline or a backlog is
  still arriving from the broker (the gap may close by itself), and at most
  ``max_replay_requests`` times per gap: then it gives up on that gap with a clear line (a forged
  far-future seq cannot make it ask forever, each request adding a ``command`` event at the door);
- the retained ``status`` and ``occupancy`` of each door are kept and shown when they change; a
  door whose status announces a ``last_seq`` the archive lacks, with nothing queued, is asked for
  the missing tail: at once when the status came retained on a new session (events published before
  the first subscription were queued for nobody), else once it has been missing one
  ``replay_interval_s`` and the door's sequence has not grown for as long (the events may still be
  in flight, or queued by the broker for the station's session). The status's
  ``last_seq``/``last_hash`` is the chain head the door published: the archive keeps it, and a
  status whose head went back (the log was cut or reset) or names another hash raises an alarm;
- a door's answer to a replay request (``cmd/result``) is kept; a refusal is shown.

It also publishes the time beacon (GB 50396 5.1.3): a retained ``{prefix}/{site}/time``
``{"ts": ISO 8601 with offset}`` from its own clock every ``beacon_interval_s`` for each site it
has seen. Topics and payloads are archived exactly as the broker delivers them, so
``mosquitto_sub`` sees what the station archived.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import paho.mqtt.client as mqtt

from firmware_py.core.clock import Clock, SystemClock
from firmware_py.core.event_line import printable, render
from firmware_py.core.events import describe_untrusted
from firmware_py.errors import MonitorError
from firmware_py.link.broker import BrokerSettings, make_client
from firmware_py.station.archive.ingest_store import ArchiveAway, IngestStore, Message, Progress, Written
from firmware_py.station.archive.open import open_ingest_store
from firmware_py.station.archive.sqlite import Archive, Gap, redact
from firmware_py.station.ingest.judge import Rejected
from firmware_py.station.ingest.loop import BrokerLoop, Judged, Received
from firmware_py.station.ingest.replay import Replay, replay_decision, replay_request, sent_ahead

log = logging.getLogger(__name__)

REPLAY_INTERVAL_S = 5.0
MAX_REPLAY_REQUESTS = 5
TICK_S = 0.2  # the beacon and the replay requests are looked after this often
RETRY_S = (0.5, 10.0)  # the archive is away: first and longest wait before trying again
STATUS_FIELDS = ("online", "door", "lock", "lockdown", "occupancy", "queued")
RED, YELLOW, GREEN, BOLD_RED, RESET = "\033[31m", "\033[33m", "\033[32m", "\033[1;31m", "\033[0m"


def local_timezone() -> tzinfo:
    """The supervisor's machine's own zone, for an ingest given no clock: ``$TZ`` or ``/etc/localtime``
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


class Ingest:
    """The station's live view and archive of one door, one site or all sites (see the module docstring).

    ``broker``: where and as whom to connect (its ``client_id`` names the persistent session).
    ``archive``: an SQLite file, an open :class:`Archive`, ``postgresql://…``, or an
    :class:`IngestStore`. ``site``/``door``: the scope (``door`` needs ``site``; neither = all).
    ``out``: called with each display line (default: the log; each event and occupancy at DEBUG, the
    doors' status changes at INFO, warnings above). ``colour``: ANSI colours
    (alarms bold red). ``beacon_interval_s``: the time beacon's period, ``None`` or 0 for none.
    ``replay_interval_s``: the least time between two replay requests to one door (doubling from the
    third request of a gap on). ``max_replay_requests``: replay requests per gap before giving up.
    ``backfill`` (SQLite): a door seen for the first time is archived from seq 1 (replay requested);
    ``False`` starts at the first seq seen. ``clock``: the ingest's wall clock (its ``now()`` for the
    beacon and receipt times; rate limits always run on real time, as the network does).
    ``client_factory``: builds the paho client from ``broker`` (default :func:`make_client`).
    ``command_key``: the station's Ed25519 signing key; replay requests go signed for their door with it.
    """

    def __init__(self, broker: BrokerSettings, archive: str | Path | Archive | IngestStore, *,
                 site: str | None = None, door: str | None = None, prefix: str = "accessctl",
                 out: Callable[[str], None] | None = None, colour: bool = False,
                 beacon_interval_s: float | None = 60.0, replay_interval_s: float = REPLAY_INTERVAL_S,
                 max_replay_requests: int = MAX_REPLAY_REQUESTS, backfill: bool = True, clock: Clock | None = None,
                 client_factory: Callable[[BrokerSettings], mqtt.Client] = make_client, command_key=None):
        if door and not site:
            raise MonitorError("a door is named within a site: give the site as well")
        self.broker = broker
        given = hasattr(archive, "write")
        self.store: IngestStore = archive if given else open_ingest_store(archive, backfill=backfill)
        self._own_store = not given
        self.site, self.door, self.prefix = site, door, prefix
        self.out = out or (lambda line: log.info("%s", line))
        self._quiet = out is None  # lines go to the log: made only when it shows INFO
        self.colour = colour
        self.beacon_interval_s = beacon_interval_s
        self.replay_interval_s = replay_interval_s
        self.max_replay_requests = max_replay_requests
        self.clock = clock or SystemClock(local_timezone())
        self.command_key = command_key  # the station's signing key: replay requests go signed
        scope = f"{prefix}/{site or '+'}/{door or '+'}"
        self.topic_filters = [f"{scope}/events/#", f"{scope}/status", f"{scope}/occupancy", f"{scope}/cmd/result"]
        self.committed: list[Callable[[list[Message], float], None]] = []  # called after each durable batch
        self.stored = self.duplicates = self.conflicts = self.rejected = 0
        self.replays_requested = 0
        # the last replay commands sent: id, site, door, from_seq, at
        self.replay_requests: deque[dict] = deque(maxlen=1000)
        self.command_results: dict[str, dict] = {}  # the doors' answers to them, by id
        self.beacons_sent = 0
        self.loop = BrokerLoop(broker, prefix, self.topic_filters, handle=self._handle_batch,
                               housekeeping=self._housekeeping, now=self._now_text,
                               on_connection=self._on_connection, client_factory=client_factory, name="ingest")
        self._cond = self.loop.cond
        self._sites: set[str] = {site} if site else set()
        self._next_beacon: dict[str, float] = {}
        self._ticked_at = 0.0
        self._down_since: float | None = None
        self._last_request: dict[tuple[str, str], float] = {}
        self._requests_outside_gaps: dict[tuple[str, str, int, int], int] = {}  # (site, door, epoch, from_seq)
        self._given_up_outside_gaps: set[tuple[str, str, int, int]] = set()
        self._last_advance: dict[tuple[str, str], float] = {}
        self._contiguous: dict[tuple[str, str], int] = {}
        self._status: dict[tuple[str, str], dict] = {}
        self._occupancy: dict[tuple[str, str], object] = {}
        self._tail_since: dict[tuple[str, str], float] = {}

    # ------------------------------------------------------------------ life cycle
    def start(self, *, wait: bool = True, timeout: float = 10.0) -> Ingest:
        """Open the archive (:class:`StoreError` when it cannot be), connect, subscribe and start the
        beacon; with ``wait``, return once subscribed or raise :class:`MonitorError` (refused login,
        unreachable broker)."""
        self.store.open()
        self.loop.start()
        if wait and not self.wait_until(lambda: self.loop.subscribed or self.loop.refused, timeout):
            self.close()
            raise MonitorError(f"{self.broker.url}: no connection within {timeout:g} s")
        if self.loop.refused:
            reason = self.loop.refused
            self.close()
            who = self.broker.username or "anonymous"
            raise MonitorError(f"{self.broker.url}: the broker refused the station ({who}): {reason}")
        return self

    def stop(self) -> None:
        """Disconnect: what was received and not yet stored stays unacknowledged, and the broker keeps
        the session, queueing events for the next start. The archive stays open until :meth:`close`."""
        self.loop.stop()

    def close(self) -> None:
        """Stop, and close the archive if the ingest opened it."""
        self.stop()
        if self._own_store:
            self.store.close()

    def __enter__(self) -> Ingest:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def client(self) -> mqtt.Client | None:
        """The paho client the web page publishes door commands through (None when stopped)."""
        return self.loop.client

    @property
    def connected(self) -> bool:
        """Whether the ingest is listening: connected, and every subscription granted on this connection
        (the page says "connected" only then; door commands need it)."""
        return self.loop.connected and self.loop.listening

    def wait_connected(self, timeout: float) -> bool:
        """Whether, within ``timeout`` seconds, the ingest was connected and subscribed."""
        return self.wait_until(lambda: self.connected, timeout)

    # ------------------------------------------------------------------ queries (see the archive for more)
    @property
    def archive(self):
        """The archive itself, for queries (an SQLite :class:`Archive` or a PostgreSQL archive)."""
        return self.store.archive

    def events(self, site: str, door: str, *, epoch: int | None = None) -> list[dict]:
        return self.archive.events(site, door, epoch=epoch)

    def last_contiguous(self, site: str, door: str) -> int:
        found = self.store.progress(site, door)
        return found[0].contiguous if found else 0

    def gaps(self, site: str | None = None, door: str | None = None, *, open_only: bool = False) -> list[Gap]:
        return self.archive.gaps(site, door, open_only=open_only)

    def anomalies(self, site: str | None = None, door: str | None = None, kind: str | None = None):
        return self.archive.anomalies(site, door, kind)

    def verified(self, site: str, door: str) -> tuple[int, str | None]:
        """(the last seq verified, the break found or None) of a door's current chain."""
        return self.store.verified(site, door)

    def status(self, site: str, door: str) -> dict | None:
        with self._cond:
            return self._status.get((site, door))

    def wait_until(self, predicate: Callable[[], object], timeout: float = 5.0) -> bool:
        """Wait until ``predicate()`` is true, re-checked after every batch; False on timeout."""
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
            return self.wait_until(lambda: self.last_contiguous(site, door) >= seq, timeout)
        return self.wait_until(lambda: self.archive.has(site, door, seq), timeout)

    # ------------------------------------------------------------------ the broker
    def _on_connection(self, state: str, detail: str) -> None:
        if state == "refused":
            self._show(f"broker refused the connection ({self.broker.url}): {detail}", BOLD_RED, level=logging.ERROR)
        elif state == "lost":
            self._show(f"connection to the broker lost ({self.broker.url}: {detail}); reconnecting", YELLOW,
                       level=logging.WARNING)
        elif state == "publish refused":
            self._show(f"the broker refused our publish to {detail}", BOLD_RED, level=logging.ERROR)
        elif state == "listening":
            with self._cond:
                self._next_beacon.clear()  # a beacon right away
            if detail:
                self._show(f"the broker refused a subscription ({self.broker.url}): {detail}", BOLD_RED,
                           level=logging.ERROR)
            self._show(f"connected to {self.broker.url} as {self.broker.username or 'anonymous'}; watching "
                       f"{self.prefix}/{self.site or '*'}/{self.door or '*'}", GREEN)

    # ------------------------------------------------------------------ messages
    def _handle(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        """Judge and store one message, as the loop does a batch (tests feed messages through here)."""
        self.loop.step([Received(0, 0, 0, topic, payload, self._now_text(), retained)])

    def _handle_batch(self, batch: list[Judged]) -> bool:
        """Store a judged batch; True once it is durable (the loop then acknowledges it), False when
        the ingest stopped while the archive was away (nothing acknowledged)."""
        messages: list[Message] = []
        retained: list[Message] = []
        for j in batch:
            v, r = j.verdict, j.received
            if isinstance(v, Rejected):
                messages.append(Message("reject", v.site, v.door, v.topic, j.kept, None, r.received_at, v.reason))
                continue
            if v.site not in self._sites:
                with self._cond:
                    self._sites.add(v.site)
            if v.kind == "result":
                self._handle_result(v.site, v.door, v.value)
                continue
            messages.append(Message(v.kind, v.site, v.door, r.topic, r.payload, v.value, r.received_at))
            if r.retain:
                retained.append(messages[-1])
        written = self._write(messages)
        if written is None:
            return False
        self.stored += written.stored
        self.duplicates += written.duplicates
        self.conflicts += written.conflicts
        self.rejected += len(written.rejected)
        try:
            self._follow(messages, written, retained)
        except Exception:  # stored: what follows (lines, replay requests) must not keep it unacknowledged
            log.exception("cannot follow up a stored batch")
        if self.committed:
            now = time.time()
            stored = [o.message for o in written.events]
            for hook in self.committed:
                hook(stored, now)
        return True

    def _write(self, messages: list[Message]) -> Written | None:
        """Store the batch, trying again (with a growing wait) while the archive is away; None if the
        ingest stops first."""
        wait = RETRY_S[0]
        while True:
            try:
                written = self.store.write(messages)
            except ArchiveAway as exc:
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.error("cannot store in the archive (%s); nothing is acknowledged, retrying", exc)
                if self.loop.wait(wait):
                    return None
                wait = min(wait * 2, RETRY_S[1])
                continue
            if self._down_since is not None:
                log.warning("the archive is back after %.1f s", time.monotonic() - self._down_since)
                self._down_since = None
            return written

    def _follow(self, messages: list[Message], written: Written, retained: list[Message]) -> None:
        """What follows a stored batch: warnings, lines, status heads, replay requests."""
        for m in written.rejected:
            log.warning("rejected a message on %s: %s (%s)", m.topic, m.reason, describe_untrusted(m.payload))
            if not self._quiet:
                self._emit(printable(f"!! {m.site}/{m.door} INTEGRITY WARNING 完整性告警: refused a message on "
                                     f"{m.topic}: {m.reason}"), BOLD_RED)
        for a in written.anomalies:
            self._alert(a.site, a.door, a.detail)
        last: dict[tuple[str, str], object] = {}  # each door's last stored event of the batch
        new_gap: set[tuple[str, str]] = set()
        for o in written.events:
            key = (o.message.site, o.message.door)
            ahead = self._follow_event(o)
            last[key] = o
            if o.new_gap and not ahead:  # a hole below a duress sent ahead of its backlog is not news yet
                new_gap.add(key)
        for key, o in last.items():
            if o.contiguous < o.expected:
                self._maybe_request_replay(*key, o.epoch, o.contiguous + 1, first=key in new_gap)
        for m in messages:
            if m.kind in ("status", "occupancy") and m.value is not None:
                self._follow_state(m, retained=m in retained)

    def _follow_event(self, o) -> bool:
        """Lines and the door's progress after one stored event; whether it came ahead of its backlog."""
        site, door, event = o.message.site, o.message.door, o.message.value
        key = (site, door)
        ahead = not o.duplicate and sent_ahead(event, o.contiguous)  # a duress before the door's backlog
        if o.epoch_changed:
            with self._cond:  # the sequence of another chain: progress is measured afresh
                self._contiguous.pop(key, None)
                self._last_advance.pop(key, None)
        if not o.duplicate and (not self._quiet or log.isEnabledFor(logging.DEBUG)):
            line = render(event, colour=self.colour)  # the event's texts escaped, its colour codes ours
            self._record(redact(line if self._single_door else f"{printable(site)}/{printable(door)}  {line}"))
        for a in o.anomalies:
            self._alert(site, door, a.detail)
        with self._cond:
            if o.contiguous > self._contiguous.get(key, -1):
                self._contiguous[key] = o.contiguous
                self._last_advance[key] = time.monotonic()
            if ahead:  # the door's backlog is behind it: give it one interval, as to a moving sequence
                self._last_advance[key] = time.monotonic()
            self._tail_since.pop(key, None)
        if o.new_gap:
            g = o.new_gap
            why = f" (#{event['seq']} {event['type']} came ahead of the door's backlog)" if ahead else ""
            self._show(f"{site}/{door} gap: #{g.first_missing}–#{g.last_missing} missing{why}", YELLOW)
        for g in o.closed_gaps:
            self._show(f"{site}/{door} gap #{g.first_missing}–#{g.last_missing} closed", GREEN)
        return ahead

    def _follow_state(self, m: Message, *, retained: bool) -> None:
        site, door, kind, value = m.site, m.door, m.kind, m.value
        key = (site, door)
        with self._cond:
            previous = (self._status if kind == "status" else self._occupancy).get(key)
            (self._status if kind == "status" else self._occupancy)[key] = value
        if kind == "status" and isinstance(value, dict):
            if previous is None or any(previous.get(f) != value.get(f) for f in STATUS_FIELDS):
                self._show(f"{site}/{door} {status_text(value)}",
                           RED if value.get("online") is False or value.get("lockdown") else None)
        elif kind == "occupancy" and value != previous:
            self._record(printable(f"{site}/{door} 在场 inside: {occupancy_text(value)}"))
        if kind == "status" and retained and isinstance(value, dict):
            # on a session the broker kept, what the door published meanwhile is still to come; on a new
            # one it was queued for nobody: ask at once
            wait_s = self.replay_interval_s if self.loop.session_present else 0.0
            for p in self.store.progress(site, door):
                self._ask_for_announced_tail(p, value, wait_s=wait_s)

    def _handle_result(self, site, door, result: dict) -> None:
        """A door's answer to a command: kept and, when it refuses a replay this station asked for, shown."""
        if result["id"] not in {r["id"] for r in self.replay_requests}:
            return  # the page's own commands, or somebody else's
        with self._cond:
            self.command_results[result["id"]] = result
        if not result.get("ok"):
            self._show(f"{site}/{door} refused replay {result['id']}: {result.get('error')}", RED,
                       level=logging.WARNING)

    # ------------------------------------------------------------------ replay requests and beacon
    def _maybe_request_replay(self, site: str, door: str, epoch: int, from_seq: int, *, first: bool = False) -> bool:
        """Ask for a replay unless one went to this door within the wait (``replay_interval_s``, doubling
        from a gap's third request on), or (for a retry) the door's sequence advanced within
        ``replay_interval_s`` (a replay is still arriving), or the door is offline, or a backlog is
        arriving. After ``max_replay_requests`` for one gap, give up on it: say so once and mark it in
        the archive."""
        key, now = (site, door), time.monotonic()
        gap = self.store.gap_at(site, door, from_seq)
        hole = (site, door, epoch, from_seq)
        if (gap and gap.given_up_at) or (not gap and hole in self._given_up_outside_gaps):
            return False
        sent = gap.replay_requests if gap else self._requests_outside_gaps.get(hole, 0)
        with self._cond:
            held = (self._status.get(key) or {}).get("online") is False \
                or now - self.loop.backlog_seen_at < self.replay_interval_s
            decision = replay_decision(sent=sent, now=now, last_request_at=self._last_request.get(key, -1e9),
                                       advanced_at=self._last_advance.get(key, -1e9),
                                       interval_s=self.replay_interval_s, max_requests=self.max_replay_requests,
                                       first=first, held=held)
            if decision is Replay.ASK:
                self._last_request[key] = now
        if decision is Replay.WAIT:
            return False
        if decision is Replay.GIVE_UP:
            lo, hi = (gap.first_missing, gap.last_missing) if gap else (from_seq, from_seq)
            if gap:
                self.store.give_up_gap(site, door, gap.epoch, gap.first_missing, self._now_text())
            else:
                self._given_up_outside_gaps.add(hole)
            text = (f"{site}/{door} gave up asking for #{lo}–#{hi}: {sent} replay requests went unanswered "
                    "(a forged seq, or events the door no longer has); the gap stays open in the archive")
            self._show(text, BOLD_RED, level=logging.WARNING)
            return False
        if not gap:
            if len(self._requests_outside_gaps) > 100_000:  # forged seqs cannot grow this for ever
                self._requests_outside_gaps.clear()
            self._requests_outside_gaps[hole] = sent + 1
        request_id, payload = replay_request(from_seq, "station", site=site, door=door, key=self.command_key)
        self._publish(f"{self.prefix}/{site}/{door}/cmd", payload, retain=False)
        with self._cond:
            self.replay_requests.append({**json.loads(payload), "site": site, "door": door, "at": self._now_text()})
            self.replays_requested += 1
        self.store.note_replay_request(site, door, from_seq)
        self._show(f"{site}/{door}: asked for a replay from #{from_seq}", YELLOW)
        return True

    def _publish(self, topic: str, payload: str | bytes, *, retain: bool) -> None:
        self.loop.publish(topic, payload, retain=retain)

    def publish_beacon(self, site: str) -> str:
        """Publish the retained time beacon of ``site`` now; return its payload."""
        payload = json.dumps({"ts": self.clock.now().isoformat(timespec="milliseconds")})
        self._publish(f"{self.prefix}/{site}/time", payload, retain=True)
        self.beacons_sent += 1
        return payload

    def _housekeeping(self) -> None:
        """Between batches, at most every :data:`TICK_S`: the archive's own, the beacon, the replay requests."""
        now = time.monotonic()
        if now - self._ticked_at >= TICK_S:
            self._ticked_at = now
            self._tick()

    def _tick(self) -> None:
        try:
            self.store.housekeeping()
        except ArchiveAway as exc:
            log.warning("the archive's housekeeping failed (%s); will try again", exc)
        if not self.loop.connected:
            return
        now = time.monotonic()
        if self.beacon_interval_s:
            with self._cond:
                due = [s for s in self._sites if self._next_beacon.get(s, 0) <= now]
                for s in due:
                    self._next_beacon[s] = now + self.beacon_interval_s
            for s in due:
                self.publish_beacon(s)
        for p in self.store.progress(self.site, self.door):
            if not self._ask_for_announced_tail(p, self.status(p.site, p.door) or {}, wait_s=self.replay_interval_s) \
                    and p.has_hole:
                self._maybe_request_replay(p.site, p.door, p.epoch, p.contiguous + 1)

    def _ask_for_announced_tail(self, p: Progress, status: dict, *, wait_s: float) -> bool:
        """When ``status`` announces a ``last_seq`` beyond what the archive expects and nothing is queued
        at the door, record the tail as a gap and ask for it once it has been missing ``wait_s`` (for
        events still in flight). True when such a tail is announced."""
        key, now = (p.site, p.door), time.monotonic()
        last_seq, queued = status.get("last_seq"), status.get("queued", 0)
        if not (isinstance(last_seq, int) and not isinstance(last_seq, bool) and last_seq > p.expected
                and not queued):
            return False
        with self._cond:
            since = self._tail_since.setdefault(key, now)
        if now - since >= wait_s:
            gap = self.store.note_expected(*key, last_seq, self._now_text())
            if gap:
                self._show(f"{key[0]}/{key[1]} gap: #{gap.first_missing}–#{gap.last_missing} "
                           "announced by the door's status but not received", YELLOW)
                self._maybe_request_replay(*key, gap.epoch, p.contiguous + 1, first=wait_s == 0.0)
        return True

    # ------------------------------------------------------------------ display
    def _now_text(self) -> str:
        return self.clock.now().isoformat(timespec="milliseconds")

    @property
    def _single_door(self) -> bool:
        return bool(self.site and self.door)

    def _emit(self, line: str, colour: str | None = None) -> None:
        if colour and self.colour:
            line = f"{colour}{line}{RESET}"
        try:
            self.out(line)
        except Exception:
            log.exception("the ingest's output failed")

    def _record(self, line: str) -> None:
        """One line of what the doors did (an event, who is inside): shown, or logged at DEBUG when the
        lines go to the log (a station's log is not its archive)."""
        if self._quiet:
            log.debug("%s", line)
        else:
            self._emit(line)

    def _show(self, text: str, colour: str | None = None, *, level: int = logging.INFO) -> None:
        """Show one line, logged as well at ``level`` above INFO (once, when the lines go to the log);
        what it quotes from the broker (topics, names, errors) is escaped first."""
        if self._quiet and not log.isEnabledFor(level):
            return
        text = printable(text)
        if self._quiet or level > logging.INFO:
            log.log(level, "%s", text)
        if not self._quiet:
            self._emit(text, colour)

    def _alert(self, site: str, door: str, detail: str) -> None:
        """An integrity warning: logged, and shown as a line of its own."""
        log.warning("%s", printable(f"{site}/{door}: {detail}"))
        if not self._quiet:
            self._emit(printable(f"!! {site}/{door} INTEGRITY WARNING 完整性告警: {detail}"), BOLD_RED)


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
