"""The station's configuration: one TOML file (``config/station.example.toml``), checked in full.

Every problem names the file, the section and key, the bad value and what is allowed; all of a
file's problems are reported together; unknown keys are errors. The command line's ``--broker``,
``--archive`` and ``--listen`` override the file (:func:`with_overrides`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from firmware_py.config.schema import (  # the door's checker: one way to read and report a TOML table
    _NAME,
    WEEKDAYS,
    _parse_dates,
    _parse_window,
    _Problems,
    _Section,
    broker_option,
    read_broker_urls,
    read_toml,
)
from firmware_py.errors import ConfigError
from firmware_py.link.broker import CLIENT_ID, SESSION_EXPIRY_S

LISTEN = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})")


@dataclass(frozen=True)
class BrokerConfig:
    url: str  # mqtt://host:port or mqtts://host:port: the first broker (node) tried

    username: str
    password_file: Path | None
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    tls_verify: bool
    protocol: int  # 5 or 311
    prefix: str
    client_id: str  # the broker-side persistent session's name; "": the station's own, kept in client_id_file
    beacon_interval_s: float  # 0: publish no time beacon (beside a simulator on simulated time)
    fallback_urls: tuple[str, ...] = ()  # the cluster's other nodes, tried in turn when a connection ends
    client_id_file: Path | None = None  # where the station's own client id is kept (default: client_id_path)
    session_expiry_s: int = SESSION_EXPIRY_S  # MQTT 5: how long the broker keeps the session (as the broker does)


@dataclass(frozen=True)
class ArchiveConfig:
    path: Path | None  # SQLite file (events, doors, and the station's accounts, sessions, acknowledgements, audit)
    url: str = ""  # or a PostgreSQL archive, postgresql://… (then path is None)

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else safe_url(self.url)


def is_postgres(text: str) -> bool:
    return text.startswith(("postgresql://", "postgres://"))


def safe_url(url: str) -> str:
    """``url`` without a password, for messages and logs: ``user:secret@``, a ``?password=``
    parameter, or ``password=`` in a keyword connection string (``user=u password=s host=h``)."""
    url = re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)
    return re.sub(r"(\bpassword=)('[^']*'|[^\s&]*)", r"\1***", url)


@dataclass(frozen=True)
class WebConfig:
    host: str
    port: int
    certificate: Path | None  # HTTPS when both are set
    key: Path | None
    timezone: ZoneInfo  # the site's zone: "today", register dates, the chart's hours
    session_idle_s: float  # a session unused this long ends

    @property
    def https(self) -> bool:
        return self.certificate is not None

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RosterConfig:
    signing_key: Path | None  # Ed25519 key for the roster bundles (accessctl station roster publish)
    site_key: Path | None = None  # the site roster key: ID numbers are hashed under it, as every door matches them
    site: str = ""  # the site published to when --site is not given
    valid_for_days: float = 30  # how long doors may keep using a bundle without hearing a newer one
    chunk_bytes: int = 1024 * 1024  # a bundle larger than this travels in several signed chunks
    schedules: dict = field(default_factory=dict)  # group -> weekday -> ["08:30-12:00", ...], carried in the bundle
    # [roster.calendar]: holidays, working_days, adjusted_day_schedule as bundle text; with it the bundle sets
    # the doors' hours (schedules and calendar); None: each door keeps the hours of its own [calendar]
    calendar: dict | None = None


@dataclass(frozen=True)
class StationConfig:
    path: Path
    digest: str
    broker: BrokerConfig
    archive: ArchiveConfig
    web: WebConfig
    roster: RosterConfig


def parse_listen(text: str, where: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8443`` for IPv6) → (host, port); ConfigError naming ``where`` otherwise."""
    m = LISTEN.fullmatch(text or "")
    if not m or not 0 < int(m.group(2)) < 65536:
        raise ConfigError(f"{where}: {text!r} is not like 127.0.0.1:8080 (host and port 1-65535)")
    return m.group(1).strip("[]"), int(m.group(2))


def _read_broker(sec: _Section, base: Path, problems: _Problems) -> BrokerConfig:
    urls = read_broker_urls(sec, "url", problems)
    protocol = sec.number("protocol", 5, integer=True)
    if protocol not in (5, 311):
        problems.add(sec.where("protocol"), f"{protocol!r} is not 5 (MQTT 5) or 311 (MQTT 3.1.1)")
    prefix = sec.string("prefix", "accessctl")
    if prefix and (any(c in prefix for c in "#+") or prefix.startswith("/") or prefix.endswith("/")):
        problems.add(sec.where("prefix"), f"{prefix!r} may not contain # or + nor start or end with /")
    cfg = BrokerConfig(
        url=urls[0] if urls else "", fallback_urls=tuple(urls[1:]), username=sec.string("username", ""),
        password_file=sec.path("password_file", base, ""),
        ca_file=sec.path("ca_file", base, ""), cert_file=sec.path("cert_file", base, ""),
        key_file=sec.path("key_file", base, ""), tls_verify=sec.boolean("tls_verify", True), protocol=protocol,
        prefix=prefix, client_id=sec.string("client_id", ""), client_id_file=sec.path("client_id_file", base, ""),
        session_expiry_s=sec.number("session_expiry_s", SESSION_EXPIRY_S, minimum=60, maximum=2**32 - 1,
                                    integer=True),
        beacon_interval_s=sec.number("beacon_interval_s", 60, minimum=0, maximum=86400))
    if cfg.client_id and not CLIENT_ID.fullmatch(cfg.client_id):
        problems.add(sec.where("client_id"), f"{cfg.client_id!r} is not a client id (letters, digits, - and _, at "
                                             "most 128); leave it out to have the station make its own")
    if (cfg.cert_file is None) != (cfg.key_file is None):
        problems.add(sec.where("cert_file"), "cert_file and key_file go together: set both or neither")
    if cfg.username and cfg.password_file is None:
        problems.add(sec.where("password_file"), f"username {cfg.username!r} needs a password_file")
    return cfg


def _read_web(sec: _Section, base: Path, problems: _Problems) -> WebConfig:
    listen = sec.string("listen", "127.0.0.1:8080")
    try:
        host, port = parse_listen(listen, sec.where("listen"))
    except ConfigError as exc:
        problems.add(sec.where("listen"), str(exc).split(": ", 1)[1])
        host, port = "127.0.0.1", 8080
    tz_name = sec.string("timezone", "Asia/Shanghai")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        problems.add(sec.where("timezone"), f"{tz_name!r} is not a known time zone (e.g. Asia/Shanghai)")
        tz = ZoneInfo("Asia/Shanghai")
    cfg = WebConfig(host=host, port=port, certificate=sec.path("certificate", base, ""), key=sec.path("key", base, ""),
                    timezone=tz, session_idle_s=sec.number("session_idle_s", 8 * 3600, minimum=60, maximum=7 * 86400))
    if (cfg.certificate is None) != (cfg.key is None):
        problems.add(sec.where("certificate"), "certificate and key go together: set both for HTTPS, or neither")
    for key, path in (("certificate", cfg.certificate), ("key", cfg.key)):
        if path is not None and not path.is_file():
            problems.add(sec.where(key), f"{str(path)!r}: no such file")
    return cfg


def _read_roster(sec: _Section, base: Path, problems: _Problems) -> RosterConfig:
    site = sec.string("site", "")
    if site and not _NAME.match(site):
        problems.add(sec.where("site"), f"{site!r} must be lower-case letters, digits, '-' or '_'")
    schedules: dict = {}
    groups = sec.sub("schedule", required=False)
    for group, days in groups.data.items():
        groups.seen.add(group)
        gsec = _Section(days, f"{groups.name}.{group}", problems)
        if not _NAME.match(group):
            problems.add(f"[{gsec.name}]", "schedule group names are lower-case letters, digits, '-' or '_'")
        week = {}
        for day in WEEKDAYS:
            raw = gsec._get(day, [])
            if not isinstance(raw, list):
                problems.add(gsec.where(day), "must be a list of windows like [\"08:30-12:00\", \"14:00-17:30\"]")
                continue
            if all(_parse_window(t, gsec.where(day), problems) for t in raw) and raw:
                week[day] = list(raw)
        gsec.finish()
        schedules[group] = week
    calendar = None
    if "calendar" in sec.data:
        csec = sec.sub("calendar")
        holidays = _parse_dates(csec._get("holidays", []), csec.where("holidays"), problems)
        working = _parse_dates(csec._get("working_days", []), csec.where("working_days"), problems)
        if holidays & working:
            problems.add(csec.where("working_days"), f"{', '.join(map(str, sorted(holidays & working)))} also "
                                                     "listed as holidays")
        adjusted = csec.string("adjusted_day_schedule", "mon", choices=WEEKDAYS)
        csec.finish()
        if not schedules:
            problems.add(f"[{csec.name}]", "the hours the doors take need the groups' weekly windows as well: "
                                           "add [roster.schedule.NAME] for each group")
        calendar = {"holidays": sorted(d.isoformat() for d in holidays),
                    "working_days": sorted(d.isoformat() for d in working), "adjusted_day_schedule": adjusted}
    return RosterConfig(signing_key=sec.path("signing_key", base, ""), site_key=sec.path("site_key", base, ""),
                        site=site, valid_for_days=sec.number("valid_for_days", 30, minimum=1, maximum=3660),
                        chunk_bytes=sec.number("chunk_bytes", 1024 * 1024, integer=True, minimum=1024,
                                               maximum=4 * 1024 * 1024 - 4096),
                        schedules=schedules, calendar=calendar)


STATE_DIR = Path("/var/lib/accessctl")  # the station's state beside a PostgreSQL archive (deploy/install.sh)


def client_id_path(cfg: StationConfig) -> Path:
    """Where the station keeps its own MQTT client id: ``[broker] client_id_file``, else beside the SQLite
    archive (``ARCHIVE.client-id``), else ``/var/lib/accessctl/station.client-id`` (PostgreSQL)."""
    if cfg.broker.client_id_file is not None:
        return cfg.broker.client_id_file
    if cfg.archive.path is not None:
        return cfg.archive.path.with_name(cfg.archive.path.name + ".client-id")
    return STATE_DIR / "station.client-id"


def check_archive(text: str, where: str) -> None:
    if is_postgres(text):
        if not re.fullmatch(r"postgres(ql)?://[^\s]+", text):
            raise ConfigError(f"{where}: {safe_url(text)!r} is not like postgresql://user@host:5432/archive")
        return
    if text == ":memory:":
        raise ConfigError(f"{where}: the archive must be a file on disk, not :memory:")


def load_station_config(path: str | Path) -> StationConfig:
    """Read and check the station's configuration; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    raw, top = read_toml(path, "station configuration")
    problems = top.problems
    base = path.parent.resolve()

    s = top.sub("broker")
    broker = _read_broker(s, base, problems)
    s.finish()

    s = top.sub("archive")
    if isinstance(s.data.get("path"), str):
        try:
            check_archive(s.data["path"], s.where("path"))
        except ConfigError as exc:
            problems.add(s.where("path"), str(exc).split(": ", 1)[1])
    if isinstance(s.data.get("path"), str) and is_postgres(s.data["path"]):
        archive = ArchiveConfig(None, s.string("path"))
    else:
        archive = ArchiveConfig(s.path("path", base, "/var/lib/accessctl/station-archive.db"))
    s.finish()

    s = top.sub("web", required=False)
    web = _read_web(s, base, problems)
    s.finish()

    s = top.sub("roster", required=False)
    roster = _read_roster(s, base, problems)
    s.finish()

    top.finish()
    problems.raise_if_any()
    return StationConfig(path=path, digest=hashlib.sha256(raw).hexdigest(), broker=broker, archive=archive,
                         web=web, roster=roster)


def with_overrides(cfg: StationConfig, *, broker: str | None = None, archive: str | None = None,
                   listen: str | None = None, protocol: int | None = None) -> StationConfig:
    """The configuration with the command line's ``--broker``, ``--archive``, ``--listen`` and
    ``--protocol`` applied.

    ``--broker`` follows the door's rule (:func:`firmware_py.config.schema.broker_override`): a plain
    ``mqtt://`` broker is reached anonymously without TLS, an ``mqtts://`` one with the file's account."""
    if broker is not None:
        first, changes = broker_option(broker)
        cfg = replace(cfg, broker=replace(cfg.broker, url=first, **changes))
    if archive is not None:
        check_archive(archive, "--archive")
        chosen = ArchiveConfig(None, archive) if is_postgres(archive) else ArchiveConfig(Path(archive))
        cfg = replace(cfg, archive=chosen)
    if protocol is not None:
        if protocol not in (5, 311):
            raise ConfigError(f"--protocol {protocol!r} is not 5 (MQTT 5) or 311 (MQTT 3.1.1)")
        cfg = replace(cfg, broker=replace(cfg.broker, protocol=protocol))
    if listen is not None:
        host, port = parse_listen(listen, "--listen")
        cfg = replace(cfg, web=replace(cfg.web, host=host, port=port))
    return cfg
