"""What a roster CSV would change against the bundle this station last published: added, removed, changed.

The station keeps the rows it last published in their bundle form (:func:`kept_rows`: masked ID
number and keyed hash, never the number) with the version (:class:`~..archive.store.PublishedRoster`);
:func:`compare` sets a checked CSV's rows against them by ``person_id``.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

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

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def kept_rows(rows: Iterable) -> bytes:
    """Checked CSV rows in their bundle form (masked and hashed), compressed, for the archive."""
    return zlib.compress(b"\n".join(canonical(bundle_row(r)) for r in rows), 6)


def read_kept(data: bytes | None) -> list[dict]:
    """The rows :func:`kept_rows` made, each as a dict of the bundle's columns."""
    if not data:
        return []
    return [dict(zip(COLUMNS, json.loads(line))) for line in zlib.decompress(data).split(b"\n") if line]


def compare(before: list[dict], after_rows: Iterable) -> RosterDiff:
    """``after_rows`` (checked CSV rows) against the rows published ``before``."""
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
    return RosterDiff(added, removed, changed, unchanged)
