"""The controller's configuration: one TOML file, loaded once, validated, frozen.

Every error names the file, the section and key, the bad value and what is
allowed, and all errors of a file are reported together so a technician fixes
them in one pass. Unknown keys are errors: a misspelt key must never fall back
silently to a default.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from firmware_py.core.people import ROLES
from firmware_py.errors import ConfigError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
GPIO_PINS = range(0, 28)  # BCM numbering on the Pi's 40-pin header
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# A broker address: mqtt://HOST:PORT (plain) or mqtts://HOST:PORT (TLS); the door's, the station's and the monitor's.
BROKER_URL = re.compile(r"(mqtts?)://([^/:\s]+):(\d{1,5})")
BROKER_URL_EXAMPLE = "mqtt://host:1883 or mqtts://host:8883"


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class SiteConfig:
    site: str
    door: str
    timezone: ZoneInfo


@dataclass(frozen=True)
class StorageConfig:
    database: Path
    secret: Path


@dataclass(frozen=True)
class LockConfig:
    pin: int
    type: str  # "fail_secure" (strike: energise to release) | "fail_safe" (maglock: energise to hold)
    active_high: bool


@dataclass(frozen=True)
class InputPinConfig:
    pin: int
    pull_up: bool
    bounce_s: float


@dataclass(frozen=True)
class IndicatorsConfig:
    buzzer_pin: int
    green_outside_pin: int
    red_outside_pin: int
    green_inside_pin: int
    red_inside_pin: int


@dataclass(frozen=True)
class GateConfig:
    alarm_pin: int
    alarm_contact: str  # "normally_closed" (a cut wire reads as alarm) | "normally_open"
    passage_pin: int | None
    tamper_pin: int | None
    pull_up: bool
    passage_window_s: float


@dataclass(frozen=True)
class IdReaderConfig:
    side: str
    port: str
    baudrate: int
    poll_interval_s: float
    response_timeout_s: float
    tamper_pin: int | None


@dataclass(frozen=True)
class BadgeReaderConfig:
    side: str
    reader_name: str  # substring of the PC/SC reader name
    tamper_pin: int | None


@dataclass(frozen=True)
class KeypadReaderConfig:
    """An OSDP card reader with a PIN keypad (docs/osdp-readers.md), on an RS-485 adapter."""

    side: str
    port: str
    scbk_file: Path  # the reader's secure channel key: 32 hex digits, mode 0600
    address: int
    baudrate: int


@dataclass(frozen=True)
class HardwareConfig:
    lock: LockConfig
    door_contact: InputPinConfig
    exit_button: InputPinConfig
    indicators: IndicatorsConfig
    gate: GateConfig
    id_readers: tuple[IdReaderConfig, ...]
    badge_readers: tuple[BadgeReaderConfig, ...]
    keypad_readers: tuple[KeypadReaderConfig, ...] = ()


@dataclass(frozen=True)
class PolicyConfig:
    min_training_hours: float
    unlock_window_s: float
    screening_window_s: float
    door_held_open_s: float
    screen_on_exit: bool
    anti_passback: str  # "hard" (deny) | "soft" (allow, but note it) | "off"
    escort_window_s: float
    clock_floor: datetime
    max_clock_backstep_s: float
    max_failures: int  # consecutive denials at one reader that raise repeated_failures (GB 50396 5.1.5-1)
    failure_window_s: float
    reader_lockout_s: float
    clock_drift_s: float  # beacon and own clock differ by more: clock_drift (GB 50396 5.1.3)
    clock_gross_drift_s: float  # differ by more: the clock is unsynchronised
    # own wall and monotonic clocks parted by more since a beacon confirmed the clock: unsynchronised
    max_clock_divergence_s: float = 60.0
    # Second factor (GB/T 37078 §6.3): who must enter a PIN after the credential, on the way in.
    pin_required: bool = False  # everyone at this door
    pin_schedule_groups: tuple[str, ...] = ()  # people of these schedule groups
    pin_roles: tuple[str, ...] = ()  # people with these roles
    pin_timeout_s: float = 15.0  # from the credential to the PIN's closing '#'


@dataclass(frozen=True)
class TimeWindow:
    start: time
    end: time  # exclusive

    def contains(self, t: time) -> bool:
        return self.start <= t < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class CalendarConfig:
    schedules: dict[str, dict[str, tuple[TimeWindow, ...]]]  # group -> weekday -> windows
    holidays: frozenset[date]
    working_days: frozenset[date]  # adjusted working days (worked although at a weekend)
    adjusted_day_schedule: str  # which weekday's windows an adjusted working day uses


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool
    broker: str  # mqtt://host:port or mqtts://host:port
    prefix: str
    protocol: int  # 5 or 311
    client_id: str
    username: str
    password_file: Path | None
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    tls_verify: bool
    keepalive_s: int
    status_interval_s: float
    link_down_after_s: float  # broker unreachable longer than this: link_down alarm (GB 50396 5.1.5-5)
    fallback_urls: tuple[str, ...] = ()  # the cluster's other nodes, tried in turn when a connection ends


@dataclass(frozen=True)
class RosterKeysConfig:
    """The keys of a station-signed roster (docs/commissioning.md, "Roster keys"); both or neither.

    With them the door applies only bundles that verify with ``station_public_key`` and runs only
    commands from the broker the station signed for this door (DESIGN.md "Roster bundles").
    """

    station_public_key: Path | None = None  # the station's Ed25519 key (PEM): bundles, commands verify with it
    site_key: Path | None = None  # the site roster key (32 bytes, 0600): ID numbers are hashed under it
    notes: tuple[str, ...] = ()  # settings of the section read and no longer used (config_warnings says them)

    @property
    def enabled(self) -> bool:
        return self.station_public_key is not None


@dataclass(frozen=True)
class Config:
    path: Path
    digest: str  # sha-256 of the file's bytes, reported in controller_started
    site: SiteConfig
    storage: StorageConfig
    hardware: HardwareConfig
    policy: PolicyConfig
    calendar: CalendarConfig
    mqtt: MqttConfig
    roster: RosterKeysConfig = RosterKeysConfig()


# --------------------------------------------------------------------------- reading


class _Problems:
    def __init__(self, path: Path):
        self.path = path
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{self.path}: {where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError("\n".join(self.items))


_MISSING = object()


class _Section:
    """One TOML table; remembers which keys were read so the rest can be reported as unknown."""

    def __init__(self, data: Any, name: str, problems: _Problems):
        self.name = name
        self.problems = problems
        if not isinstance(data, dict):
            problems.add(f"[{name}]", f"must be a table, not {type(data).__name__}")
            data = {}
        self.data = data
        self.seen: set[str] = set()

    def where(self, key: str) -> str:
        return f"[{self.name}] {key}"

    def _get(self, key: str, default: Any) -> Any:
        self.seen.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            self.problems.add(self.where(key), "is required but missing")
        return default

    def sub(self, key: str, required: bool = True) -> _Section:
        value = self._get(key, _MISSING if required else {})
        name = f"{self.name}.{key}" if self.name else key
        return _Section(value if value is not _MISSING else {}, name, self.problems)

    def string(self, key: str, default: Any = _MISSING, *, pattern: re.Pattern | None = None,
               choices: tuple[str, ...] | None = None) -> Any:
        value = self._get(key, default)
        if value is _MISSING or value is None:
            return None if value is None else ""
        if not isinstance(value, str):
            self.problems.add(self.where(key), f"{value!r} must be a string")
            return default if default is not _MISSING else ""
        if choices is not None and value not in choices:
            self.problems.add(self.where(key), f"{value!r} is not one of {', '.join(choices)}")
        if pattern is not None and not pattern.match(value):
            self.problems.add(self.where(key), f"{value!r} must be lower-case letters, digits, '-' or '_'")
        return value

    def number(self, key: str, default: Any = _MISSING, *, minimum: float | None = None,
               maximum: float | None = None, integer: bool = False) -> Any:
        value = self._get(key, default)
        if value is _MISSING:
            return 0
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            kind = "a whole number" if integer else "a number"
            self.problems.add(self.where(key), f"{value!r} must be {kind}")
            return 0
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            self.problems.add(self.where(key), f"{value} is out of range: allowed {bounds}")
        return value

    def pin(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is None or value is _MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value not in GPIO_PINS:
            self.problems.add(self.where(key), f"{value!r} is not a GPIO pin (BCM numbers 0 to 27)")
            return None
        return value

    def strings(self, key: str, default: Any = _MISSING) -> list[str]:
        """A string or an array of strings (an empty array counts as missing)."""
        value = self._get(key, default)
        if value is _MISSING or value is None:
            return []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
            self.problems.add(self.where(key), f"{value!r} must be a string or an array of strings")
            return []
        return items

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        value = self._get(key, default)
        if value is _MISSING:
            return False
        if not isinstance(value, bool):
            self.problems.add(self.where(key), f"{value!r} must be true or false")
            return False
        return value

    def path(self, key: str, base: Path, default: Any = _MISSING) -> Path | None:
        value = self.string(key, default)
        if not value:
            return None
        try:
            p = Path(value).expanduser()
        except RuntimeError:  # ~someone for a user this machine does not have
            self.problems.add(self.where(key), f"{value!r}: no such user's home directory; give an absolute path")
            return None
        return p if p.is_absolute() else (base / p)

    def finish(self) -> None:
        for key in sorted(set(self.data) - self.seen):
            shown = key if key.isprintable() else repr(key)  # one problem per line, whatever the key holds
            self.problems.add(self.where(shown), "is not a known setting (misspelt?)")


def _parse_window(text: Any, where: str, problems: _Problems) -> TimeWindow | None:
    m = re.fullmatch(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})", text) if isinstance(text, str) else None
    if not m:
        problems.add(where, f"{text!r} is not a window like \"08:30-12:00\"")
        return None
    h1, m1, h2, m2 = map(int, m.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        problems.add(where, f"{text!r} has an impossible time")
        return None
    start = time(h1, m1)
    end = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
    if end <= start:
        problems.add(where, f"{text!r} ends before it starts (windows cannot cross midnight)")
        return None
    return TimeWindow(start, end)


def _parse_dates(values: Any, where: str, problems: _Problems) -> frozenset[date]:
    if not isinstance(values, list):
        problems.add(where, "must be a list of dates like [2026-10-01, ...]")
        return frozenset()
    out = set()
    for v in values:
        if isinstance(v, date) and not isinstance(v, datetime):
            out.add(v)
        elif isinstance(v, str):
            try:
                out.add(date.fromisoformat(v))
            except ValueError:
                problems.add(where, f"{v!r} is not a date (YYYY-MM-DD)")
        else:
            problems.add(where, f"{v!r} is not a date (YYYY-MM-DD)")
    return frozenset(out)


def _read_calendar(sec: _Section, problems: _Problems) -> CalendarConfig:
    schedules: dict[str, dict[str, tuple[TimeWindow, ...]]] = {}
    groups = sec.sub("schedule")
    for group, days in groups.data.items():
        groups.seen.add(group)
        gsec = _Section(days, f"{groups.name}.{group}", problems)
        if not _NAME.match(group):
            problems.add(f"[{gsec.name}]", "schedule group names are lower-case letters, digits, '-' or '_'")
        week: dict[str, tuple[TimeWindow, ...]] = {}
        for day in WEEKDAYS:
            raw = gsec._get(day, [])
            if not isinstance(raw, list):
                problems.add(gsec.where(day), "must be a list of windows like [\"08:30-12:00\", \"14:00-17:30\"]")
                raw = []
            windows = [w for w in (_parse_window(t, gsec.where(day), problems) for t in raw) if w]
            windows.sort(key=lambda w: w.start)
            for a, b in zip(windows, windows[1:]):
                if b.start < a.end:
                    problems.add(gsec.where(day), f"windows {a} and {b} overlap")
            week[day] = tuple(windows)
        gsec.finish()
        schedules[group] = week
    if not schedules:
        problems.add(f"[{groups.name}]", "needs at least one schedule group, e.g. [calendar.schedule.office]")
    holidays = _parse_dates(sec._get("holidays", []), sec.where("holidays"), problems)
    working = _parse_dates(sec._get("working_days", []), sec.where("working_days"), problems)
    both = holidays & working
    if both:
        problems.add(sec.where("working_days"), f"{', '.join(map(str, sorted(both)))} also listed as holidays")
    adjusted = sec.string("adjusted_day_schedule", "mon", choices=WEEKDAYS)
    return CalendarConfig(schedules, holidays, working, adjusted)


def _read_hardware(sec: _Section, base: Path, problems: _Problems) -> HardwareConfig:
    def input_pin(name: str) -> InputPinConfig:
        s = sec.sub(name)
        cfg = InputPinConfig(s.pin("pin"), s.boolean("pull_up", True), s.number("bounce_s", 0.02, minimum=0, maximum=1))
        s.finish()
        return cfg

    s = sec.sub("lock")
    lock = LockConfig(s.pin("pin"), s.string("type", choices=("fail_secure", "fail_safe")),
                      s.boolean("active_high", True))
    s.finish()
    door_contact = input_pin("door_contact")
    exit_button = input_pin("exit_button")
    s = sec.sub("indicators")
    indicators = IndicatorsConfig(*(s.pin(k) for k in ("buzzer_pin", "green_outside_pin", "red_outside_pin",
                                                       "green_inside_pin", "red_inside_pin")))
    s.finish()
    s = sec.sub("gate")
    gate = GateConfig(
        alarm_pin=s.pin("alarm_pin"),
        alarm_contact=s.string("alarm_contact", "normally_closed", choices=("normally_closed", "normally_open")),
        passage_pin=s.pin("passage_pin", None),
        tamper_pin=s.pin("tamper_pin", None),
        pull_up=s.boolean("pull_up", True),
        passage_window_s=s.number("passage_window_s", 1.5, minimum=0.1, maximum=10),
    )
    s.finish()

    id_readers = []
    raw = sec._get("id_reader", [])
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        r = _Section(item, f"hardware.id_reader #{i + 1}", problems)
        id_readers.append(IdReaderConfig(
            side=r.string("side", choices=("outside", "inside")),
            port=r.string("port"),
            baudrate=r.number("baudrate", 115200, integer=True, minimum=1200, maximum=921600),
            poll_interval_s=r.number("poll_interval_s", 0.3, minimum=0.05, maximum=5),
            response_timeout_s=r.number("response_timeout_s", 1.0, minimum=0.05, maximum=10),
            tamper_pin=r.pin("tamper_pin", None),
        ))
        r.finish()
    badge_readers = []
    raw = sec._get("badge_reader", [])
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        r = _Section(item, f"hardware.badge_reader #{i + 1}", problems)
        badge_readers.append(BadgeReaderConfig(
            side=r.string("side", choices=("outside", "inside")),
            reader_name=r.string("reader_name"),
            tamper_pin=r.pin("tamper_pin", None),
        ))
        r.finish()
    keypad_readers = []
    raw = sec._get("keypad_reader", [])
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        r = _Section(item, f"hardware.keypad_reader #{i + 1}", problems)
        keypad_readers.append(KeypadReaderConfig(
            side=r.string("side", choices=("outside", "inside")),
            port=r.string("port"),
            scbk_file=r.path("scbk_file", base),
            address=r.number("address", 0, integer=True, minimum=0, maximum=126),
            baudrate=r.number("baudrate", 9600, integer=True, minimum=9600, maximum=115200),
        ))
        r.finish()
    for kind, readers in (("id_reader", id_readers), ("badge_reader", badge_readers),
                          ("keypad_reader", keypad_readers)):
        sides = [r.side for r in readers]
        for side in set(sides):
            if sides.count(side) > 1:
                problems.add(f"[[hardware.{kind}]]", f"two readers on the {side} side; one per side")
    _check_serial_ports_unique(id_readers, problems)
    _check_keypad_ports(id_readers, keypad_readers, problems)
    if not any(r.side == "outside" for r in id_readers + badge_readers + keypad_readers):
        problems.add("[hardware]", "no reader on the outside: nobody could enter. Add [[hardware.id_reader]] "
                                   "or [[hardware.badge_reader]] with side = \"outside\"")
    hw = HardwareConfig(lock, door_contact, exit_button, indicators, gate, tuple(id_readers), tuple(badge_readers),
                        tuple(keypad_readers))
    _check_pins_unique(hw, problems)
    return hw


def _serial_device(port: str) -> str:
    """The device a port names: /dev/serial/by-id/... and /dev/ttyUSB0 may be one (pyserial URLs are kept)."""
    return os.path.realpath(port) if port.startswith("/") else port


def _check_serial_ports_unique(id_readers: list[IdReaderConfig], problems: _Problems) -> None:
    seen: dict[str, IdReaderConfig] = {}
    for r in id_readers:
        if not isinstance(r.port, str) or not r.port:
            continue
        first = seen.setdefault(_serial_device(r.port), r)
        if first is r:
            continue
        if first.port == r.port:
            names = f"both on {r.port}"
        else:
            names = f"on {first.port} and {r.port}, which are the same serial port"
        problems.add("[[hardware.id_reader]] port",
                     f"the {first.side} and {r.side} ID card readers are {names}: one port answers one "
                     "reader, so each reader needs its own port (see `ls -l /dev/serial/by-id/`)")


def _check_keypad_ports(id_readers: list[IdReaderConfig], keypads: list[KeypadReaderConfig],
                        problems: _Problems) -> None:
    """Keypad readers share a bus only at one speed and with different addresses; an ID card reader's port
    is its own."""
    id_ports = {_serial_device(r.port) for r in id_readers if isinstance(r.port, str) and r.port}
    seen: dict[str, KeypadReaderConfig] = {}
    for r in keypads:
        if not isinstance(r.port, str) or not r.port:
            continue
        port = _serial_device(r.port)
        if port in id_ports:
            problems.add("[[hardware.keypad_reader]] port", f"{r.port} is an ID card reader's port; the keypad "
                                                            "readers need an RS-485 adapter of their own")
        first = seen.setdefault(port, r)
        if first is not r and (first.address == r.address or first.baudrate != r.baudrate):
            problems.add("[[hardware.keypad_reader]] address",
                         f"the {first.side} and {r.side} keypad readers share {r.port}: give them different "
                         "addresses and the same baudrate")


def _check_pins_unique(hw: HardwareConfig, problems: _Problems) -> None:
    used: dict[int, str] = {}
    pins = [("hardware.lock.pin", hw.lock.pin), ("hardware.door_contact.pin", hw.door_contact.pin),
            ("hardware.exit_button.pin", hw.exit_button.pin)]
    pins += [(f"hardware.indicators.{k}", getattr(hw.indicators, k)) for k in
             ("buzzer_pin", "green_outside_pin", "red_outside_pin", "green_inside_pin", "red_inside_pin")]
    pins += [("hardware.gate.alarm_pin", hw.gate.alarm_pin), ("hardware.gate.passage_pin", hw.gate.passage_pin),
             ("hardware.gate.tamper_pin", hw.gate.tamper_pin)]
    pins += [(f"hardware.id_reader ({r.side}).tamper_pin", r.tamper_pin) for r in hw.id_readers]
    pins += [(f"hardware.badge_reader ({r.side}).tamper_pin", r.tamper_pin) for r in hw.badge_readers]
    for name, pin in pins:
        if pin is None:
            continue
        if pin in used:
            problems.add(name, f"GPIO {pin} is already used by {used[pin]}")
        else:
            used[pin] = name


def _read_policy(sec: _Section, tz: ZoneInfo, problems: _Problems) -> PolicyConfig:
    floor_raw = sec._get("clock_floor", "2026-11-01T00:00:00+08:00")
    floor = None
    if isinstance(floor_raw, datetime):
        floor = floor_raw
    elif isinstance(floor_raw, str):
        try:
            floor = datetime.fromisoformat(floor_raw)
        except ValueError:
            pass
    if floor is None:
        problems.add(sec.where("clock_floor"), f"{floor_raw!r} is not a date-time like 2026-11-01T00:00:00+08:00")
        floor = datetime(2026, 11, 1, tzinfo=tz)
    elif floor.tzinfo is None:
        floor = floor.replace(tzinfo=tz)
    drift_s = sec.number("clock_drift_s", 5, minimum=1, maximum=3600)
    divergence = sec.number("max_clock_divergence_s", 60, minimum=1, maximum=86400)
    if isinstance(drift_s, (int, float)) and isinstance(divergence, (int, float)) and divergence < drift_s:
        problems.add(sec.where("max_clock_divergence_s"),
                     f"{divergence:g} is below clock_drift_s ({drift_s:g}): the clock would be refused "
                     "before its drift is reported")
    return PolicyConfig(
        min_training_hours=sec.number("min_training_hours", 40, minimum=0, maximum=10000),
        unlock_window_s=sec.number("unlock_window_s", 5, minimum=1, maximum=60),
        screening_window_s=sec.number("screening_window_s", 20, minimum=2, maximum=300),
        door_held_open_s=sec.number("door_held_open_s", 30, minimum=5, maximum=3600),
        screen_on_exit=sec.boolean("screen_on_exit", True),
        anti_passback=sec.string("anti_passback", "hard", choices=("hard", "soft", "off")),
        escort_window_s=sec.number("escort_window_s", 60, minimum=5, maximum=3600),
        clock_floor=floor,
        max_clock_backstep_s=sec.number("max_clock_backstep_s", 60, minimum=1, maximum=86400),
        max_failures=sec.number("max_failures", 3, integer=True, minimum=2, maximum=5),
        failure_window_s=sec.number("failure_window_s", 60, minimum=5, maximum=3600),
        reader_lockout_s=sec.number("reader_lockout_s", 60, minimum=5, maximum=3600),
        clock_drift_s=drift_s,
        clock_gross_drift_s=sec.number("clock_gross_drift_s", 300, minimum=10, maximum=86400),
        max_clock_divergence_s=divergence,
        pin_required=sec.boolean("pin_required", False),
        pin_schedule_groups=tuple(sec.strings("pin_schedule_groups", None)),
        pin_roles=tuple(_pin_roles(sec, problems)),
        pin_timeout_s=sec.number("pin_timeout_s", 15, minimum=3, maximum=120),
    )


def asks_for_pins(policy: PolicyConfig) -> bool:
    """Whether anyone at this door is asked for a PIN."""
    return bool(policy.pin_required or policy.pin_schedule_groups or policy.pin_roles)


def _pin_roles(sec: _Section, problems: _Problems) -> list[str]:
    roles = sec.strings("pin_roles", None)
    for role in roles:
        if role not in ROLES:
            problems.add(sec.where("pin_roles"), f"{role!r} is not a role; roles are {', '.join(ROLES)}")
    return roles


def _check_pin_groups(policy: PolicyConfig, calendar: CalendarConfig, where: str, problems: _Problems) -> None:
    for group in policy.pin_schedule_groups:
        if group not in calendar.schedules:
            problems.add(where, f"{group!r} is not a schedule group of [calendar.schedule]; "
                                f"groups are {', '.join(sorted(calendar.schedules))}")


def _read_mqtt(sec: _Section, base: Path, site: str, door: str, problems: _Problems) -> MqttConfig:
    brokers = read_broker_urls(sec, "broker", problems, default="mqtt://127.0.0.1:1883")
    prefix = sec.string("prefix", "accessctl")
    if prefix and (any(c in prefix for c in "#+") or prefix.startswith("/") or prefix.endswith("/")):
        problems.add(sec.where("prefix"), f"{prefix!r} may not contain # or + nor start or end with /")
    protocol = sec.number("protocol", 5, integer=True)
    if protocol not in (5, 311):
        problems.add(sec.where("protocol"), f"{protocol!r} is not 5 (MQTT 5) or 311 (MQTT 3.1.1)")
    cfg = MqttConfig(
        enabled=sec.boolean("enabled", True),
        broker=brokers[0] if brokers else "",
        fallback_urls=tuple(brokers[1:]),
        prefix=prefix,
        protocol=protocol,
        client_id=sec.string("client_id", f"accessctl-{site}-{door}"),
        username=sec.string("username", ""),
        password_file=sec.path("password_file", base, ""),
        ca_file=sec.path("ca_file", base, ""),
        cert_file=sec.path("cert_file", base, ""),
        key_file=sec.path("key_file", base, ""),
        tls_verify=sec.boolean("tls_verify", True),
        keepalive_s=sec.number("keepalive_s", 30, integer=True, minimum=5, maximum=3600),
        status_interval_s=sec.number("status_interval_s", 60, minimum=1, maximum=86400),
        link_down_after_s=sec.number("link_down_after_s", 60, minimum=1, maximum=86400),
    )
    if (cfg.cert_file is None) != (cfg.key_file is None):
        problems.add(sec.where("cert_file"), "cert_file and key_file go together: set both or neither")
    return cfg


def read_toml(path: Path, what: str) -> tuple[bytes, _Section]:
    """Read a TOML file into its top-level section (whose problems collect every mistake).

    ``what`` names the file for the technician ("configuration file", "station configuration").
    Returns the raw bytes too: the door's config digest is taken over them.
    """
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    top = _Section(data, "", _Problems(path))
    top.where = lambda key: f"[{key}]"  # type: ignore[method-assign]
    return raw_bytes, top


def load_config(path: str | Path) -> Config:
    """Read and validate the configuration; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    raw_bytes, top = read_toml(path, "configuration file")
    problems = top.problems
    base = path.parent.resolve()

    s = top.sub("site")
    tz_name = s.string("timezone", "Asia/Shanghai")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "Asia" is a folder of zones, not one
        problems.add(s.where("timezone"), f"{tz_name!r} is not a known time zone (e.g. Asia/Shanghai)")
        tz = ZoneInfo("Asia/Shanghai")
    site = SiteConfig(s.string("site", pattern=_NAME), s.string("door", pattern=_NAME), tz)
    s.finish()

    s = top.sub("storage")
    storage = StorageConfig(s.path("database", base, "/var/lib/accessctl/events.db"),
                            s.path("secret", base, "/var/lib/accessctl/device.key"))
    s.finish()

    s = top.sub("hardware")
    hardware = _read_hardware(s, base, problems)
    s.finish()

    s = top.sub("policy", required=False)
    policy = _read_policy(s, tz, problems)
    s.finish()

    s = top.sub("calendar")
    calendar = _read_calendar(s, problems)
    s.finish()
    _check_pin_groups(policy, calendar, "[policy] pin_schedule_groups", problems)
    if asks_for_pins(policy) and not any(r.side == "outside" for r in hardware.keypad_readers):
        problems.add("[policy] pin_required", "the door asks for a PIN but has no keypad reader outside: nobody "
                                              "could enter. Add [[hardware.keypad_reader]] with side = \"outside\"")

    s = top.sub("mqtt", required=False)
    mqtt = _read_mqtt(s, base, site.site, site.door, problems)
    s.finish()

    s = top.sub("roster", required=False)
    roster = RosterKeysConfig(s.path("station_public_key", base, ""), s.path("site_key", base, ""))
    if "signed_commands" in s.data:
        roster = replace(roster, notes=_signed_commands_note(s, roster, problems))
    if (roster.station_public_key is None) != (roster.site_key is None):
        problems.add(s.where("site_key"), "station_public_key and site_key go together: set both (a roster "
                                          "signed by the station) or neither (a roster imported at the door)")
    s.finish()

    top.finish()
    problems.raise_if_any()
    return Config(path=path, digest=hashlib.sha256(raw_bytes).hexdigest(), site=site, storage=storage,
                  hardware=hardware, policy=policy, calendar=calendar, mqtt=mqtt, roster=roster)


def _signed_commands_note(s: _Section, roster: RosterKeysConfig, problems: _Problems) -> tuple[str, ...]:
    """The retired ``[roster] signed_commands`` switch: the station's key alone decides now.

    With ``station_public_key`` the line is read and ignored (a note, not an error: a door must not stay
    down after an upgrade over a line that asks for what it now does anyway, or for less). ``true``
    without the key is an error: it asks for signed commands the door could not check.
    """
    value = s.boolean("signed_commands", False)
    if roster.station_public_key is None:
        if value:
            problems.add(s.where("signed_commands"), "commands are checked with the station's public key: set "
                                                     "station_public_key and site_key (docs/commissioning.md, "
                                                     "'Roster keys') and remove this line")
        return (f"{s.where('signed_commands')} is no longer read and is ignored: without station_public_key "
                "the door runs commands from the broker unsigned, as before. Remove the line",)
    return (f"{s.where('signed_commands')} = {str(value).lower()} is no longer read and is ignored: a door with "
            "station_public_key runs only commands the station signed for it, always. Remove the line",)


def config_warnings(cfg: Config) -> list[str]:
    """What is valid but weakens the door: printed by ``accessctl config check`` for the technician."""
    warnings = []
    mqtt = cfg.mqtt
    if mqtt.enabled and mqtt.broker.startswith("mqtt://"):
        warnings.append(
            f"{cfg.path}: [mqtt] broker: {mqtt.broker} is plain MQTT: events, ID data and commands cross "
            "the network not encrypted and the broker is not authenticated. Use mqtts:// with ca_file "
            "(deploy/mosquitto/README.md) outside a lab or a loopback test")
    if mqtt.enabled and not mqtt.tls_verify:
        warnings.append(
            f"{cfg.path}: [mqtt] tls_verify = false: the broker's certificate is not checked, so anyone on "
            "the network can pose as the broker, read events and send commands. Set tls_verify = true "
            "with the site's ca_file outside a lab")
    warnings += [f"{cfg.path}: {note}" for note in cfg.roster.notes]
    return warnings


def with_overrides(cfg: Config, *, database: str | Path | None = None, broker: str | None = None) -> Config:
    """The config with the command line's ``--db`` and ``--broker`` applied (``--broker``: :func:`broker_override`)."""
    from dataclasses import replace

    if database is not None:
        cfg = replace(cfg, storage=replace(cfg.storage, database=Path(database)))
    if broker is not None:
        first, changes = broker_option(broker)
        cfg = replace(cfg, mqtt=replace(cfg.mqtt, broker=first, enabled=True, **changes))
    return cfg


def read_broker_urls(sec: _Section, key: str, problems: _Problems, default: Any = _MISSING) -> list[str]:
    """A broker's address, or the addresses of a cluster's nodes (an array), each checked; one scheme for all."""
    urls = sec.strings(key, default)
    for url in urls:
        if not BROKER_URL.fullmatch(url):
            problems.add(sec.where(key), f"{url!r} is not like {BROKER_URL_EXAMPLE}")
    if len({u.split("://", 1)[0] for u in urls}) > 1:
        problems.add(sec.where(key), MIXED_SCHEMES)
    return urls


MIXED_SCHEMES = "mixes mqtt:// and mqtts://: the nodes of one broker are reached all with TLS or all without"


def broker_option(text: str) -> tuple[str, dict[str, Any]]:
    """``--broker URL[,URL…]`` (a cluster's nodes, comma-separated), for the door and the station alike:
    the first address, and what else it changes (the other nodes; the account, by :func:`broker_override`)."""
    urls = [part.strip() for part in text.split(",") if part.strip()]
    if not urls:
        raise ConfigError(f"--broker {text!r}: no address; give mqtt[s]://HOST:PORT")
    if len({u.split("://", 1)[0] for u in urls}) > 1:
        raise ConfigError(f"--broker {text!r}: {MIXED_SCHEMES}")
    changes = [broker_override(u) for u in urls]  # each address checked; the scheme decides the account
    return urls[0], {"fallback_urls": tuple(urls[1:]), **changes[0]}


def broker_override(url: str) -> dict[str, Any]:
    """What a command line's ``--broker URL`` changes besides the address, for the door and the station alike.

    A plain ``mqtt://`` URL is a broker without TLS or accounts (a ``mosquitto -p 1883`` in a lab):
    the file's username, password file and TLS files belong to the production broker and are
    dropped, so the client connects anonymously. An ``mqtts://`` URL keeps them.
    """
    if not BROKER_URL.fullmatch(url or ""):
        raise ConfigError(f"--broker {url!r} is not like {BROKER_URL_EXAMPLE}")
    if url.startswith("mqtts://"):
        return {}
    return {"username": "", "password_file": None, "ca_file": None, "cert_file": None, "key_file": None}
