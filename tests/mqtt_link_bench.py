"""Quick measurement: the link flushing a stored backlog vs raw paho QoS 1 to the same broker.

    .venv/bin/python -m tests.mqtt_link_bench [COUNT]

Starts a private Mosquitto with the repo's configuration (TLS, client certificate,
password, ACL), stores COUNT events (default 20,000), then in the same run times
(1) raw paho-mqtt publishing the very same topics and payloads at QoS 1 until every
PUBACK is in, and (2) an ``MqttLink`` sending the backlog until the outbox is empty
(acknowledged rows deleted). The link is timed from its CONNACK, like raw paho.
"""

from __future__ import annotations

import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

from firmware_py.db import open_db
from firmware_py.inputs import LinkChanged
from firmware_py.mqtt_link import MqttLink, _payload
from tests.fixtures.mosquitto import MosquittoBroker, make_broker_files
from tests.mqtt_link_child import account_config, store_events


def raw_paho(broker, messages: list[tuple[str, bytes]], inflight: int) -> float:
    client = broker.paho_client(broker.door("scan-room").username)
    client.max_inflight_messages_set(inflight)
    done, connected, acked = threading.Event(), threading.Event(), [0]

    def on_publish(c, u, mid, rc, p):
        acked[0] += 1
        if acked[0] == len(messages):
            done.set()

    client.on_connect = lambda *a: connected.set()
    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    connected.wait(5)
    t0 = time.perf_counter()
    for topic, payload in messages:
        client.publish(topic, payload, qos=1)
    done.wait(300)
    elapsed = time.perf_counter() - t0
    client.disconnect()
    client.loop_stop()
    return len(messages) / elapsed


def link_flush(cfg, count: int) -> float:
    inputs: queue.Queue = queue.Queue()
    link = MqttLink(cfg, post=inputs.put)
    db = open_db(cfg.storage.database)
    link.start()
    while not (isinstance(ev := inputs.get(timeout=10), LinkChanged) and ev.up):
        pass
    t0 = time.perf_counter()
    while db.execute("SELECT count(*) FROM outbox").fetchone()[0]:
        time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    link.close()
    db.conn.close()
    return count / elapsed


def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        broker = MosquittoBroker(make_broker_files(tmp / "files"), tmp / "broker")
        broker.start()
        try:
            cfg = account_config(broker, broker.door("scan-room"), tmp / "events.db")
            store_events(cfg, count)
            db = open_db(cfg.storage.database)
            messages = [(f"accessctl/hn-archive-1/scan-room/events/{c}/{t}", _payload(body, h))
                        for c, t, body, h in db.execute("SELECT category, type, body, hash FROM events ORDER BY seq")]
            db.conn.close()
            raw = {n: raw_paho(broker, messages, n) for n in (20, 100)}
            link = link_flush(cfg, count)
            best = max(raw.values())
            print(f"{count} events, {len(messages[0][1])}-byte payloads")
            for n, rate in raw.items():
                print(f"raw paho QoS 1, max_inflight {n}: {rate:,.0f} msg/s")
            print(f"MqttLink backlog flush (until the outbox is empty): {link:,.0f} msg/s = {link / best:.0%} of raw")
        finally:
            broker.stop(kill=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
