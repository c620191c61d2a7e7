"""The event vocabulary (DESIGN.md "Events") and the hash chain's canonical form.

An event is a plain dict, the same one that is stored, exported and published.
Its hash is SHA-256 over the canonical JSON of the event without ``hash``
(keys sorted, no spaces, UTF-8), so any program can recompute it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from firmware_py.core import reasons
from firmware_py.core.idnumber import holds_full_id_number, mask_id_numbers

GENESIS_HASH = "0" * 64

TYPES: dict[str, tuple[str, ...]] = {
    "access": ("access_granted", "access_denied", "passage", "exit_button"),
    "alarm": ("screening_alarm", "tailgating", "door_forced", "door_held_open", "overstay",
              "clock_unsynchronised", "hardware_fault", "repeated_failures", "tamper", "link_down",
              "clock_drift", "duress"),
    "system": ("controller_started", "controller_stopped", "lockdown_on", "lockdown_off",
               "roster_changed", "command", "link_up", "roster_applied", "roster_rejected", "roster_expired"),
}
CATEGORIES = tuple(TYPES)
CATEGORY_OF = {t: c for c, types in TYPES.items() for t in types}
# Published ahead of the rest of the outbox (DESIGN.md "PIN and duress": the supervisor learns of a
# duress "at once, ahead of any backlog"); a station may see these seqs before the ones below them.
URGENT_TYPES = ("duress",)

REASONS = reasons.REASONS  # declared once, with their labels, in core/reasons.py
DIRECTIONS = ("in", "out")


class LeakError(ValueError):
    """An event would have carried a full resident ID number: refused before it is stored."""


def canonical(obj: Any) -> str:
    """Keys sorted, no spaces, UTF-8; strict JSON: NaN and Infinity raise ValueError instead of being written."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


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
    if holds_full_id_number(text):
        raise LeakError("an event contained what looks like a full resident ID number; it was not stored")


def redact_id_numbers(text: str) -> str:
    """``text`` with every ID-number-looking run masked as the roster masks numbers (``430102********123X``),
    in any digit set (:func:`~firmware_py.core.idnumber.mask_id_numbers`, the one free-text mask)."""
    return mask_id_numbers(text)


def redact(value: Any) -> Any:
    """A JSON-like value with ID-number-looking text masked, for an audit record that quotes outside input.

    Strings (and dict keys) are masked in place, and a lone surrogate (JSON's ``"\\ud800"``,
    which UTF-8 cannot encode) becomes ``?``; an integer whose digits look like an ID number
    (a ``from_seq`` may) becomes its masked string. Anything else is kept.
    """
    if isinstance(value, str):
        text = redact_id_numbers(value)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
        return text
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        text = str(value)
        masked = redact_id_numbers(text)
        return value if masked == text else masked
    if isinstance(value, dict):
        return {redact(k) if isinstance(k, str) else k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def describe_untrusted(data: bytes | str, limit: int = 80) -> str:
    """A short, log-safe description of untrusted input: decoded, ID numbers masked, then cut to ``limit``.

    Masking comes before cutting, so a cut can never leave part of a number unmasked behind.
    """
    text = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else str(data)
    size = len(data)
    shown = redact_id_numbers(text)
    if len(shown) > limit:
        shown = shown[:limit] + "…"
    return f"{size} bytes: {shown!r}" if isinstance(data, (bytes, bytearray)) else repr(shown)
