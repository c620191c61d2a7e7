"""The controller's link to the supervisor over MQTT (DESIGN.md "MQTT").

Publishes the durable outbox at least once, keeps the door's retained
``status`` (with a will that says ``"online": false``) and ``occupancy``, and
turns the supervisor's ``cmd`` messages and the site's time beacon into input
events for the controller. A door configured with the station's roster keys also
takes the site's signed roster bundles (:mod:`firmware_py.link.roster_receiver`),
says the applied version in its status (``roster_version``), and runs only the
commands the station signed for it (:mod:`firmware_py.link.signed_commands`).

Threads: paho's network thread runs the socket and the callbacks; one sender
thread of ours owns the SQLite connection and does every publish. The door's
thread only calls methods that store a value or set a flag and return at once,
so the door never waits on the network.

At least once: an event stays in the outbox until the broker's PUBACK for it
arrived (deletes are batched). paho keeps unacknowledged QoS 1 messages in
memory across a reconnect and resends them; after a restart the outbox is read
again from its oldest row. On MQTT 5 a PUBACK with a failure reason code (135
"Not authorized" when the ACL refuses the topic) acknowledges nothing: the
event stays queued and is retried with back-off. Subscribers de-duplicate by
``seq``. Network timing (back-off, batching, the status interval) runs on real
time, not on the injected clock, because the broker lives in real time.

The urgent lane: an urgent event (``URGENT_TYPES``, the ``duress`` alarm) is handed
to paho before anything else the sender has to send, ahead of the outbox's
backlog and without waiting for room in the window, so the supervisor learns of
it at once however many events are queued. It is still stored first, still
published at QoS 1 and still leaves the outbox only on the broker's PUBACK; the
ordinary pass over the outbox skips it while it is in flight. A station sees its
seq before the ones below it and de-duplicates by seq as ever.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from firmware_py.config.schema import Config
from firmware_py.core import commands
from firmware_py.core.clock import Clock, SystemClock
from firmware_py.core.events import describe_untrusted, redact_id_numbers
from firmware_py.core.inputs import InputEvent, LinkChanged, RemoteCommand, TimeBeacon
from firmware_py.errors import ConfigError
from firmware_py.link.broker import BrokerSettings, connect, make_client
from firmware_py.link.roster_keys import DoorKeys
from firmware_py.link.roster_receiver import RosterReceiver
from firmware_py.link.signed_commands import open_command
from firmware_py.storage.door_database import open_store

log = logging.getLogger(__name__)

MAX_INFLIGHT = 100  # paho's window of unacknowledged QoS 1 messages (Mosquitto advertises 20; 100 measured faster)
WINDOW = 200  # events handed to paho and not yet acknowledged, at most
REFILL = WINDOW // 2  # top the window up once this much room is free
URGENT_MAX = 50  # urgent events (duress) handed to paho per pass, ahead of the window
ACK_BATCH = 200  # delete acknowledged outbox rows in batches of this many ...
ACK_DELAY_S = 0.05  # ... or once the oldest has waited this long
BACKOFF_S = (1.0, 30.0)  # reconnect and refused-publish retry: first and longest wait
CLIENT_PROPERTY = "client"  # MQTT 5 user property a supervisor tool puts its claimed name in


class MqttLink:
    """The door's MQTT client: outbox publisher, retained status, command and time-beacon receiver.

    ``cfg`` gives the broker, credentials and topics (``[mqtt]``, ``[site]``) and the
    database (``[storage]``), which the link opens with its own connection. ``post`` is
    the controller's input queue's ``put``: commands, time beacons and link changes go
    there. ``backoff`` is (first, longest) wait in seconds for reconnecting and for
    retrying an event the broker refused.
    """

    def __init__(self, cfg: Config, *, post: Callable[[InputEvent], None], clock: Clock | None = None,
                 backoff: tuple[float, float] = BACKOFF_S, roster_keys: DoorKeys | None = None):
        m = cfg.mqtt
        self.cfg = cfg
        self._post = post
        self._clock = clock or SystemClock(cfg.site.timezone)
        self._backoff = backoff
        base = f"{m.prefix}/{cfg.site.site}/{cfg.site.door}"
        self.events_topic = f"{base}/events"
        self.status_topic = f"{base}/status"
        self.occupancy_topic = f"{base}/occupancy"
        self.cmd_topic = f"{base}/cmd"
        self.result_topic = f"{base}/cmd/result"
        self.time_topic = f"{m.prefix}/{cfg.site.site}/time"
        self.roster_topic = f"{m.prefix}/{cfg.site.site}/roster"  # the manifest; its chunks under roster/chunks/N
        try:
            self._settings = BrokerSettings.from_config(m, persistent_session=False)
        except ConfigError as exc:
            raise ConfigError(f"{cfg.path}: [mqtt]: {exc}") from None
        self._host, self._port = self._settings.host, self._settings.port
        self._store = open_store(cfg, clock=self._clock)  # the sender thread's own connection
        self._client = self._make_client()

        self._lock = threading.Lock()  # guards what paho's callbacks share with the sender
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._up = False
        self._reported: bool | None = None  # the last LinkChanged posted
        self._refusal_logged: str | None = None
        self._announce = False  # re-publish the retained status and occupancy (after a connect)
        # outbox
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._early: dict[int, object] = {}  # PUBACKs that overtook the sender's bookkeeping: mid -> reason
        self._acked: list[int] = []
        self._acked_since: float | None = None
        self._refused: list[tuple[int, str]] = []
        self._refused_batch: list[tuple[int, str]] = []
        self._next_seq = 0  # the outbox is read from here on; 0 = from its oldest row
        self._urgent_sent: set[int] = set()  # urgent seqs handed to paho ahead of _next_seq
        self._blocked_until: float | None = None  # refused events: wait, then read the outbox again
        self._retry_s = backoff[0]
        # replay of stored events, status, occupancy, command results
        self._replay: list[int] | None = None  # [next seq, last seq or 0 = not yet known]
        self._replay_inflight: set[int] = set()
        self._other_inflight: set[int] = set()  # status, occupancy, results
        self._status: dict | None = None
        self._status_dirty = False
        self._published_queued: int | None = None
        self._next_status_at = 0.0
        self._occupancy: dict | None = None
        self._occupancy_dirty = False
        self._results: deque[bytes] = deque()
        # the station's signed roster, when this door is configured for one ([roster])
        self.roster: RosterReceiver | None = None
        # with the station's key, every command from the broker must be signed by it for this door
        self._command_key = roster_keys.public_key if roster_keys is not None else None
        for note in cfg.roster.notes:  # a retired setting in the file: said at every start until it is removed
            log.warning("%s: %s", cfg.path, note)
        if roster_keys is not None:
            self.roster = RosterReceiver(cfg, roster_keys, clock=self._clock, stored=self.notify,
                                         applied=lambda version: self._status_changed())

    # ------------------------------------------------------------------ set-up

    def _make_client(self) -> mqtt.Client:
        try:
            c = make_client(self._settings)
        except ConfigError as exc:
            raise ConfigError(f"{self.cfg.path}: [mqtt]: {exc}") from None
        if self._settings.tls and not self._settings.tls_verify:
            log.warning("MQTT TLS verification is off (tls_verify = false): only for a lab")
        c.will_set(self.status_topic, json.dumps({"online": False}), qos=1, retain=True)
        c.reconnect_delay_set(min_delay=self._backoff[0], max_delay=self._backoff[1])
        c.max_inflight_messages_set(MAX_INFLIGHT)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        return c

    def _connect_async(self) -> None:
        connect(self._client, self._settings)
        self._client.loop_start()

    # ------------------------------------------------------------------ the door's side (all return at once)

    def start(self) -> None:
        """Connect in the background and start sending; returns at once."""
        if self._started:
            return
        self._started = True
        if self.roster is not None:
            self.roster.start()
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()
        self._connect_async()

    def notify(self) -> None:
        """An event was stored: wake the sender."""
        self._wake.set()

    def publish_status(self, status: dict) -> None:
        """Publish the retained status (``online`` is added); kept and re-published on reconnect."""
        with self._lock:
            self._status = {**status, "online": True}
            self._status_dirty = True
        self._wake.set()

    def _status_changed(self) -> None:
        with self._lock:
            self._status_dirty = self._status is not None
        self._wake.set()

    def publish_occupancy(self, occupancy: dict) -> None:
        with self._lock:
            self._occupancy = dict(occupancy)
            self._occupancy_dirty = True
        self._wake.set()

    def command_result(self, id: str | None, ok: bool, error: str | None) -> None:
        # A command without a usable id is answered with "" (the contract's id is a string).
        result: dict = {"id": id or "", "ok": ok}
        if error:
            result["error"] = error
        with self._lock:
            self._results.append(json.dumps(result, ensure_ascii=False).encode("utf-8"))
        self._wake.set()

    def replay(self, from_seq: int) -> None:
        """Publish the stored events from ``from_seq`` to the last one again (from the log, not the outbox)."""
        with self._lock:
            if self._replay is None:
                self._replay = [max(1, from_seq), 0]
            else:  # one replay covers both requests
                self._replay = [min(self._replay[0], max(1, from_seq)), 0]
        self._wake.set()

    def suspend(self) -> None:
        """Drop the connection (the simulator's broker_down); unacknowledged events stay queued."""
        self._client.disconnect()
        self._client.loop_stop()
        self._set_up(False, "suspended")

    def resume(self) -> None:
        """Connect again after :meth:`suspend`."""
        self._connect_async()

    @property
    def connected(self) -> bool:
        return self._up

    def close(self) -> None:
        """Stop cleanly: publish ``"online": false`` (retained), record acknowledgements, disconnect."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.roster is not None:
            self.roster.close()
        try:
            if self._up:
                with self._lock:
                    status = {**(self._status or {}), "online": False}
                info = self._client.publish(self.status_topic, _dumps(status), qos=1, retain=True)
                info.wait_for_publish(2)
        except (RuntimeError, ValueError) as exc:
            log.warning("could not publish the offline status: %s", exc)
        finally:
            self._client.disconnect()
            self._client.loop_stop()
            self._flush_acks(force=True)
            self._store.db.conn.close()

    # ------------------------------------------------------------------ paho callbacks (network thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            text = f"broker {self._host}:{self._port} refused the connection: {reason_code}"
            if self._refusal_logged != text:
                log.error("%s (check the door's account: with Mosquitto its certificate, [mqtt] cert_file and "
                          "key_file, and the broker's ACL; with RabbitMQ [mqtt] username and password_file)", text)
                self._refusal_logged = text
            self._set_up(False, text)
            return
        self._refusal_logged = None
        if self.cfg.mqtt.protocol == 5:
            # Retain As Published on cmd: a command published retained while the door listens arrives
            # marked retained too, so it is refused like the stored copy (MQTT 3.1.1 cannot tell it).
            # Not on the time topic: a live beacon is published retained and must count as live.
            client.subscribe([(self.cmd_topic, SubscribeOptions(qos=1, retainAsPublished=True)),
                              (self.time_topic, SubscribeOptions(qos=1))]
                             + [(t, SubscribeOptions(qos=1)) for t in self._roster_topics()])
        else:
            client.subscribe([(self.cmd_topic, 1), (self.time_topic, 1)] + [(t, 1) for t in self._roster_topics()])
        with self._lock:
            self._announce = True
        self._set_up(True, f"connected to {self._host}:{self._port}")
        self._wake.set()

    def _roster_topics(self) -> list[str]:
        return [self.roster_topic, f"{self.roster_topic}/chunks/+"] if self.roster is not None else []

    def _on_connect_fail(self, client, userdata) -> None:
        self._set_up(False, f"broker {self._host}:{self._port} unreachable")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._set_up(False, f"disconnected: {reason_code}")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        for rc in reason_codes:
            if rc.is_failure:
                log.error("subscription refused by the broker: %s", rc)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            wake = self._completed(mid, reason_code)
        if wake:
            self._wake.set()

    def _completed(self, mid: int, reason_code) -> bool:
        """Book the broker's answer to message ``mid`` (lock held); True when the sender should wake."""
        seq = self._inflight.pop(mid, None)
        if seq is None:
            if mid in self._replay_inflight:
                self._replay_inflight.discard(mid)
            elif mid in self._other_inflight:
                self._other_inflight.discard(mid)
            else:  # the PUBACK came before publish() returned the mid to the sender
                self._early[mid] = reason_code
                return False
            if reason_code.is_failure:
                log.error("the broker refused a status, result or replayed message: %s", reason_code)
        elif reason_code.is_failure:
            self._refused.append((seq, str(reason_code)))
            return True
        else:
            self._acked.append(seq)
            if self._acked_since is None:
                self._acked_since = time.monotonic()
        busy = len(self._inflight) + len(self._replay_inflight)
        return len(self._acked) >= ACK_BATCH or busy <= WINDOW - REFILL

    def _publish(self, topic: str, payload: bytes, *, retain: bool = False, seq: int | None = None,
                 replayed: bool = False) -> None:
        """Publish at QoS 1 from the sender thread and book the message (outbox ``seq``, replay, other)."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        with self._lock:
            if seq is not None:
                self._inflight[info.mid] = seq
            elif replayed:
                self._replay_inflight.add(info.mid)
            else:
                self._other_inflight.add(info.mid)
            early = self._early.pop(info.mid, None)
            if early is not None:
                self._completed(info.mid, early)

    def _on_message(self, client, userdata, message) -> None:
        try:
            if message.topic == self.cmd_topic:
                if self._command_key is not None:  # [roster] station_public_key: id, time and door signed
                    command = open_command(message.payload, self._command_key, site=self.cfg.site.site,
                                           door=self.cfg.site.door, now=self._clock.now(),
                                           claimed_by=_sender(message))
                else:
                    command = commands.parse(message.payload, claimed_by=_sender(message))
                if message.retain:  # it would run again at every reconnect: audited and answered, never run
                    command = commands.refuse_retained(command)
                self._post(command)
            elif self.roster is not None and (message.topic == self.roster_topic
                                              or message.topic.startswith(f"{self.roster_topic}/chunks/")):
                self.roster.offer(message.payload)  # checked and applied on the roster thread
            elif message.topic == self.time_topic:
                beacon = _time_beacon(message.payload, retained=bool(message.retain))
                if beacon is None:  # the payload may carry anything, an ID number too: only a masked extract
                    log.warning("malformed time beacon on %s skipped (%s)", message.topic,
                                describe_untrusted(message.payload))
                else:
                    self._post(beacon)
        except Exception as exc:  # a bad message must not stop paho's network thread
            log.error("handling a message on %s failed: %s", message.topic,
                      redact_id_numbers(f"{type(exc).__name__}: {exc}")[:300])
            if message.topic == self.cmd_topic:  # still audited and answered
                self._post(RemoteCommand(None, None, {}, None,
                                         f"the door could not read the command: {type(exc).__name__}"))

    def _set_up(self, up: bool, detail: str) -> None:
        self._up = up
        with self._lock:
            changed = self._reported is not up
            self._reported = up
        if changed and not self._stopping.is_set():
            log.info("MQTT link %s: %s", "up" if up else "down", detail)
            self._post(LinkChanged(up, detail))

    # ------------------------------------------------------------------ the sender thread

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._step()
                timeout = self._next_deadline() - time.monotonic()
            except Exception:  # storage trouble or a bug: log it, wait, try again; never die
                log.exception("MQTT sender failed; retrying")
                timeout = self._backoff[0]
            self._wake.wait(min(1.0, max(0.0, timeout)))
            self._wake.clear()

    def _next_deadline(self) -> float:
        now = time.monotonic()
        # The status is due again only while connected: unconnected, _step sends nothing, and a past
        # _next_status_at would wake this thread at once, again and again (a core spinning).
        deadlines = [now + 1.0, self._next_status_at if self._status and self._up else now + 1.0]
        if self._acked_since is not None:
            deadlines.append(self._acked_since + ACK_DELAY_S)
        if self._blocked_until is not None:
            deadlines.append(self._blocked_until)
        return min(deadlines)

    def _step(self) -> None:
        self._flush_acks()
        self._handle_refusals()
        if not self._up:
            return
        self._send_urgent()
        now = time.monotonic()
        with self._lock:
            announce, self._announce = self._announce, False
            status_due = self._status is not None and (self._status_dirty or announce or now >= self._next_status_at)
            occupancy_due = self._occupancy is not None and (self._occupancy_dirty or announce)
            self._status_dirty = self._occupancy_dirty = False
            occupancy = self._occupancy
            results = list(self._results)
            self._results.clear()
        if status_due:
            self._send_status()
        if occupancy_due:
            self._publish(self.occupancy_topic, _dumps(occupancy), retain=True)
        for payload in results:
            self._publish(self.result_topic, payload)
        drained = self._send_outbox()
        self._send_replay()
        if drained and self._status is not None and self._published_queued:
            self._flush_acks(force=True)
            self._send_status()  # the backlog is gone: say so

    def _send_status(self) -> None:
        with self._lock:
            status = dict(self._status or {})
        status["last_seq"], status["last_hash"] = self._store.head()
        status["queued"] = self._store.queued()
        if self.roster is not None:
            status["roster_version"] = self.roster.version  # 0: no bundle applied yet
        self._publish(self.status_topic, _dumps(status), retain=True)
        self._published_queued = status["queued"]
        self._next_status_at = time.monotonic() + self.cfg.mqtt.status_interval_s

    def _send_urgent(self) -> None:
        """Hand paho the urgent events the outbox holds beyond the ordinary pass, before anything else.

        Not held back by the window: urgent events are few, and each waits behind at most the
        window's messages paho already holds. A refused event blocks them too (the broker
        refuses, retrying sooner would not help); the outbox is then read again from its
        oldest row, urgent events first.
        """
        if self._blocked_until is not None:
            return
        for seq, category, type_, body, h in self._store.urgent_rows(self._next_seq, URGENT_MAX):
            if seq not in self._urgent_sent:
                self._publish(f"{self.events_topic}/{category}/{type_}", published_event(body, h), seq=seq)
                self._urgent_sent.add(seq)

    def _send_outbox(self) -> bool:
        """Hand the next outbox rows to paho; True when nothing is left to send or in flight."""
        if self._blocked_until is not None:
            return False
        with self._lock:
            room = WINDOW - len(self._inflight) - len(self._replay_inflight)
            idle = not self._inflight
        if room < REFILL and not idle:
            return False
        rows = self._store.outbox_rows(self._next_seq, room)
        for seq, category, type_, body, h in rows:
            if seq not in self._urgent_sent:  # an urgent one went ahead: in flight or acknowledged already
                self._publish(f"{self.events_topic}/{category}/{type_}", published_event(body, h), seq=seq)
            self._next_seq = seq + 1
        if self._urgent_sent:
            self._urgent_sent = {seq for seq in self._urgent_sent if seq >= self._next_seq}
        return not rows and idle

    def _send_replay(self) -> None:
        with self._lock:
            if self._replay is None:
                return
            room = WINDOW - len(self._inflight) - len(self._replay_inflight)
            first, last = self._replay
        if room < REFILL:
            return
        last = last or self._store.last_seq()
        upto = min(last, first + room - 1)
        rows = self._store.stored_rows(first, upto)
        for _seq, category, type_, body, h in rows:
            self._publish(f"{self.events_topic}/{category}/{type_}", published_event(body, h), replayed=True)
        with self._lock:
            if self._replay is not None and self._replay[0] == first:  # not replaced by a new request meanwhile
                self._replay = None if upto >= last else [upto + 1, last]
        if upto >= last:
            log.info("replayed events %d to %d", first, last)

    def _flush_acks(self, force: bool = False) -> None:
        with self._lock:
            due = self._acked and (force or len(self._acked) >= ACK_BATCH or not self._inflight
                                   or time.monotonic() - (self._acked_since or 0) >= ACK_DELAY_S)
            if not due:
                return
            seqs, self._acked, self._acked_since = self._acked, [], None
        try:
            self._store.acknowledge(seqs)
        except Exception:
            with self._lock:  # keep them: losing an acknowledgement only means a duplicate, but try again
                self._acked[:0] = seqs
                self._acked_since = self._acked_since or time.monotonic()
            raise
        if self._blocked_until is None:
            self._retry_s = self._backoff[0]

    def _handle_refusals(self) -> None:
        """Refused events: stop sending, let the window drain, log once, wait (doubling), read the outbox again."""
        with self._lock:
            self._refused_batch += self._refused
            self._refused = []
            idle = not self._inflight
        now = time.monotonic()
        if self._refused_batch and self._blocked_until is None:
            self._blocked_until = math.inf  # until every answer to this attempt is in
        if self._refused_batch and idle:
            seqs = sorted(seq for seq, _ in self._refused_batch)
            log.error("the broker refused %d event(s) (seq %d%s) on %s/...: %s; they stay in the outbox, "
                      "retry in %.1f s (check the broker's ACL for this door's account)", len(seqs), seqs[0],
                      f" to {seqs[-1]}" if len(seqs) > 1 else "", self.events_topic, self._refused_batch[0][1],
                      self._retry_s)
            self._refused_batch = []
            self._blocked_until = now + self._retry_s
            self._retry_s = min(self._retry_s * 2, self._backoff[1])
        elif self._blocked_until is not None and idle and now >= self._blocked_until:
            self._blocked_until = None
            self._next_seq = 0  # read the outbox again from its oldest row
            self._urgent_sent.clear()  # nothing is in flight: the urgent ones go first again


# ---------------------------------------------------------------------- helpers


def _dumps(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def published_event(body: str, h: str) -> bytes:
    """The stored event with its hash: the stored canonical JSON with ``hash`` added as the last key."""
    return f'{body[:-1]},"hash":"{h}"}}'.encode()


def _sender(message: mqtt.MQTTMessage) -> str | None:
    """Who the sender says it is: the MQTT 5 user property ``client``, if its tool set one.

    Any client may put anything there: it is recorded as ``claimed_by``, a claim, never an identity.
    """
    props = getattr(message, "properties", None)
    for key, value in getattr(props, "UserProperty", None) or []:
        if key == CLIENT_PROPERTY and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return None


def _time_beacon(payload: bytes, *, retained: bool = False) -> TimeBeacon | None:
    try:
        data = json.loads(payload.decode("utf-8"))
        ts = datetime.fromisoformat(data["ts"])
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, RecursionError):
        return None
    if ts.tzinfo is None:  # a time without its offset cannot set a clock
        return None
    return TimeBeacon(ts, retained=retained)
