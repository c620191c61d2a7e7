"""The doors' answers (``{prefix}/{site}/{door}/cmd/result``) to the commands the page sent.

The station's one MQTT client (the monitor's, or the PostgreSQL ingest's) already subscribes to
every door's ``cmd/result``; a handler for that topic filter is added to the same client
(``message_callback_add``): it keeps the answer to a command this page sent to that same door, and
hands every message on to the client's own handler, so the ingest still reads the answers to its
replay requests. An answer is a door's word, read as hostile: only a JSON object of at most
:data:`MAX_ANSWER` bytes whose ``id`` is one the page sent to that door counts; its ``error`` is
masked and cut.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from firmware_py.station.archive import masking
from firmware_py.station.web import shown

KEEP = 1000  # commands remembered
MAX_ANSWER = 4096  # bytes of an answer read


@dataclass
class Sent:
    site: str
    door: str
    action: str
    by: str
    at: float  # time.monotonic() when sent
    ok: bool | None = None  # None: no answer yet
    error: str | None = None


class DoorAnswers:
    """The commands the page sent, by id, with the door's answer once it came."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.topic_filter = f"{prefix}/+/+/cmd/result"
        self._lock = threading.Lock()
        self._sent: OrderedDict[str, Sent] = OrderedDict()
        self._client = None

    def watch(self, monitor) -> None:
        """Listen on the monitor's current MQTT client (a restarted monitor has a new one)."""
        client = getattr(monitor, "client", None)
        with self._lock:
            if client is None or client is self._client:
                return
            self._client = client
        client.message_callback_add(self.topic_filter, self._on_answer)

    def sent(self, id: str, site: str, door: str, action: str, by: str) -> None:
        with self._lock:
            self._sent[id] = Sent(site, door, action, by, time.monotonic())
            while len(self._sent) > KEEP:
                self._sent.popitem(last=False)

    def get(self, id: str) -> Sent | None:
        with self._lock:
            return self._sent.get(id)

    def take(self, topic: str, payload: bytes) -> bool:
        """Keep ``payload`` as the door's answer when it answers a command sent to the door of ``topic``."""
        parts = topic.split("/")
        if len(parts) < 4 or parts[-2:] != ["cmd", "result"] or len(payload) > MAX_ANSWER:
            return False
        site, door = parts[-4], parts[-3]
        try:
            answer = json.loads(payload)
        except (ValueError, RecursionError):
            return False
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), str) or \
                not isinstance(answer.get("ok"), bool):
            return False
        error = answer.get("error")
        with self._lock:
            sent = self._sent.get(answer["id"])
            if sent is None or (sent.site, sent.door) != (site, door) or sent.ok is not None:
                return False
            sent.ok = answer["ok"]
            sent.error = None if error is None else shown.text(masking.mask_text(str(error)), 200)
        return True

    def _on_answer(self, client, userdata, message) -> None:
        try:
            self.take(message.topic, bytes(message.payload))
        finally:
            on_message = client.on_message  # the ingest's own handler reads every message as before
            if on_message is not None:
                on_message(client, userdata, message)
