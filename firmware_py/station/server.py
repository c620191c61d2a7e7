"""The station's composition root: the monitor (ingest) and the web app in one process.

The monitor's paho thread archives what the broker delivers; uvicorn's event loop serves the
page; both share the archive file (the web app on its own connection). The page's live parts poll
the archive, so they show exactly what was stored, and survive a restart of either side.
"""

from __future__ import annotations

import logging

from firmware_py.core.clock import SystemClock
from firmware_py.link.broker import BrokerSettings
from firmware_py.station.config import StationConfig
from firmware_py.station.storage import open_station_store
from firmware_py.station.web import Station, create_app

log = logging.getLogger(__name__)


def serve(cfg: StationConfig, *, ready=None) -> None:
    """Run the station until SIGINT/SIGTERM. ``ready`` is called with the listening URL once it serves."""
    import uvicorn

    from firmware_py.station import queries
    from firmware_py.station.archive import Archive
    from firmware_py.station.ingest import Monitor

    settings = BrokerSettings.from_config(cfg.broker)
    archive = Archive(cfg.archive.path)  # creates the archive's tables before the station reads them
    store = open_station_store(cfg.archive.path)
    queries.prepare(store)
    monitor = Monitor(settings, archive, prefix=cfg.broker.prefix, clock=SystemClock(cfg.web.timezone),
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
