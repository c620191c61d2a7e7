"""The event vocabulary (DESIGN.md "Events") and the hash chain's canonical form.

An event is a plain dict, the same one that is stored, exported and published.
Its hash is SHA-256 over the canonical JSON of the event without ``hash``
(keys sorted, no spaces, UTF-8), so any program can recompute it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

GENESIS_HASH = "0" * 64

TYPES: dict[str, tuple[str, ...]] = {
    "access": ("access_granted", "access_denied", "passage", "exit_button"),
    "alarm": ("screening_alarm", "tailgating", "door_forced", "door_held_open", "overstay",
              "clock_unsynchronised", "hardware_fault", "repeated_failures", "tamper", "link_down",
              "clock_drift"),
    "system": ("controller_started", "controller_stopped", "lockdown_on", "lockdown_off",
               "roster_changed", "command", "link_up"),
}
CATEGORIES = tuple(TYPES)
CATEGORY_OF = {t: c for c, types in TYPES.items() for t in types}

REASONS = (
    "unknown_credential", "invalid_id_number", "revoked", "not_yet_valid", "expired", "review_missing",
    "training_incomplete", "commitment_missing", "outside_working_hours", "non_working_day", "anti_passback",
    "escort_required", "lockdown", "metal_detected", "tailgating", "screening_timeout",
    "clock_unsynchronised", "reader_locked", "screening_unavailable",
)
DIRECTIONS = ("in", "out")

# Seventeen digits and a check character: what a full resident ID number looks like.
_FULL_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])")


class LeakError(ValueError):
    """An event would have carried a full resident ID number: refused before it is stored."""


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(event_without_hash: dict) -> str:
    return hashlib.sha256(canonical(event_without_hash).encode("utf-8")).hexdigest()


def check_vocabulary(category: str, type: str, direction: str | None, reason: str | None) -> None:
    """Raise ValueError for an event outside DESIGN.md's vocabulary (a programming error)."""
    if CATEGORY_OF.get(type) != category:
        raise ValueError(f"event type {type!r} is not in category {category!r}")
    if direction is not None and direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r} is not in or out")
    if reason is not None and reason not in REASONS:
        raise ValueError(f"reason {reason!r} is not a known denial reason")


def refuse_full_id_numbers(text: str) -> None:
    if _FULL_ID_NUMBER.search(text):
        raise LeakError("an event contained what looks like a full resident ID number; it was not stored")
