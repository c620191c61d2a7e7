"""The station's ingest into the PostgreSQL archive: commit first, then acknowledge.

The station reads every door's events from the broker with a persistent session (clean session
off, QoS 1), so the broker keeps what arrives while the station is away. paho runs with manual
acknowledgements (``manual_ack``): a message is acknowledged to the broker only after the batch
holding it was committed to PostgreSQL. A station killed, or a PostgreSQL that went away,
therefore loses nothing: what was not acknowledged is delivered again (a RabbitMQ quorum queue
requeues it; Mosquitto resends it), and the archive stores each (site, door, seq) once
(:meth:`~firmware_py.station.archive.pg.PgArchive.store_events`).

Threads: paho's network thread only queues what arrives; one writer thread takes what has
arrived (up to :data:`BATCH_MAX`), validates it, stores the batch in one transaction, advances
each door's hash chain, acknowledges, and between batches asks doors with a gap for a replay
and publishes the time beacon. Acknowledgements carry the connection they belong to: a
message ids of a connection that dropped meanwhile may name other messages on the next one, so
those are never acknowledged (the broker delivers the messages again).

Each door's chain (:class:`DoorChain`) is verified as it grows: the hash of every event and its
link to the previous one, from seq 1. A door whose log was reset starts a new epoch (the archive
decides, by the SQLite archive's rule); the ingest then verifies the door's current epoch. Each
status's ``last_seq``/``last_hash`` is checked against the archive
(:meth:`~firmware_py.station.archive.pg.PgArchive.store_status`): a head that went back or names
another hash is kept in ``anomalies`` and logged, as the SQLite monitor does. A missing seq is a
gap: after :data:`REPLAY_INTERVAL_S` without progress (and without a backlog arriving from the
broker, and counting an urgent event that came ahead of its door's backlog as progress: see
:func:`~firmware_py.station.ingest.replay.sent_ahead`) the door is asked for a replay on
``{prefix}/{site}/{door}/cmd``
(``{"id", "action": "replay", "from_seq"}``), again with a doubling wait, at most
:data:`MAX_REPLAY_REQUESTS` times per gap. The same is asked when the door's status announces
events (``last_seq``) the archive lacks while nothing is queued at the door. How far each chain
is verified is kept in ``door_chains`` (per epoch) so a restarted station picks up where it was;
every door seen, with its last retained status and occupancy, in ``door_state`` (the web page's
door tiles); malformed messages are kept, with the reason, in ``ingest_rejects`` (audited,
acknowledged, never stored as events).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg
from paho.mqtt.subscribeoptions import SubscribeOptions

from firmware_py.core.event_line import printable
from firmware_py.core.events import GENESIS_HASH, describe_untrusted, event_hash
from firmware_py.errors import StoreError
from firmware_py.link.broker import BrokerSettings, connect, make_client
from firmware_py.station.archive.pg import INGEST_SCHEMA, DataRefused, Incoming, Ingested, PgArchive
from firmware_py.station.config import safe_url
from firmware_py.station.ingest.chain import DoorChain
from firmware_py.station.ingest.judge import Rejected, judge, parse_topic
from firmware_py.station.ingest.rejects import RejectBudget
from firmware_py.station.ingest.replay import Replay, replay_decision, replay_request, sent_ahead

log = logging.getLogger(__name__)

BATCH_MAX = 1000  # events stored per transaction, at most
BATCH_WAIT_S = 0.005  # after the first message, gather what else arrives this quickly
REPLAY_INTERVAL_S = 5.0
BACKLOG_BATCH = 50  # a batch this large means the broker holds a backlog: gaps may close by themselves
MAX_REPLAY_REQUESTS = 5
CHAIN_SAVE_S = 1.0  # how often the verified chain heads are written (they can be recomputed)
RETRY_S = (0.5, 10.0)  # PostgreSQL unreachable: first and longest wait before trying again



@dataclass(frozen=True)
class Received:
    """One message as paho delivered it, with the connection (``generation``) it came on."""

    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    received_at: str
    retain: bool = False


class PgIngest:
    """Read every door's events from the broker into a PostgreSQL archive (see the module docstring).

    :param broker: how to reach the broker (:class:`~firmware_py.link.broker.BrokerSettings`;
        its ``client_id`` names the persistent session the broker keeps for the station).
    :param url: the archive, ``postgresql://…``.
    :param prefix: the doors' topic prefix.
    :param beacon_interval_s: publish each site's time beacon this often; 0 for none.
    """

    def __init__(self, broker: BrokerSettings, url: str, *, prefix: str = "accessctl",
                 beacon_interval_s: float = 60.0, replay_interval_s: float = REPLAY_INTERVAL_S,
                 max_replay_requests: int = MAX_REPLAY_REQUESTS, command_key=None):
        self.broker = broker
        self.command_key = command_key  # the station's signing key: replay requests go signed
        self.url = url
        self.prefix = prefix
        self.beacon_interval_s = beacon_interval_s
        self.replay_interval_s = replay_interval_s
        self.max_replay_requests = max_replay_requests
        self.committed: list[Callable[[list[Incoming], float], None]] = []  # called after each commit
        self.stored = self.duplicates = self.conflicts = self.rejected = 0
        self.replays_requested = 0
        self.replay_requests: deque[str] = deque(maxlen=1000)  # ids of the last replay commands sent
        self.command_results: dict[str, dict] = {}  # the doors' answers to them, by id
        self.chains: dict[tuple[str, str], DoorChain] = {}
        self._archive: PgArchive | None = None
        self._db: psycopg.Connection | None = None
        self._inbox: queue.Queue[Received] = queue.Queue()
        self._generation = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = None
        self._sites: dict[str, float] = {}  # site -> next beacon (monotonic)
        self._chains_saved_at = 0.0
        self._backlog_seen_at = 0.0
        self._down_since: float | None = None
        self._budget = RejectBudget(time.monotonic)

    # ------------------------------------------------------------------ life cycle

    def start(self) -> PgIngest:
        """Open the archive (raises :class:`StoreError` when it cannot), connect in the background."""
        self._open_archive()
        c = self._client = make_client(self.broker)
        c.manual_ack_set(True)
        c.on_connect, c.on_disconnect, c.on_message = self._on_connect, self._on_disconnect, self._on_message
        c.on_subscribe = self._on_subscribe
        connect(c, self.broker)  # the persistent session, with its expiry on MQTT 5
        c.loop_start()
        self._thread = threading.Thread(target=self._run, name="pg-ingest", daemon=True)
        self._thread.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        """Whether, within ``timeout`` seconds, the station was connected and subscribed."""
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        """Whether the broker session is up and subscribed (the web page shows it; door commands need it)."""
        return self._connected.is_set()

    @property
    def client(self):
        """The paho client the web page publishes door commands through (None before :meth:`start`)."""
        return self._client

    def close(self) -> None:
        """Stop: what was received and not yet committed stays unacknowledged (the broker keeps it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        self._close_archive()

    # ------------------------------------------------------------------ paho's network thread

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("the broker %s refused the station: %s", self.broker.url, reason_code)
            return
        with self._lock:
            self._generation += 1
        filters = [f"{self.prefix}/+/+/{kind}" for kind in ("events/#", "status", "occupancy", "cmd/result")]
        if self.broker.protocol == 5:  # events with Retain As Published: one published retained shows as such
            client.subscribe([(f, SubscribeOptions(qos=1, retainAsPublished=f.endswith("/events/#"))) for f in filters])
        else:
            client.subscribe([(f, 1) for f in filters])
        log.info("ingest connected to %s (session %s present: %s)", self.broker.url, client._client_id.decode(),
                 getattr(flags, "session_present", "?"))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        # Connected for the page (and the tests) once the broker routes the doors' messages to us.
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("the broker %s refused the station's subscriptions: %s", self.broker.url, ", ".join(refused))
            return
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self._generation += 1
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("ingest lost the broker %s (%s); reconnecting", self.broker.url, reason_code)

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            generation = self._generation
        now = datetime.now().astimezone().isoformat(timespec="milliseconds")
        self._inbox.put(Received(generation, message.mid, message.qos, message.topic, bytes(message.payload), now,
                                 bool(message.retain)))

    # ------------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._take()
                if batch:
                    self._ingest(batch)
                self._housekeeping()
            except Exception:  # a bug must not end the ingest: nothing was acknowledged
                log.exception("ingest step failed; going on")
                time.sleep(RETRY_S[0])

    def _take(self) -> list[Received]:
        try:
            batch = [self._inbox.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + BATCH_WAIT_S
        while len(batch) < BATCH_MAX:
            try:
                batch.append(self._inbox.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _ingest(self, batch: list[Received]) -> None:
        if len(batch) >= BACKLOG_BATCH:
            self._backlog_seen_at = time.monotonic()
        events: list[Incoming] = []
        statuses: list[tuple[str, str, dict, str]] = []  # (site, door, status, received_at), in order
        rejects: list[tuple[str, Rejected, bytes]] = []  # (received_at, verdict, payload kept)
        states: dict[tuple[str, str, str], tuple[str | None, str]] = {}  # (site, door, kind) -> (JSON, at)
        for r in batch:
            try:
                verdict = judge(self.prefix, r.topic, r.payload, retained=r.retain)
                if isinstance(verdict, Rejected):
                    rejects.append(self._reject(r.received_at, verdict, r.payload))
                    log.warning("rejected a message on %s: %s (%s)", verdict.topic, verdict.reason,
                                describe_untrusted(r.payload))
                elif verdict.kind == "event":
                    events.append(Incoming(verdict.site, verdict.door, r.topic, r.payload, verdict.value,
                                           r.received_at))
                elif verdict.kind == "result":
                    self._on_result(verdict.site, verdict.door, verdict.value)
                else:  # status or occupancy (None: the retained message was cleared)
                    if verdict.kind == "status" and verdict.value is not None:
                        self._on_status(verdict.site, verdict.door, verdict.value)
                        statuses.append((verdict.site, verdict.door, verdict.value, r.received_at))
                    text = None if verdict.value is None else json.dumps(verdict.value, ensure_ascii=False)
                    states[(verdict.site, verdict.door, verdict.kind)] = (text, r.received_at)
            except Exception as exc:  # a defect met by one message: that message is refused, the batch goes on
                log.exception("cannot handle the message on %s", r.topic)
                where = parse_topic(self.prefix, r.topic)
                rejects.append(self._reject(r.received_at, Rejected(
                    printable(where.site), printable(where.door), printable(r.topic),
                    f"the station could not handle it: {type(exc).__name__}"), r.payload))
        stored = self._store(events, rejects, states, statuses)
        if stored is None:
            return  # stopping: nothing acknowledged, the broker delivers it again
        touched: dict[tuple[str, str], DoorChain] = {}
        for item, epoch in stored:
            site, door = item.site, item.door
            chain = touched.get((site, door)) or touched.setdefault((site, door), self._chain(site, door))
            if chain.epoch == epoch:  # the page verifies the door's current chain; an older one stays as it was
                chain.add(*_link(item.event))
                if sent_ahead(item.event, chain.verified_to):  # a duress before the door's backlog
                    chain.advanced_at = time.monotonic()  # the backlog is behind it: wait, as for a moving chain
        for chain in touched.values():
            chain.advance()
        now = time.time()
        for hook in self.committed:
            hook(events, now)
        with self._lock:
            generation = self._generation
        for r in batch:
            if r.generation == generation and r.qos > 0:
                self._client.ack(r.mid, r.qos)

    def _reject(self, received_at: str, verdict: Rejected, payload: bytes) -> tuple[str, Rejected, bytes]:
        """A refused message as ``ingest_rejects`` keeps it (its payload within the door's budget)."""
        reason, kept = self._budget.keep(verdict.site, verdict.door, verdict.reason, payload)
        return received_at, Rejected(verdict.site, verdict.door, verdict.topic, reason), kept

    def _store(self, events: list[Incoming], rejects: list[tuple[str, Rejected, bytes]],
               states: dict[tuple[str, str, str], tuple[str | None, str]] | None = None,
               statuses: list[tuple[str, str, dict, str]] = ()) -> list[tuple[Incoming, int]] | None:
        """Commit the batch, retrying (with a growing wait) while PostgreSQL is away; None if stopped first.

        Returns the events stored, each with its epoch; then checks the head each status publishes
        (:meth:`PgArchive.store_status`, as the SQLite archive does). When PostgreSQL refuses the batch's data
        (:class:`DataRefused`: not an outage, the same batch would fail again), the events are stored
        one by one and each one refused goes to ``ingest_rejects`` with PostgreSQL's reason: one door's
        data never holds up another's, and nothing is retried for ever.
        """
        wait = RETRY_S[0]
        while not self._stop.is_set():
            try:
                self._open_archive()
                kept = self._store_events(events, rejects)
                if rejects:
                    with self._db.transaction():
                        self._db.cursor().executemany(
                            "INSERT INTO ingest_rejects (received_at, site, door, topic, reason, payload)"
                            " VALUES (%s, %s, %s, %s, %s, %s)",
                            [(at, v.site, v.door, v.topic, v.reason, kept) for at, v, kept in rejects])
                    self.rejected += len(rejects)
                self._store_door_state([item for item, _ in kept], states or {})
                for site, door, status, at in statuses:
                    self._anomalies(self._archive.store_status(site, door, "status", status, at))
                if self._down_since is not None:
                    log.warning("the archive is back after %.1f s", time.monotonic() - self._down_since)
                    self._down_since = None
                return kept
            except (StoreError, psycopg.Error) as exc:
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.error("cannot store in the archive (%s); nothing is acknowledged, retrying", exc)
                self._close_archive()
                self._stop.wait(wait)
                wait = min(wait * 2, RETRY_S[1])
        return None

    def _store_events(self, events: list[Incoming],
                      rejects: list[tuple[str, Rejected, bytes]]) -> list[tuple[Incoming, int]]:
        """Store ``events`` as one batch, or one by one when PostgreSQL refuses the batch's data (the
        refused ones are added to ``rejects``); the events stored, each with its epoch. Raises for an outage."""
        if not events:
            return []
        try:
            done = self._archive.store_events(events, settle=True)
            self._count(done)
            return list(zip(events, done.epochs, strict=True))
        except DataRefused as exc:
            log.warning("PostgreSQL refused a batch of %d events (%s); storing them one by one", len(events), exc)
        kept = []
        for item in events:
            try:
                done = self._archive.store_events([item], settle=True)
                self._count(done)
                kept.append((item, done.epochs[0]))
            except DataRefused as exc:
                rejects.append(self._reject(item.received_at, Rejected(item.site, item.door, item.topic,
                                                                       f"the archive refused it: {exc}"),
                                            item.payload))
        return kept

    def _count(self, done: Ingested) -> None:
        for (site, door), epoch in done.current.items():
            chain = self.chains.get((site, door))
            if chain is not None and chain.epoch != epoch:  # a new epoch, or an older one resumed
                self._retire(chain)
        self._anomalies(done.anomalies)
        self.stored += done.stored
        self.duplicates += done.duplicates
        self.conflicts += done.conflicts + done.after_retention
        if done.conflicts or done.after_retention:
            log.warning("%d conflicting copies and %d copies of dropped months went to conflicts",
                        done.conflicts, done.after_retention)

    def _anomalies(self, anomalies) -> None:
        """Say what the archive found (kept in its ``anomalies``, as on the SQLite archive); a copy that
        replaced the archived one makes its door's chain be verified again from there."""
        for a in anomalies:
            log.error("%s/%s #%s (epoch %s): %s: %s", a.site, a.door, a.seq, a.epoch, a.kind, a.detail)
            if a.kind == "copy_replaced":
                self._rewind(a.site, a.door, a.epoch, a.seq)

    def _retire(self, chain: DoorChain) -> None:
        """The door's current epoch changed: keep how far its old chain was verified, read the new one."""
        self._save_chains()
        if not chain.dirty:
            self.chains.pop((chain.site, chain.door), None)

    def _store_door_state(self, events: list[Incoming], states: dict[tuple[str, str, str], tuple[str | None, str]]):
        """Every door of the batch in ``door_state``, with the last status and occupancy it published."""
        doors = sorted({(e.site, e.door) for e in events} | {(s, d) for s, d, _ in states})
        if not doors:
            return
        with self._db.transaction():
            cur = self._db.cursor()
            cur.executemany("INSERT INTO door_state (site, door) VALUES (%s, %s) ON CONFLICT DO NOTHING", doors)
            for kind in ("status", "occupancy"):  # column names from this fixed pair, never from a message
                rows = [(s, d, text, at) for (s, d, k), (text, at) in states.items() if k == kind]
                if rows:
                    cur.executemany(f"UPDATE door_state SET {kind} = %s, {kind}_at = %s WHERE site = %s AND door = %s",
                                    [(text, at, s, d) for s, d, text, at in rows])

    def _on_result(self, site: str, door: str, result: dict) -> None:
        """A door's answer to a command: kept and, when it refuses a replay this station asked for, logged."""
        if result["id"] not in self.replay_requests:
            return  # the page's own commands, or somebody else's
        self.command_results[result["id"]] = result
        if not result.get("ok"):
            log.warning("%s/%s refused replay %s: %s", site, door, result["id"], result.get("error"))

    def _on_status(self, site: str, door: str, status: dict) -> None:
        chain = self._chain(site, door)
        last_seq, queued = status.get("last_seq"), status.get("queued")
        if last_seq is not None:
            chain.status_last_seq = last_seq
        chain.status_queued = queued
        chain.status_online = status.get("online")

    # ------------------------------------------------------------------ chains

    def _chain(self, site: str, door: str) -> DoorChain:
        """The door's chain, loaded from the archive the first time this station sees the door."""
        key = (site, door)
        chain = self.chains.get(key)
        if chain is not None:
            return chain
        chain = DoorChain(site, door)
        self._sites.setdefault(site, 0.0)
        if self._db is None:
            return chain  # the archive is away: read again next time
        try:
            row = self._db.execute("SELECT epoch FROM epochs WHERE site = %s AND door = %s AND current",
                                   key).fetchone()
            chain.epoch = row[0] if row else 1
            row = self._db.execute("SELECT verified_to, last_hash, problem FROM door_chains WHERE site = %s"
                                   " AND door = %s AND epoch = %s", (site, door, chain.epoch)).fetchone()
            if row:
                chain.verified_to, chain.last_hash, chain.problem = row
            for seq, h, prev, ok in self._db.execute(
                    "SELECT seq, hash, prev_hash, hash_ok FROM events WHERE site = %s AND door = %s AND epoch = %s"
                    " AND seq > %s ORDER BY seq", (site, door, chain.epoch, chain.verified_to)):
                chain.add(seq, h, prev, ok)
            self._db.commit()
        except psycopg.Error as exc:  # the archive is away: this door's chain is read again later
            log.warning("cannot read %s/%s's chain from the archive (%s)", site, door, exc)
            self._close_archive()
            return DoorChain(site, door)
        chain.advance()
        self.chains[key] = chain
        return chain

    def _rewind(self, site: str, door: str, epoch: int, seq: int) -> None:
        """The archived copy of ``seq`` of ``epoch`` was replaced: verify that chain again from there."""
        to = seq - 1
        with self._db.transaction():
            row = self._db.execute("SELECT hash FROM event_keys WHERE site = %s AND door = %s AND epoch = %s"
                                   " AND seq = %s", (site, door, epoch, to)).fetchone()
            last_hash = row[0] if row else GENESIS_HASH
            self._db.execute("UPDATE door_chains SET verified_to = %s, last_hash = %s, problem = NULL"
                             " WHERE site = %s AND door = %s AND epoch = %s AND verified_to >= %s",
                             (to, last_hash, site, door, epoch, to))
        chain = self.chains.get((site, door))
        if chain is None or chain.epoch != epoch:
            return  # read from door_chains and the events when next needed
        if chain.verified_to >= to:
            chain.verified_to, chain.last_hash, chain.problem = to, last_hash, None
        chain.pending.clear()
        for s, h, prev, ok in self._db.execute("SELECT seq, hash, prev_hash, hash_ok FROM events WHERE site = %s"
                                               " AND door = %s AND epoch = %s AND seq > %s ORDER BY seq",
                                               (site, door, epoch, chain.verified_to)):
            chain.add(s, h, prev, ok)
        self._db.commit()
        chain.dirty = True
        chain.advance()

    def _save_chains(self) -> None:
        dirty = [c for c in self.chains.values() if c.dirty]
        if not dirty:
            return
        try:
            self._open_archive()
            with self._db.transaction():
                self._db.cursor().executemany(
                    "INSERT INTO door_chains (site, door, epoch, verified_to, last_hash, problem)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (site, door, epoch) DO UPDATE"
                    " SET verified_to = excluded.verified_to, last_hash = excluded.last_hash,"
                    " problem = excluded.problem",
                    [(c.site, c.door, c.epoch, c.verified_to, c.last_hash, c.problem) for c in dirty])
        except (StoreError, psycopg.Error) as exc:  # recomputed from the events table after a restart
            log.warning("cannot save the chain heads (%s); will try again", exc)
            self._close_archive()
            return
        for c in dirty:
            c.dirty = False

    def verified(self, site: str, door: str) -> tuple[int, str | None]:
        """(verified_to, problem) of a door's chain as this station sees it."""
        chain = self.chains.get((site, door))
        return (chain.verified_to, chain.problem) if chain else (0, None)

    # ------------------------------------------------------------------ between batches

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._chains_saved_at >= CHAIN_SAVE_S:
            self._save_chains()
            self._chains_saved_at = now
        if not self._connected.is_set():
            return
        for chain in list(self.chains.values()):
            self._maybe_ask_replay(chain, now)
        if self.beacon_interval_s:
            for site, due in list(self._sites.items()):
                if now >= due:
                    ts = datetime.now().astimezone().isoformat(timespec="milliseconds")
                    self._client.publish(f"{self.prefix}/{site}/time", json.dumps({"ts": ts}), qos=1, retain=True)
                    self._sites[site] = now + self.beacon_interval_s

    def _maybe_ask_replay(self, chain: DoorChain, now: float) -> None:
        hole = chain.missing_from
        if hole is None:
            chain.hole = None
            return
        if chain.hole != hole:
            chain.hole, chain.requests, chain.requested_at = hole, 0, 0.0
        # Catching up (held): messages the previous session had received and not acknowledged are
        # delivered again after what was queued since, so a door's hole closes by itself once the
        # backlog is through; asking now would only add a second copy of everything.
        decision = replay_decision(sent=chain.requests, now=now, last_request_at=chain.requested_at or -1e9,
                                   advanced_at=chain.advanced_at, interval_s=self.replay_interval_s,
                                   max_requests=self.max_replay_requests,
                                   held=now - self._backlog_seen_at < self.replay_interval_s
                                   or chain.status_online is False)
        if decision is Replay.WAIT:
            return
        if decision is Replay.GIVE_UP:
            if chain.requests == self.max_replay_requests:
                log.warning("%s/%s: gave up asking for #%d after %d replay requests (events the door no longer "
                            "has, or a forged seq); the gap stays open", chain.site, chain.door, hole, chain.requests)
                chain.requests += 1
            return
        request_id, payload = replay_request(hole, "station", site=chain.site, door=chain.door,
                                             key=self.command_key)
        self.replay_requests.append(request_id)
        self._client.publish(f"{self.prefix}/{chain.site}/{chain.door}/cmd", payload, qos=1)
        chain.requests += 1
        chain.requested_at = now
        self.replays_requested += 1
        log.info("%s/%s: asked for a replay from #%d", chain.site, chain.door, hole)

    # ------------------------------------------------------------------ the archive's connections

    def _open_archive(self) -> None:
        if self._archive is None:
            self._archive = PgArchive(self.url)
        if self._db is None or self._db.closed:
            try:
                self._db = psycopg.connect(self.url, autocommit=False)
                with self._db.transaction():
                    self._db.execute("SELECT pg_advisory_xact_lock(hashtext('accessctl ingest schema'))")
                    self._db.execute(INGEST_SCHEMA)
            except psycopg.Error as exc:
                self._db = None
                raise StoreError(f"{safe_url(self.url)}: cannot open the ingest's tables: {exc}") from None

    def _close_archive(self) -> None:
        for conn in (self._archive, self._db):
            try:
                if conn is not None:
                    conn.close()
            except Exception:
                pass
        self._archive = self._db = None


def _link(event: dict) -> tuple[int, str, str, bool]:
    """(seq, hash, prev_hash, hash right) of an accepted event, for its door's chain."""
    h = event["hash"]
    return event["seq"], h, event["prev_hash"], h == event_hash({k: v for k, v in event.items() if k != "hash"})
