"""A door whose broker cannot be reached waits quietly: its MQTT link must not spin the CPU.

Found while starting 500 simulated doors in one process (accessctl-sim fleet): every link that
had a status to publish but no connection yet woke its sender thread at once, again and again,
so a few hundred unconnected doors took the whole machine and could no longer connect. On a Pi
the same loop would burn a core for as long as the broker is away.
"""

from __future__ import annotations

import queue
import resource
import socket
import time
from dataclasses import replace

from firmware_py.config.schema import load_config
from firmware_py.link.door_link import MqttLink
from tests.fixtures.roster import EXAMPLE_CONFIG


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_a_link_whose_broker_is_away_does_not_spin_while_it_has_a_status_to_publish(tmp_path):
    cfg = load_config(EXAMPLE_CONFIG)
    cfg = replace(cfg, storage=replace(cfg.storage, database=tmp_path / "door.db", secret=tmp_path / "door.key"),
                  mqtt=replace(cfg.mqtt, broker=f"mqtt://127.0.0.1:{_closed_port()}", username="", password_file=None,
                               ca_file=None, cert_file=None, key_file=None))
    link = MqttLink(cfg, post=queue.Queue().put, backoff=(5.0, 5.0))
    link.start()
    link.publish_status({"door": "closed", "lock": "locked", "lockdown": False, "occupancy": 0})
    try:
        time.sleep(0.5)  # the first connect attempt is refused
        cpu, wall = _cpu_s(), time.monotonic()
        time.sleep(2.0)
        used = _cpu_s() - cpu
        wall = time.monotonic() - wall
    finally:
        link.close()
    # Waiting costs next to nothing; a sender that spins uses the whole interval (a core).
    assert used < 0.25 * wall, f"the link used {used:.2f} s of CPU in {wall:.2f} s while the broker was away"
