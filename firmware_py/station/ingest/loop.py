"""The station's one MQTT loop, for both archives: receive, judge once, store, then acknowledge.

The station reads the doors' messages with a persistent session (clean session off, QoS 1), so the
broker keeps what arrives while the station is away. paho runs with manual acknowledgements
(``manual_ack``): paho's network thread only queues what arrives; one writer thread takes what has
arrived (up to :data:`BATCH_MAX`), judges every message once
(:func:`~firmware_py.station.ingest.judge.judge`), hands the batch to the ingest, which makes it
durable in its archive, and only then acknowledges it. A station killed, or an archive that went
away, therefore loses nothing: what was not acknowledged is delivered again (a RabbitMQ quorum queue
requeues it; Mosquitto resends it), and the archive stores each (site, door, seq) once.

Acknowledgements carry the connection they belong to: the message ids of a connection that
dropped meanwhile may name other messages on the next one, so those are never acknowledged (the
broker delivers the messages again). Between batches the writer thread runs the ingest's
housekeeping (replay requests, the time beacon).

A refused message (:class:`~firmware_py.station.ingest.judge.Rejected`) comes with what the
archive's ``ingest_rejects`` keeps of it (:class:`~firmware_py.station.ingest.rejects.RejectBudget`);
one the station cannot handle at all is refused with the error's name: a data error is never an
outage.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from firmware_py.core.event_line import printable
from firmware_py.link.broker import BrokerSettings, connect, make_client
from firmware_py.station.ingest.judge import Accepted, Rejected, judge, parse_topic
from firmware_py.station.ingest.rejects import RejectBudget

log = logging.getLogger(__name__)

BATCH_MAX = 1000  # messages stored per batch, at most
BATCH_WAIT_S = 0.005  # after the first message, gather what else arrives this quickly
RETRY_S = (0.5, 10.0)  # a step failed: first and longest wait before trying again


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


@dataclass(frozen=True)
class Judged:
    """A received message and the judge's verdict; for a refused one, the reason and the payload the
    archive keeps (within the door's budget)."""

    received: Received
    verdict: Accepted | Rejected
    kept: bytes = b""

    @property
    def reason(self) -> str:
        return self.verdict.reason if isinstance(self.verdict, Rejected) else ""


class BrokerLoop:
    """The MQTT side of the ingest: one paho client, one writer thread.

    ``filters``: the topic filters subscribed (QoS 1; on MQTT 5 the events' with Retain As Published).
    ``handle(batch)``: stores a batch of :class:`Judged` messages; True once they are durable (they are
    then acknowledged), False when stopping (nothing acknowledged). ``housekeeping()``: run between
    batches. ``now()``: the receipt time of a message (ISO 8601 with offset). ``on_connection(state,
    detail)``: told ``refused``, ``lost`` or ``listening`` (detail: what the broker said).
    """

    def __init__(self, broker: BrokerSettings, prefix: str, filters: list[str], *,
                 handle: Callable[[list[Judged]], bool], housekeeping: Callable[[], None],
                 now: Callable[[], str] | None = None,
                 on_connection: Callable[[str, str], None] | None = None,
                 client_factory: Callable[[BrokerSettings], mqtt.Client] = make_client, name: str = "ingest"):
        self.broker = broker
        self.prefix = prefix
        self.filters = filters
        self.handle = handle
        self.housekeeping = housekeeping
        self.now = now or (lambda: datetime.now().astimezone().isoformat(timespec="milliseconds"))
        self.on_connection = on_connection or (lambda state, detail: None)
        self.client_factory = client_factory
        self.name = name
        self.client: mqtt.Client | None = None
        self.cond = threading.Condition()  # notified after every batch and change of connection
        self.connected = False  # the broker session is up
        self.listening = False  # subscribed, every filter granted, on this connection
        self.subscribed = False  # an answer to the subscription came (granted or not)
        self.refused: str | None = None  # the broker refused the connection: why
        self.session_present = False  # the broker kept this client's session (and queued for it) while away
        self.backlog_seen_at = -1e9  # when a batch last came full enough to mean a backlog
        self._inbox: queue.Queue[Received] = queue.Queue()
        self._generation = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._publishes: dict[int, str] = {}
        self._denied_topics: set[str] = set()
        self.budget = RejectBudget(time.monotonic)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        self._stop.clear()
        self.client = c = self.client_factory(self.broker)
        c.manual_ack_set(True)
        c.on_connect, c.on_disconnect, c.on_subscribe = self._on_connect, self._on_disconnect, self._on_subscribe
        c.on_message, c.on_publish = self._on_message, self._on_publish
        connect(c, self.broker)  # the persistent session, with its expiry on MQTT 5
        c.loop_start()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop: what was received and not yet stored stays unacknowledged (the broker keeps it)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(30)
        self._thread = None
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None
        with self.cond:
            self.connected = self.listening = self.subscribed = False
            self.refused = None
            self.cond.notify_all()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when the loop is stopping meanwhile."""
        return self._stop.wait(seconds)

    # ------------------------------------------------------------------ paho's network thread
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            with self.cond:
                self.refused = str(reason_code)
                self.cond.notify_all()
            self.on_connection("refused", str(reason_code))
            return
        with self.cond:
            self._generation += 1
            self.connected = True
            self.session_present = bool(getattr(flags, "session_present", False))
            self.cond.notify_all()
        if self.broker.protocol == 5:  # events with Retain As Published: one published retained shows as such
            client.subscribe([(f, SubscribeOptions(qos=1, retainAsPublished=f.endswith("/events/#")))
                              for f in self.filters])
        else:
            client.subscribe([(f, 1) for f in self.filters])
        log.info("%s connected to %s (session present: %s)", self.name, self.broker.url,
                 getattr(flags, "session_present", "?"))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        with self.cond:
            self.subscribed = True
            self.listening = self.connected and not refused
            self.cond.notify_all()
        self.on_connection("listening", ", ".join(refused))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self.cond:
            self._generation += 1
            was = self.connected
            self.connected = self.listening = False
            self.cond.notify_all()
        if was and not self._stop.is_set():
            self.on_connection("lost", str(reason_code))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        topic = self._publishes.pop(mid, None)
        if topic and reason_code.is_failure and topic not in self._denied_topics:
            self._denied_topics.add(topic)
            self.on_connection("publish refused", f"{topic}: {reason_code}")

    def _on_message(self, client, userdata, message) -> None:
        with self.cond:
            generation = self._generation
        self._inbox.put(Received(generation, message.mid, message.qos, message.topic, bytes(message.payload),
                                 self.now(), bool(message.retain)))

    # ------------------------------------------------------------------ publishing
    def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1; a refusal by the broker is told once per topic (``publish refused``)."""
        client = self.client
        if client is None:
            return
        info = client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            if len(self._publishes) > 1000:  # acknowledgements lost with a connection: forget them
                self._publishes.clear()
            self._publishes[info.mid] = topic

    # ------------------------------------------------------------------ the writer thread
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._take()
                if batch:
                    self.step(batch)
                self.housekeeping()
            except Exception:  # a bug must not end the ingest: nothing was acknowledged
                log.exception("%s step failed; going on", self.name)
                self._stop.wait(RETRY_S[0])

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

    def step(self, batch: list[Received]) -> None:
        """Judge, store and acknowledge one batch (the writer thread's work; a test's directly)."""
        if len(batch) >= BACKLOG_BATCH:
            self.backlog_seen_at = time.monotonic()
        judged = [self.judge(r) for r in batch if r.topic.startswith(self.prefix + "/")]
        try:
            if not self.handle(judged):
                return  # stopping: nothing acknowledged, the broker delivers it again
        finally:
            with self.cond:
                self.cond.notify_all()
        with self.cond:
            generation = self._generation
        client = self.client
        for r in batch:
            if client is not None and r.generation == generation and r.qos > 0:
                client.ack(r.mid, r.qos)

    def judge(self, r: Received) -> Judged:
        """The one place a message is judged; a refused one gets what ``ingest_rejects`` keeps of it."""
        try:
            verdict = judge(self.prefix, r.topic, r.payload, retained=r.retain)
        except Exception as exc:  # a defect met by one message: that message is refused, the batch goes on
            log.exception("cannot judge the message on %s", r.topic)
            where = parse_topic(self.prefix, r.topic)
            verdict = Rejected(printable(where.site), printable(where.door), printable(r.topic),
                               f"the station could not handle it: {type(exc).__name__}")
        if isinstance(verdict, Accepted):
            return Judged(r, verdict)
        reason, kept = self.budget.keep(verdict.site, verdict.door, verdict.reason, r.payload)
        return Judged(r, Rejected(verdict.site, verdict.door, verdict.topic, reason), kept)


BACKLOG_BATCH = 50  # a batch this large means the broker holds a backlog: gaps may close by themselves
