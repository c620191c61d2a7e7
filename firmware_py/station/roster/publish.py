"""Publishing a site's signed roster bundle, retained at QoS 1, on ``{prefix}/{site}/roster``.

:func:`publish_roster` reads the CSV (:func:`~.bundle.read_roster`: all or nothing) and hands the
rows to :func:`publish_rows`, the one publishing path of the command line and the page: it learns
the version retained now, signs a newer one and publishes its chunks
(``{prefix}/{site}/roster/chunks/N``) before its manifest, so a door that has the manifest can
find every chunk. Chunk topics an older, longer bundle left behind are cleared. It returns
what it published, for the command line to say.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from firmware_py.errors import BundleError, ConfigError, MonitorError
from firmware_py.link import roster_bundle, roster_keys
from firmware_py.link.broker import BrokerSettings, connect, make_client
from firmware_py.station.roster.bundle import CheckedRows, SignedBundle, make_bundle, next_version, read_roster
from firmware_py.storage.roster_csv import CheckedRow

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
RETAINED_WAIT_S = 1.0  # after the subscription is granted, how long retained copies may take to arrive
PUBLISH_TIMEOUT_S = 60.0


def roster_topic(prefix: str, site: str) -> str:
    return f"{prefix}/{site}/roster"


def chunk_topic(prefix: str, site: str, index: int) -> str:
    return f"{prefix}/{site}/roster/chunks/{index}"


@dataclass(frozen=True)
class Published:
    bundle: SignedBundle
    topic: str
    previous: int  # the version that was at the broker (0: none)
    hours: str = ""  # what the bundle says of the doors' hours
    pins: str = ""  # and of their PINs

    def __str__(self) -> str:
        b = self.bundle
        return (f"published roster version {b.version} for site {b.site}: {b.count} persons, "
                f"{b.payload_bytes} bytes compressed in {len(b.chunks)} chunk{'s' if len(b.chunks) != 1 else ''} "
                f"({b.wire_bytes} bytes signed), retained on {self.topic}; valid until "
                f"{b.valid_until.isoformat(timespec='seconds')}"
                + (f"; replaces version {self.previous}" if self.previous else "")
                + (f"\n  hours: {self.hours}" if self.hours else "") + (f"\n  PINs: {self.pins}" if self.pins else ""))


def hours_note(cfg) -> str:
    """What a bundle made with the station's ``cfg`` does to the doors' hours, in one line."""
    r = cfg.roster
    if r.calendar is None:
        return ("each door keeps the hours of its own [calendar] (the station's config has no [roster.calendar]; "
                "docs/station.md, 'Hours from the centre')")
    return (f"the doors take these: {len(r.schedules)} schedule group(s) ({', '.join(sorted(r.schedules))}), "
            f"{len(r.calendar['holidays'])} holiday(s), {len(r.calendar['working_days'])} adjusted working day(s)")


def pins_note(rows) -> str:
    pins = rows.pins if isinstance(rows, CheckedRows) else None
    if pins is None:
        return "the file has no PIN hash columns: each door keeps the PINs set there"
    return (f"{sum(p is not None for p, _ in pins.values())} PIN hash(es), "
            f"{sum(d is not None for _, d in pins.values())} duress PIN hash(es); they replace the PINs set at "
            "each door")


def roster_keys_missing(cfg) -> str | None:
    """What the station's ``[roster]`` section lacks to publish (None: nothing)."""
    r = cfg.roster
    if r.signing_key is None or r.site_key is None:
        return (f"{cfg.path}: [roster] signing_key and site_key are both needed to publish a roster "
                "(docs/commissioning.md, 'Roster keys')")
    if not r.schedules:
        return (f"{cfg.path}: [roster.schedule.NAME]: no schedule group; list each group the doors "
                "have (as in their [calendar.schedule.NAME]) so that rows naming them can be checked")
    return None


def site_roster_key(cfg) -> bytes:
    """The site roster key the CSV's ID numbers are hashed under (:class:`ConfigError` if not configured)."""
    missing = roster_keys_missing(cfg)
    if missing:
        raise ConfigError(missing)
    return roster_keys.load_site_key(cfg.roster.site_key)


def publish_roster(cfg, csv_path: str | Path, *, site: str | None = None, valid_for_days: float | None = None,
                   now: datetime | None = None) -> Published:
    """Check, sign and publish ``csv_path`` as the roster of ``site`` with the station's ``cfg``,
    on a connection of its own (the command line)."""
    site = _site(cfg, site)
    site_key = site_roster_key(cfg)
    now = now or datetime.now(cfg.web.timezone)
    rows = read_roster(csv_path, site_key=site_key, schedule_groups=cfg.roster.schedules, today=now.date())
    _days(cfg, valid_for_days)
    signing_key = roster_keys.load_signing_key(cfg.roster.signing_key)
    with _Publisher(cfg.broker, signing_key.public_key()) as pub:
        return publish_rows(cfg, rows, link=pub, site=site, valid_for_days=valid_for_days, now=now)


def publish_rows(cfg, rows: list[CheckedRow], *, link, site: str | None = None,
                 valid_for_days: float | None = None, now: datetime | None = None) -> Published:
    """Sign the checked ``rows`` as the next version of ``site``'s roster and publish it over ``link``.

    The one publishing path of the command line (:func:`publish_roster`, its own connection) and
    of the page (:class:`ClientLink`, the station's connection). ``link`` tells the version and
    chunk count retained now (``retained``), checks a bundle's size (``check_size``), publishes
    retained at QoS 1 (``publish``) and waits for the broker's acknowledgements (``wait``)."""
    site = _site(cfg, site)
    site_key = site_roster_key(cfg)
    days = _days(cfg, valid_for_days)
    signing_key = roster_keys.load_signing_key(cfg.roster.signing_key)
    now = now or datetime.now(cfg.web.timezone)
    topic = roster_topic(cfg.broker.prefix, site)
    previous, previous_chunks = link.retained(topic)
    bundle = make_bundle(rows, site=site, version=next_version(previous, now), made_at=now,
                         valid_for=timedelta(days=days), signing_key=signing_key, site_key=site_key,
                         schedules=cfg.roster.schedules, calendar=cfg.roster.calendar,
                         chunk_bytes=cfg.roster.chunk_bytes)
    link.check_size(bundle)
    for i, chunk in enumerate(bundle.chunks):
        link.publish(chunk_topic(cfg.broker.prefix, site, i), chunk)
    link.wait()  # every chunk is at the broker before the manifest that names them
    link.publish(topic, bundle.manifest)
    for i in range(len(bundle.chunks), previous_chunks):
        link.publish(chunk_topic(cfg.broker.prefix, site, i), b"")  # an empty retained message clears it
    link.wait()
    log.info("roster version %d for %s published (%d persons)", bundle.version, site, bundle.count)
    return Published(bundle, topic, previous, hours_note(cfg), pins_note(rows))


def _site(cfg, site: str | None) -> str:
    site = site or cfg.roster.site
    if not site:
        raise ConfigError(f"{cfg.path}: [roster] site is not set; give --site SITE")
    return site


def _days(cfg, valid_for_days: float | None) -> float:
    days = valid_for_days if valid_for_days is not None else cfg.roster.valid_for_days
    if not 0 < days <= 3660:
        raise ConfigError(f"--valid-for {days}: give a number of days from 1 to 3660")
    return days


class ClientLink:
    """Publishing over a client that is already connected (the running station's own connection, so that
    its broker account is not logged in twice). What is retained now is what this station last published,
    as its archive keeps it: ``previous`` (version, chunk count)."""

    def __init__(self, client, previous: tuple[int, int] = (0, 0), *, timeout_s: float = PUBLISH_TIMEOUT_S):
        self.client, self.previous, self.timeout_s = client, previous, timeout_s
        self.pending: list = []

    def retained(self, topic: str) -> tuple[int, int]:
        return self.previous

    def check_size(self, bundle: SignedBundle) -> None:
        return None  # the chunks are at most [roster] chunk_bytes, below the venue broker's packet limit

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=True)
        if info.rc != 0:
            raise MonitorError(f"could not publish on {topic}: {info.rc}; the doors keep the roster they have")
        self.pending.append((topic, info))

    def wait(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        for topic, info in self.pending:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise MonitorError(f"the broker did not acknowledge {topic} within {self.timeout_s:.0f} s; "
                                   "the doors keep the roster they have")
        self.pending = []


class _Publisher:
    """A short-lived client of the station's broker account that waits for every PUBACK."""

    def __init__(self, broker, public_key):
        self.settings = BrokerSettings.from_config(broker, persistent_session=False,
                                                   client_id=f"{broker.client_id}-roster")
        self.public_key = public_key
        self.client = make_client(self.settings)
        self.cond = threading.Condition()
        self.connected: str | None = None  # "" when connected, else why not
        self.max_packet: int | None = None
        self.pending: set[int] = set()
        self.refused: list[str] = []
        self.retained_messages: list[bytes] = []
        self.subscribed = False
        c = self.client
        c.on_connect, c.on_publish, c.on_subscribe, c.on_message = (self._on_connect, self._on_publish,
                                                                    self._on_subscribe, self._on_message)

    def __enter__(self) -> _Publisher:
        try:
            connect(self.client, self.settings, background=False)
        except (OSError, ValueError) as exc:
            raise MonitorError(f"cannot reach the broker {self.settings.url}: {exc}") from None
        self.client.loop_start()
        with self.cond:
            if not self.cond.wait_for(lambda: self.connected is not None, CONNECT_TIMEOUT_S):
                self.__exit__(None, None, None)
                raise MonitorError(f"the broker {self.settings.url} did not answer within {CONNECT_TIMEOUT_S:.0f} s")
        if self.connected:
            self.__exit__(None, None, None)
            raise MonitorError(f"the broker {self.settings.url} refused the connection: {self.connected}")
        return self

    def __exit__(self, *exc) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        with self.cond:
            self.connected = str(reason_code) if reason_code.is_failure else ""
            self.max_packet = getattr(properties, "MaximumPacketSize", None) if properties else None
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self.cond:
            self.subscribed = True
            self.cond.notify_all()

    def _on_message(self, client, userdata, message) -> None:
        if message.retain:
            with self.cond:
                self.retained_messages.append(message.payload)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self.cond:
            self.pending.discard(mid)
            if reason_code.is_failure:
                self.refused.append(str(reason_code))
            self.cond.notify_all()

    def retained(self, topic: str) -> tuple[int, int]:
        """The version and chunk count of the manifest retained on ``topic`` (signed by this station), or 0, 0."""
        self.client.subscribe(topic, qos=1)
        with self.cond:
            self.cond.wait_for(lambda: self.subscribed, CONNECT_TIMEOUT_S)
        time.sleep(RETAINED_WAIT_S)
        self.client.unsubscribe(topic)
        with self.cond:
            messages = list(self.retained_messages)
        for payload in messages[-1:]:
            try:
                manifest = roster_bundle.read_message(payload, self.public_key)
            except BundleError as exc:
                log.warning("the roster retained on %s is not this station's (%s); publishing over it", topic, exc)
                return 0, 0
            if isinstance(manifest, roster_bundle.Manifest):
                return manifest.version, len(manifest.chunks)
        return 0, 0

    def check_size(self, bundle: SignedBundle) -> None:
        largest = max(len(m) for m in (bundle.manifest, *bundle.chunks))
        if self.max_packet and largest + 1024 > self.max_packet:
            raise ConfigError(f"the broker takes packets up to {self.max_packet} bytes and a chunk is {largest}: "
                              "lower [roster] chunk_bytes")

    def publish(self, topic: str, payload: bytes) -> None:
        with self.cond:
            info = self.client.publish(topic, payload, qos=1, retain=True)
            if info.rc != 0:
                raise MonitorError(f"could not publish on {topic}: {info.rc}")
            self.pending.add(info.mid)

    def wait(self) -> None:
        with self.cond:
            done = self.cond.wait_for(lambda: not self.pending, PUBLISH_TIMEOUT_S)
            refused, self.refused = self.refused, []
        if not done:
            raise MonitorError(f"the broker did not acknowledge the roster within {PUBLISH_TIMEOUT_S:.0f} s; "
                               "the doors keep the roster they have")
        if refused:
            raise MonitorError(f"the broker refused the roster: {refused[0]} (check the station account's ACL: "
                               "it must write {prefix}/SITE/roster and {prefix}/SITE/roster/chunks/+)")
