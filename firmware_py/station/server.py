"""The station's composition root: the ingest and the web app in one process, on either archive.

The ingest (:class:`.ingest.ingest.Ingest`) archives what the broker delivers into the SQLite file or
the PostgreSQL archive (``postgresql://…``), through that backend's store
(:mod:`.archive.ingest_store`). uvicorn's event loop serves the page over the same archive through a
:class:`.archive.store.StationStore` of that backend, on its own connection. The page's live parts
poll the archive, so they show exactly what was stored, and survive a restart of either side.

Every TCP connection to the page costs an open file, and a service gets 1,024 of them unless its
unit says otherwise: 1,100 connections that never send a request used to take every one, and the
page was unreachable. The page's server (:func:`web_server_config`) holds its connections within a
budget (:func:`connection_budget`): a connection with no request under way is closed after
:data:`IDLE_TIMEOUT_S` (a new one that sends nothing, one that sends its request a byte at a time,
one kept alive between requests), and when the budget is full a new connection closes the oldest
such idle one. A connection with a request under way is never cut: the live stream (server-sent
events) stays open as long as the browser wants it. Past the budget with every connection busy, a
request is answered 503 at once (uvicorn's ``limit_concurrency``). The budget stays below 1,024
open files whatever the limit: paho's network loop waits with ``select()``, which cannot watch a
socket numbered 1,024 or above, so the broker's socket must always find a lower number.
"""

from __future__ import annotations

import logging
import resource

from firmware_py.core.clock import SystemClock
from firmware_py.link.broker import BrokerSettings, session_client_id
from firmware_py.station.archive.open import open_station_store
from firmware_py.station.config import StationConfig, client_id_path, safe_url
from firmware_py.station.web.app import Station, create_app

log = logging.getLogger(__name__)

SELECT_LIMIT = 1024  # paho waits with select(): its socket must be numbered below this
RESERVED_FILES = 256  # files kept from the connection budget: archive, broker, logs, the page's own
IDLE_TIMEOUT_S = 10.0  # a connection with no request under way is closed after this long
KEEP_ALIVE_S = 5  # uvicorn's keep-alive between two requests of one connection


def _ingest_side(cfg: StationConfig, settings: BrokerSettings):
    """(store, ingest) over the archive the file names: the SQLite file or PostgreSQL."""
    from firmware_py.station.ingest.ingest import Ingest

    where = cfg.archive.url or cfg.archive.path
    ingest = Ingest(settings, where, prefix=cfg.broker.prefix, clock=SystemClock(cfg.web.timezone),
                    beacon_interval_s=cfg.broker.beacon_interval_s or None, command_key=command_key(cfg))
    # the ingest's archive first: it creates the archive's tables before the station reads them
    store = open_station_store(where, zone=cfg.web.timezone.key)
    return store, ingest


def station_client_id(cfg: StationConfig) -> str:
    """The client id the ingest connects with: ``[broker] client_id`` if the file sets one, else the
    station's own random id, made once and kept (:func:`~firmware_py.station.config.client_id_path`)."""
    return cfg.broker.client_id or session_client_id(client_id_path(cfg))


def command_key(cfg: StationConfig):
    """The key the page signs door commands with: the roster's signing key, when the file names one."""
    if cfg.roster.signing_key is None:
        return None
    from firmware_py.link.roster_keys import load_signing_key

    return load_signing_key(cfg.roster.signing_key)


def serve(cfg: StationConfig, *, ready=None) -> None:
    """Run the station until SIGINT/SIGTERM. ``ready`` is called with the listening URL once it serves."""
    import uvicorn

    from firmware_py.station.web import queries

    settings = BrokerSettings.from_config(cfg.broker, client_id=station_client_id(cfg))
    store, ingest = _ingest_side(cfg, settings)
    where = safe_url(cfg.archive.url) if cfg.archive.url else str(cfg.archive.path)
    try:
        queries.prepare(store)
        station = Station(store, cfg.web.timezone, prefix=cfg.broker.prefix, monitor=ingest, https=cfg.web.https,
                          session_idle_s=cfg.web.session_idle_s, command_key=command_key(cfg), config=cfg)
        app = create_app(station)
    except BaseException:
        store.close()
        ingest.close()
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
        ingest.start(wait=False)  # a broker that is down is a state shown on the page, not a reason not to serve
        Server(config).run()
    finally:
        station.stopping.set()
        ingest.close()
        store.close()


def connection_budget(files: int) -> int:
    """The page's connections at most, for a process that may open ``files`` files (and whose files
    must stay numbered below :data:`SELECT_LIMIT`)."""
    if files == resource.RLIM_INFINITY or files < 0:
        files = SELECT_LIMIT
    return max(64, min(SELECT_LIMIT, files) - RESERVED_FILES)


def web_server_config(app, *, host: str, port: int, certificate=None, key=None, graceful_s: float = 3,
                      idle_timeout_s: float = IDLE_TIMEOUT_S, max_connections: int | None = None):
    """uvicorn's settings for the page. ``proxy_headers`` off: the station is not behind a proxy, so an
    ``X-Forwarded-For`` a client sends must neither name the address the audit trail records nor get
    round the per-address login throttle. ``max_connections`` (default: the budget of this process's
    open-file limit) and ``idle_timeout_s``: see the module's docstring."""
    import uvicorn

    if max_connections is None:
        max_connections = connection_budget(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, proxy_headers=False,
                          ssl_certfile=str(certificate) if certificate else None,
                          ssl_keyfile=str(key) if key else None, timeout_graceful_shutdown=graceful_s, lifespan="off",
                          http=guarded_protocol(idle_timeout_s, max_connections),
                          limit_concurrency=max_connections + 1, timeout_keep_alive=KEEP_ALIVE_S)


def guarded_protocol(idle_timeout_s: float, max_connections: int):
    """uvicorn's HTTP/1.1 protocol (h11) with the idle timeout and the connection budget."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        """One connection to the page: closed once idle for ``idle_timeout_s``, or when the budget is
        full and it is the oldest idle one. Idle: no request under way (none yet, or the last answered)."""

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._idle_since = self.loop.time()
            self._idle_timer = None
            self._arm()
            if len(self.connections) > max_connections:
                self._close_oldest_idle()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._idle_since = self.loop.time()
            self._arm()

        def serving(self) -> bool:
            """A request is under way: its headers arrived and its answer is not complete."""
            return self.cycle is not None and not self.cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._idle_timer = self.loop.call_later(idle_timeout_s, self._idle_timeout)

        def _disarm(self) -> None:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None

        def _idle_timeout(self) -> None:
            self._idle_timer = None
            if self.serving():
                return  # answering (a live stream answers for as long as it is read); armed again after
            self.close_idle()

        def close_idle(self) -> None:
            self._disarm()
            if not self.transport.is_closing():
                try:
                    self.conn.send(h11.ConnectionClosed())
                except h11.LocalProtocolError:
                    pass
                self.transport.close()

        def _close_oldest_idle(self) -> None:
            idle = [c for c in self.connections
                    if isinstance(c, GuardedH11Protocol) and c is not self and not c.serving()
                    and not c.transport.is_closing()]
            if idle:
                min(idle, key=lambda c: c._idle_since).close_idle()

    return GuardedH11Protocol
