"""What a roster CSV would change against the bundle this station last published: added, removed, changed.

The station keeps the rows it last published in their bundle form (:func:`kept_rows`: masked ID
number and keyed hash, never the number) with the version (:class:`~..archive.store.PublishedRoster`),
and the hours the bundle carried (:func:`station_hours`) on a first line of their own;
:func:`compare` sets a checked CSV's rows against them by ``person_id``, and the station's hours
now against the hours published (:func:`hours_changes`).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from firmware_py.config.schema import WEEKDAYS
from firmware_py.link.roster_bundle import COLUMNS, bundle_row, canonical

SHOWN = ("person_id", "name", "id_masked", "role", "organisation", "schedule_group", "valid_until")
# What a person's change is called on the page; the hash stands for the ID number, shown only masked.
FIELD_NAMES = {"id_hash": "id_number"}


@dataclass(frozen=True)
class Changed:
    before: dict
    after: dict
    fields: tuple[str, ...]


@dataclass(frozen=True)
class RosterDiff:
    added: list[dict]
    removed: list[dict]
    changed: list[Changed]
    unchanged: int
    hours: tuple[str, ...] = ()  # how the doors' hours change, one line each

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.hours)


def station_hours(cfg) -> dict:
    """The hours a bundle of the station's ``cfg`` carries: ``schedules`` and ``calendar`` (None: the doors' own)."""
    return {"schedules": cfg.roster.schedules, "calendar": cfg.roster.calendar}


def kept_rows(rows: Iterable, hours: dict | None = None) -> bytes:
    """Checked CSV rows in their bundle form (masked and hashed), compressed, for the archive; ``hours``
    (:func:`station_hours`) first."""
    lines = [canonical({"hours": hours})] if hours is not None else []
    return zlib.compress(b"\n".join([*lines, *(canonical(bundle_row(r)) for r in rows)]), 6)


def _lines(data: bytes | None) -> list:
    return [json.loads(line) for line in zlib.decompress(data).split(b"\n") if line] if data else []


def read_kept(data: bytes | None) -> list[dict]:
    """The rows :func:`kept_rows` made, each as a dict of the bundle's columns."""
    return [dict(zip(COLUMNS, line)) for line in _lines(data) if isinstance(line, list)]


def kept_hours(data: bytes | None) -> dict | None:
    """The hours :func:`kept_rows` recorded (None: not recorded, as before stations kept them)."""
    return next((line["hours"] for line in _lines(data) if isinstance(line, dict)), None)


def hours_changes(before: dict | None, after: dict) -> tuple[str, ...]:
    """What publishing with the hours ``after`` changes at the doors against those published ``before``."""
    if after["calendar"] is None:
        return () if before is None or before.get("calendar") is None else (
            "the doors go back to the hours of their own [calendar]",)
    if before is None or before.get("calendar") is None:
        return ("the doors take their hours from the station from this version on (before: their own [calendar])",)
    out = []
    old, new = before.get("schedules") or {}, after["schedules"]
    for group in sorted(set(old) | set(new)):
        if group not in new:
            out.append(f"group {group} removed")
        elif group not in old:
            out.append(f"group {group} added")
        else:
            for day in WEEKDAYS:
                was, now = old[group].get(day, []), new[group].get(day, [])
                if was != now:
                    out.append(f"{group} {day}: {', '.join(was) or 'closed'} → {', '.join(now) or 'closed'}")
    for key, name in (("holidays", "holiday"), ("working_days", "adjusted working day")):
        was, now = set(before["calendar"].get(key, [])), set(after["calendar"].get(key, []))
        out += [f"{name} added: {d}" for d in sorted(now - was)] + [f"{name} removed: {d}" for d in sorted(was - now)]
    if before["calendar"].get("adjusted_day_schedule") != after["calendar"]["adjusted_day_schedule"]:
        out.append(f"adjusted working days use the windows of {after['calendar']['adjusted_day_schedule']}")
    return tuple(out)


def compare(before: list[dict], after_rows: Iterable, hours: tuple[str, ...] = ()) -> RosterDiff:
    """``after_rows`` (checked CSV rows) against the rows published ``before``; ``hours`` from :func:`hours_changes`."""
    old = {r["person_id"]: r for r in before}
    added, changed, unchanged, seen = [], [], 0, set()
    for row in after_rows:
        new = dict(zip(COLUMNS, json.loads(canonical(bundle_row(row)))))
        seen.add(new["person_id"])
        was = old.get(new["person_id"])
        if was is None:
            added.append(new)
            continue
        fields = tuple(FIELD_NAMES.get(c, c) for c in COLUMNS if c != "id_masked" and was.get(c) != new[c])
        if fields:
            changed.append(Changed(was, new, fields))
        else:
            unchanged += 1
    removed = [r for pid, r in old.items() if pid not in seen]
    return RosterDiff(added, removed, changed, unchanged, hours)
