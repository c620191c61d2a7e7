"""The door's database opened as its event store, the one way every program does it.

``accessctl`` (roster, log, lockdown), the service, the MQTT link and the simulator all open
``[storage] database`` of a configuration, with the durable settings and the schema of
:func:`~firmware_py.storage.db.open_db`, into an :class:`~firmware_py.storage.eventstore.EventStore`
for the configuration's site and door on the site's clock.
"""

from __future__ import annotations

from firmware_py.config.schema import Config
from firmware_py.core.clock import Clock, SystemClock
from firmware_py.storage.db import open_db, open_read_only
from firmware_py.storage.eventstore import EventStore


def open_store(cfg: Config, *, clock: Clock | None = None, busy_timeout_s: float = 10.0,
               read_only: bool = False) -> EventStore:
    """The event store on ``cfg``'s database (created if missing); close it with ``store.db.conn.close()``.

    ``clock``: the site's wall clock (default: the machine's, in ``[site] timezone``);
    ``busy_timeout_s``: how long a write waits for another connection's write lock;
    ``read_only``: an existing database, nothing created or changed
    (:func:`~firmware_py.storage.db.open_read_only`), for readers such as ``accessctl log export``.
    """
    if read_only:
        db = open_read_only(cfg.storage.database)
    else:
        db = open_db(cfg.storage.database, busy_timeout_s=busy_timeout_s)
    return EventStore(db, site=cfg.site.site, door=cfg.site.door, clock=clock or SystemClock(cfg.site.timezone))
