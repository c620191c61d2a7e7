"""The station's composition root: the ingest and the web app in one process, on either archive.

With an SQLite archive the monitor (:mod:`.ingest`) archives what the broker delivers into the file;
with a PostgreSQL archive (``postgresql://…``) the batched ingest (:mod:`.ingest_pg`) does. Either way
uvicorn's event loop serves the page over the same archive through a :class:`.storage.StationStore`
of that backend, on its own connection. The page's live parts poll the archive, so they show
exactly what was stored, and survive a restart of either side.
"""

from __future__ import annotations

import logging

from firmware_py.core.clock import SystemClock
from firmware_py.link.broker import BrokerSettings
from firmware_py.station.archive.open import open_station_store
from firmware_py.station.config import StationConfig, safe_url
from firmware_py.station.web.app import Station, create_app

log = logging.getLogger(__name__)


def _sqlite_side(cfg: StationConfig, settings: BrokerSettings):
    """(store, monitor, start, close) over the SQLite file."""
    from firmware_py.station.archive.sqlite import Archive
    from firmware_py.station.ingest.monitor import Monitor

    archive = Archive(cfg.archive.path)  # creates the archive's tables before the station reads them
    store = open_station_store(cfg.archive.path)
    monitor = Monitor(settings, archive, prefix=cfg.broker.prefix, clock=SystemClock(cfg.web.timezone),
                      beacon_interval_s=cfg.broker.beacon_interval_s or None)
    return store, monitor, lambda: monitor.start(wait=False), monitor.close


def _postgres_side(cfg: StationConfig, settings: BrokerSettings):
    """(store, ingest, start, close) over the PostgreSQL archive."""
    from firmware_py.station.ingest.pg import PgIngest

    store = open_station_store(cfg.archive.url, zone=cfg.web.timezone.key)
    ingest = PgIngest(settings, cfg.archive.url, prefix=cfg.broker.prefix,
                      beacon_interval_s=cfg.broker.beacon_interval_s)
    return store, ingest, ingest.start, ingest.close


def serve(cfg: StationConfig, *, ready=None) -> None:
    """Run the station until SIGINT/SIGTERM. ``ready`` is called with the listening URL once it serves."""
    import uvicorn

    from firmware_py.station.web import queries

    settings = BrokerSettings.from_config(cfg.broker)
    store, monitor, start, close = (_postgres_side if cfg.archive.url else _sqlite_side)(cfg, settings)
    where = safe_url(cfg.archive.url) if cfg.archive.url else str(cfg.archive.path)
    try:
        queries.prepare(store)
        station = Station(store, cfg.web.timezone, prefix=cfg.broker.prefix, monitor=monitor, https=cfg.web.https,
                          session_idle_s=cfg.web.session_idle_s)
        app = create_app(station)
    except BaseException:
        store.close()
        raise
    scheme = "https" if cfg.web.https else "http"
    url = f"{scheme}://{cfg.web.host}:{cfg.web.port}/"

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            station.stopping.set()  # end the live streams, so the shutdown need not wait for them
            super().handle_exit(sig, frame)

        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started:
                log.warning("station serving on %s (archive %s, broker %s)", url, where, settings.url)
                if ready:
                    ready(url)

    config = web_server_config(app, host=cfg.web.host, port=cfg.web.port, certificate=cfg.web.certificate,
                               key=cfg.web.key)
    try:
        start()  # a broker that is down is a state shown on the page, not a reason not to serve
        Server(config).run()
    finally:
        station.stopping.set()
        close()
        store.close()


def web_server_config(app, *, host: str, port: int, certificate=None, key=None, graceful_s: float = 3):
    """uvicorn's settings for the page. ``proxy_headers`` off: the station is not behind a proxy, so an
    ``X-Forwarded-For`` a client sends must neither name the address the audit trail records nor get
    round the per-address login throttle."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, proxy_headers=False,
                          ssl_certfile=str(certificate) if certificate else None,
                          ssl_keyfile=str(key) if key else None, timeout_graceful_shutdown=graceful_s, lifespan="off")
