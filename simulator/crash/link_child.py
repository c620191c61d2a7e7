"""Helpers for tests/system/test_mqtt_link.py: a link config for the test broker, and a child process.

The child stores a burst of events and runs an :class:`MqttLink` until it is killed, so a
test can SIGKILL a controller between store and acknowledgement:

    python -m simulator.crash.link_child '{"broker": ..., "count": 3000, ...}'

It prints ``stored`` once the events are in the database and ``started`` once the link runs.
"""

from __future__ import annotations

import json
import queue
import sys
import time
from dataclasses import replace
from pathlib import Path

from firmware_py.config.schema import Config, load_config
from firmware_py.core.clock import SystemClock
from firmware_py.storage.db import open_db, transaction
from firmware_py.storage.eventstore import EventStore
from simulator.crash import EXAMPLE


def link_config(database: Path, *, broker: str, ca_file: Path, username: str, password_file: Path,
                cert_file: Path, key_file: Path, door: str | None = None, protocol: int = 5,
                status_interval_s: float = 60) -> Config:
    """The example config with storage in ``database`` and [mqtt] pointing at the test broker's account."""
    cfg = load_config(EXAMPLE)
    cfg = replace(cfg, storage=replace(cfg.storage, database=Path(database),
                                       secret=Path(database).with_suffix(".key")),
                  mqtt=replace(cfg.mqtt, broker=broker, ca_file=Path(ca_file), username=username,
                               password_file=Path(password_file), cert_file=Path(cert_file),
                               key_file=Path(key_file), protocol=protocol, status_interval_s=status_interval_s))
    if door is not None:
        cfg = replace(cfg, site=replace(cfg.site, door=door))
    return cfg


def account_config(broker, account, database: Path, **kwargs) -> Config:
    """:func:`link_config` for a ``MosquittoBroker`` and one of its ``Account`` s."""
    return link_config(database, broker=broker.url, ca_file=broker.ca_file, username=account.username,
                       password_file=account.password_file, cert_file=account.cert_file,
                       key_file=account.key_file, **kwargs)


def store_events(cfg: Config, count: int) -> list[dict]:
    """Append ``count`` access events (one transaction) to the config's database; return them."""
    db = open_db(cfg.storage.database)
    store = EventStore(db, site=cfg.site.site, door=cfg.site.door, clock=SystemClock(cfg.site.timezone))
    with transaction(db):
        events = [store.append("access", "access_denied", direction="in",
                               person={"person_id": f"P{i:04d}", "name": "测试人员", "role": "staff"},
                               credential={"kind": "resident_id", "masked": "430102********123X"},
                               reason="outside_working_hours") for i in range(count)]
    db.conn.close()
    return events


def main(argv: list[str]) -> None:
    from firmware_py.link.door_link import MqttLink

    args = json.loads(argv[0])
    cfg = link_config(Path(args.pop("database")), **{k: v for k, v in args.items() if k != "count"})
    store_events(cfg, args["count"])
    print("stored", flush=True)
    link = MqttLink(cfg, post=queue.Queue().put, backoff=(0.1, 0.5))
    link.start()
    link.publish_status({"door": "closed", "lock": "locked", "lockdown": False, "occupancy": 0, "version": "test"})
    print("started", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1:])
