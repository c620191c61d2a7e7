"""Synthetic data for the benchmarks: configs, rosters and a long event log.

Everything is fictional: names are ``测试 B000123``-style, resident ID numbers
are made up with a correct GB 11643 check digit, badge UIDs count up from
``40000000``. Databases are built once per run in a :class:`Workspace` and
copied for each benchmark that changes them, so every measurement starts from
the same state.

How the data is made (also stated in docs/performance.md):

- A roster of N persons is written as a CSV file and loaded with the product's
  own all-or-nothing importer, :func:`firmware_py.storage.roster.import_csv`; that
  import is what the roster-import benchmark times.
- A million stored events are appended by :func:`append_synthetic_events` in
  one transaction with ``executemany``: each row is the canonical JSON the
  event store would have written (made from a per-type template and checked
  against :func:`firmware_py.core.events.canonical`), chained with SHA-256 from the
  last stored event, so ``accessctl log verify`` accepts the result.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from firmware_py.config.schema import Config, load_config
from firmware_py.core.clock import SimulatedClock
from firmware_py.core.events import GENESIS_HASH, canonical
from firmware_py.core.idnumber import check_digit
from firmware_py.storage import roster
from firmware_py.storage.db import open_db, transaction
from firmware_py.storage.eventstore import EventStore
from firmware_py.storage.roster_csv import COLUMNS
from firmware_py.storage.secret import load_or_create_secret

from .common import REPO

EXAMPLE_CONFIG = REPO / "config" / "venue.example.toml"
TZ = ZoneInfo("Asia/Shanghai")
BENCH_START = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)  # a Monday, inside the office schedule
IMPORT_TIME = datetime(2026, 1, 5, 8, 0, tzinfo=TZ)  # the roster was loaded at the start of the year
BADGE_BASE = 0x40000000


# --------------------------------------------------------------------------- synthetic people


def person_id(i: int) -> str:
    return f"B{i:06d}"


def badge_uid(i: int) -> str:
    return f"{BADGE_BASE + i:08X}"


def id_number(i: int) -> str:
    """A unique fictional resident ID number for person ``i`` (< 36.5 million), check digit correct."""
    born = datetime(1960, 1, 1) + timedelta(days=i // 1000)
    first17 = f"430102{born:%Y%m%d}{i % 1000:03d}"
    return first17 + check_digit(first17)


def write_roster_csv(path: Path, count: int) -> Path:
    """A roster file of ``count`` vetted staff on the office schedule, valid all of 2026."""
    lines = [",".join(COLUMNS)]
    for i in range(count):
        lines.append(f"{person_id(i)},测试 {person_id(i)},{id_number(i)},{badge_uid(i)},staff,示例档案馆数字化室,own,"
                     f"2025-12-10,48,2025-12-15,2026-01-01,2026-12-31,office")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- configs and databases


def write_config(directory: Path) -> Config:
    """The example config with its database and secret in ``directory`` and MQTT off; written as venue.toml."""
    directory.mkdir(parents=True, exist_ok=True)
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    text = _set(text, "database", f'"{directory / "events.db"}"')
    text = _set(text, "secret", f'"{directory / "device.key"}"')
    text = _set(text, "enabled", "false")
    path = directory / "venue.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def _set(text: str, key: str, value: str) -> str:
    text, n = re.subn(rf"(?m)^{key}\s*=\s*\S+", f"{key} = {value}", text, count=1)
    if n != 1:
        raise RuntimeError(f"{EXAMPLE_CONFIG}: no line setting {key!r} to replace")
    return text


@dataclass(frozen=True)
class Template:
    directory: Path
    persons: int
    import_s: float  # how long import_csv took to load the roster into an empty database


def import_roster(directory: Path, persons: int, *, around=None) -> Config:
    """Write a config and a roster CSV of ``persons`` in ``directory`` and load it with the product's
    importer into a new database; ``around`` (a context manager factory) wraps just the import."""
    from contextlib import nullcontext

    cfg = write_config(directory)
    csv_path = write_roster_csv(directory / "roster.csv", persons)
    db = open_db(cfg.storage.database)
    store = EventStore(db, site=cfg.site.site, door=cfg.site.door, clock=SimulatedClock(IMPORT_TIME))
    secret = load_or_create_secret(cfg.storage.secret)
    try:
        with (around or nullcontext)():
            roster.import_csv(db, store, csv_path, secret=secret, schedule_groups=set(cfg.calendar.schedules),
                              tz=cfg.site.timezone)
    finally:
        _close(db)
    return cfg


class Workspace:
    """A directory of databases for one benchmark run, built lazily and reused."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._templates: dict[int, Template] = {}
        self._event_dbs: dict[tuple[int, int], tuple[Config, float]] = {}

    def roster_template(self, persons: int) -> Template:
        """A database holding a roster of ``persons``, loaded by the product's importer (timed)."""
        if persons not in self._templates:
            import time
            from contextlib import contextmanager

            directory = self.root / f"template-roster-{persons}"
            timed: list[float] = []

            @contextmanager
            def stopwatch():
                t0 = time.perf_counter()
                yield
                timed.append(time.perf_counter() - t0)

            import_roster(directory, persons, around=stopwatch)
            self._templates[persons] = Template(directory, persons, timed[0])
        return self._templates[persons]

    def roster_db(self, persons: int, name: str) -> Config:
        """A fresh copy of the roster template in its own directory, with its own config file."""
        template = self.roster_template(persons)
        directory = self.root / name
        if directory.exists():
            shutil.rmtree(directory)
        cfg = write_config(directory)
        shutil.copyfile(template.directory / "events.db", cfg.storage.database)
        shutil.copyfile(template.directory / "device.key", cfg.storage.secret)
        cfg.storage.secret.chmod(0o600)
        return cfg

    def events_db(self, persons: int, events: int) -> tuple[Config, float]:
        """A roster of ``persons`` plus ``events`` stored events (built once per run); and the seconds it took."""
        key = (persons, events)
        if key not in self._event_dbs:
            import time

            cfg = self.roster_db(persons, f"roster-{persons}-events-{events}")
            db = open_db(cfg.storage.database)
            t0 = time.perf_counter()
            append_synthetic_events(db, events, site=cfg.site.site, door=cfg.site.door, persons=persons,
                                    first=IMPORT_TIME + timedelta(hours=1), last=BENCH_START - timedelta(days=1))
            seconds = time.perf_counter() - t0
            _close(db)
            self._event_dbs[key] = (cfg, seconds)
        return self._event_dbs[key]


def _close(db) -> None:
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.conn.close()


# --------------------------------------------------------------------------- a long event log

_SEQ, _TS, _PREV = 987654321012345, "@@ts@@", "@@prev@@"
_PID, _NAME, _UID = "@@pid@@", "@@name@@", "@@uid@@"
_PLACES = {str(_SEQ): "{seq}", _TS: "{ts}", _PREV: "{prev}", _PID: "{pid}", _NAME: "{name}", _UID: "{uid}"}

# One day's pattern at the door, repeated: in, through, out, through, and a late-comer turned away.
_PATTERN = (
    ("access", "access_granted", "in", None, {"screening": "clear", "persons": 1}),
    ("access", "passage", "in", None, {"via": "credential", "open_s": 3.2}),
    ("access", "access_granted", "out", None, {"screening": "clear", "persons": 1}),
    ("access", "passage", "out", None, {"via": "credential", "open_s": 2.9}),
    ("access", "access_denied", "in", "outside_working_hours", {}),
)


def _event(category, type_, direction, reason, detail, *, site, door, seq, ts, prev, pid, name, uid) -> dict:
    return {"seq": seq, "ts": ts, "site": site, "door": door, "category": category, "type": type_,
            "direction": direction, "person": {"person_id": pid, "name": name, "role": "staff"},
            "credential": {"kind": "badge", "masked": uid}, "reason": reason, "detail": detail,
            "prev_hash": prev}


def _templates(site: str, door: str) -> list[tuple[str, str, str]]:
    """(category, type, format string of the canonical body) per pattern entry."""
    out = []
    for category, type_, direction, reason, detail in _PATTERN:
        text = canonical(_event(category, type_, direction, reason, detail, site=site, door=door, seq=_SEQ,
                                ts=_TS, prev=_PREV, pid=_PID, name=_NAME, uid=_UID))
        text = text.replace("{", "{{").replace("}", "}}")
        for placeholder, field in _PLACES.items():
            if text.count(placeholder) != 1:
                raise RuntimeError(f"template for {type_}: placeholder {placeholder} is not unique")
            text = text.replace(placeholder, field)
        out.append((category, type_, text))
    return out


def append_synthetic_events(db, count: int, *, site: str, door: str, persons: int, first: datetime,
                            last: datetime) -> None:
    """Append ``count`` valid, hash-chained access events after the last stored one, in one transaction.

    Time stamps are spread evenly from ``first`` to ``last``; persons cycle through
    the synthetic roster. The rows are acknowledged already (not in the outbox), as
    on a controller whose supervisor has been online.
    """
    templates = _templates(site, door)
    row = db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    start_seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS_HASH)
    step = (last - first) / max(1, count)
    sha256 = hashlib.sha256

    def rows():
        nonlocal prev
        for k in range(count):
            seq = start_seq + k
            category, type_, fmt = templates[k % len(templates)]
            i = (k // len(templates)) % max(1, persons)
            ts = (first + step * k).isoformat(timespec="milliseconds")
            body = fmt.format(seq=seq, ts=ts, prev=prev, pid=person_id(i), name=f"测试 {person_id(i)}",
                              uid=badge_uid(i))
            if k < len(templates):  # the template must give exactly what the event store writes
                category_, type__, direction, reason, detail = _PATTERN[k]
                expected = canonical(_event(category_, type__, direction, reason, detail, site=site, door=door,
                                            seq=seq, ts=ts, prev=prev, pid=person_id(i),
                                            name=f"测试 {person_id(i)}", uid=badge_uid(i)))
                if body != expected:
                    raise RuntimeError(f"synthetic event template differs from the canonical form:\n{body}\n{expected}")
            h = sha256(body.encode("utf-8")).hexdigest()
            yield seq, ts, category, type_, body, prev, h
            prev = h

    with transaction(db):
        db.conn.executemany(
            "INSERT INTO events (seq, ts, category, type, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows())
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('head_seq', ?)", (str(start_seq + count - 1),))
