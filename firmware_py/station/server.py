"""The station's composition root: the monitor (ingest) and the web app in one process.

The monitor's paho thread archives what the broker delivers; uvicorn's event loop serves the
page; both share the archive file (the web app on its own connection). The page's live parts poll
the archive, so they show exactly what was stored, and survive a restart of either side.
"""

from __future__ import annotations

import logging
from datetime import datetime

from ..monitor_client import BrokerSettings, read_password
from .config import StationConfig
from .storage import open_station_store
from .web import Station, create_app

log = logging.getLogger(__name__)


class SiteClock:
    """The machine's clock in the site's zone: receipt times, the beacon, the station's own records."""

    def __init__(self, tz):
        self.tz = tz

    def now(self) -> datetime:
        return datetime.now(self.tz)

    def monotonic(self) -> float:
        import time

        return time.monotonic()


def broker_settings(cfg: StationConfig) -> BrokerSettings:
    b = cfg.broker
    return BrokerSettings(url=b.url, username=b.username, password=read_password(b.password_file) if b.password_file else "",
                          ca_file=b.ca_file, cert_file=b.cert_file, key_file=b.key_file, tls_verify=b.tls_verify,
                          protocol=b.protocol, client_id=b.client_id)


def serve(cfg: StationConfig, *, ready=None) -> None:
    """Run the station until SIGINT/SIGTERM. ``ready`` is called with the listening URL once it serves."""
    if cfg.archive.url:  # PostgreSQL: the fleet's ingest; the web page reads SQLite only (for now)
        from .ingest_pg import serve_ingest

        return serve_ingest(cfg, broker_settings(cfg), ready=ready)
    import uvicorn

    from ..monitor import Monitor
    from ..monitor_archive import Archive
    from . import queries

    settings = broker_settings(cfg)
    archive = Archive(cfg.archive.path)  # creates the archive's tables before the station reads them
    store = open_station_store(cfg.archive.path)
    queries.prepare(store)
    monitor = Monitor(settings, archive, prefix=cfg.broker.prefix, clock=SiteClock(cfg.web.timezone),
                      beacon_interval_s=cfg.broker.beacon_interval_s or None)
    station = Station(store, cfg.web.timezone, prefix=cfg.broker.prefix, monitor=monitor, https=cfg.web.https,
                      session_idle_s=cfg.web.session_idle_s)
    app = create_app(station)
    scheme = "https" if cfg.web.https else "http"
    url = f"{scheme}://{cfg.web.host}:{cfg.web.port}/"

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            station.stopping.set()  # end the live streams, so the shutdown need not wait for them
            super().handle_exit(sig, frame)

        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started:
                log.warning("station serving on %s (archive %s, broker %s)", url, cfg.archive.path, settings.url)
                if ready:
                    ready(url)

    config = uvicorn.Config(app, host=cfg.web.host, port=cfg.web.port, log_level="warning", access_log=False,
                            ssl_certfile=str(cfg.web.certificate) if cfg.web.certificate else None,
                            ssl_keyfile=str(cfg.web.key) if cfg.web.key else None,
                            timeout_graceful_shutdown=3, lifespan="off")
    monitor.start(wait=False)  # a broker that is down is a state shown on the page, not a reason not to serve
    try:
        Server(config).run()
    finally:
        station.stopping.set()
        monitor.close()
        store.close()
