"""The MQTT side of the roster-bundle fleet benchmark (:mod:`bench.bundle_fleet`).

A private Mosquitto on a free loopback port with a configuration of its own, the bare paho
subscriber that watches what the doors say (their statuses and roster events) and the baseline:
the bundle's own bytes through the same broker with bare paho.
"""

from __future__ import annotations

import getpass
import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_py.station.roster.publish import Published
from simulator.fleet_door import SITE
from simulator.lab_broker import find_program
from simulator.lab_tier import free_port

PREFIX = "accessctl"
PACKET_LIMIT = 4 * 1024 * 1024 + 64 * 1024  # deploy/mosquitto/mosquitto.conf max_packet_size


# --------------------------------------------------------------------------- the broker


class Broker:
    """Mosquitto on a free loopback port with this benchmark's own configuration."""

    def __init__(self, workdir: Path):
        self.workdir, self.port = workdir, free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             f"max_packet_size {PACKET_LIMIT}\npersistence false\nmax_queued_messages 20000\n"
                             f"log_dest file {workdir / 'mosquitto.log'}\nlog_type error\nlog_type warning\n")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        program = find_program("mosquitto")
        if program is None:
            raise RuntimeError("mosquitto is not installed (deploy/mosquitto/README.md, 'Testing')")
        self.proc = subprocess.Popen([program, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(self.workdir / "stderr.log", "wb"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: "
                                   f"{(self.workdir / 'stderr.log').read_text(errors='replace')[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def bare_client(broker: Broker, client_id: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    return c


# --------------------------------------------------------------------------- what the doors say


@dataclass
class Watch:
    """A bare subscriber: each door's status and roster events, and the baseline's messages, as they arrive."""

    broker: Broker
    status: dict[str, dict] = field(default_factory=dict)  # door -> last status
    applied: dict[int, dict[str, float]] = field(default_factory=dict)  # version -> door -> arrival
    shown: dict[int, dict[str, float]] = field(default_factory=dict)  # version -> door -> status says it
    rejected: list[tuple[float, str, str]] = field(default_factory=list)  # (arrival, door, reason)
    manifests: list[float] = field(default_factory=list)  # when each manifest on the site's roster topic arrived
    baseline: dict[str, float] = field(default_factory=dict)  # topic -> arrival (the bare publish)

    def __post_init__(self):
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.c = bare_client(self.broker, "bench-watch")
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe([
            (f"{PREFIX}/{SITE}/+/status", 1), (f"{PREFIX}/{SITE}/+/events/system/+", 1),
            (f"{PREFIX}/{SITE}/roster", 1), ("bench/baseline/#", 1)])
        self.c.connect("127.0.0.1", self.broker.port)
        self.c.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("the bench's subscriber did not subscribe")

    def _on_message(self, client, userdata, message) -> None:
        now = time.perf_counter()
        topic = message.topic
        with self.lock:
            if topic.startswith("bench/baseline/"):
                self.baseline[topic] = now
                return
            if topic == f"{PREFIX}/{SITE}/roster":
                self.manifests.append(now)
                return
            try:
                body = json.loads(message.payload)
            except ValueError:
                return
            door = topic.split("/")[2]
            if topic.endswith("/status"):
                self.status[door] = body
                version = body.get("roster_version")
                if version:
                    self.shown.setdefault(version, {}).setdefault(door, now)
            elif body.get("type") == "roster_applied":
                self.applied.setdefault(body["detail"]["version"], {}).setdefault(door, now)
            elif body.get("type") == "roster_rejected":
                detail = body.get("detail") or {}
                self.rejected.append((now, door, f"{detail.get('reason')}: {str(detail.get('message', ''))[:200]}"))

    def online(self) -> int:
        with self.lock:
            return sum(1 for s in self.status.values() if s.get("online"))

    def count(self, version: int, since: float) -> int:
        """Doors that applied ``version`` or refused a bundle after ``since``."""
        with self.lock:
            refused = {door for t, door, _ in self.rejected if t >= since}
            return len(set(self.applied.get(version, {})) | refused)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def bare_publish(broker: Broker, watch: Watch, published: Published, run: int) -> tuple[float, float]:
    """The bundle's own messages through the broker with bare paho: seconds from the first publish until the
    subscriber has the manifest, and until every PUBACK was in."""
    b = published.bundle
    topics = [f"bench/baseline/{run}/chunks/{i}" for i in range(len(b.chunks))] + [f"bench/baseline/{run}/roster"]
    c = bare_client(broker, f"bench-bare-{run}")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        t0 = time.perf_counter()
        infos = [c.publish(t, m, qos=1, retain=True) for t, m in zip(topics, b.chunks)]
        for info in infos:
            info.wait_for_publish(60)
        manifest = c.publish(topics[-1], b.manifest, qos=1, retain=True)  # after its chunks, as the station does
        manifest.wait_for_publish(60)
        acked = time.perf_counter() - t0
        deadline = time.monotonic() + 60
        while topics[-1] not in watch.baseline and time.monotonic() < deadline:
            time.sleep(0.001)
        for t in topics:  # the retained copies cleared again
            c.publish(t, b"", qos=1, retain=True).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()
    with watch.lock:
        arrived = watch.baseline.get(topics[-1])
        missing = [t for t in topics if t not in watch.baseline]
    if arrived is None or missing:
        raise RuntimeError(f"the bare subscriber did not receive {len(missing)} of the baseline's messages")
    return arrived - t0, acked
