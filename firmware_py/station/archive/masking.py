"""The station's one ID-number mask, on parsed values: what the page shows, exports and records.

Doors mask resident ID numbers before they publish (:func:`firmware_py.core.idnumber.mask`); the
station masks again, as a second fence, whatever it shows, exports or records, whoever wrote it (a
door's old rows, a stolen door, an operator's comment). Masking works on values, never on raw
bytes: a payload is parsed, every string (and dict key) is masked, every number whose digits form
an ID number becomes its masked text, and the result is written as valid JSON again. Masking the
bytes of ``{"detail": 430102199003070012}`` would leave ``430102********0012`` unquoted: invalid
JSON, and every page that reads the event would fail.

An ID number written in other digits (full-width, Arabic-Indic, …) is found by the door's own
mask, :func:`firmware_py.core.idnumber.mask_id_numbers`.
A string that is a SHA-256 in hex (an event's ``hash`` and ``prev_hash``) is kept as it is: its
digits are no ID number, and masking them would make a stored event fail its own chain.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from firmware_py.core.idnumber import ID_NUMBER_LIKE, ascii_digits, mask, mask_id_numbers

HASH = re.compile(r"[0-9a-f]{64}")


class Unreadable(ValueError):
    """A payload that is not JSON (or is nested too deeply to read): the message says which."""


def mask_text(text: str) -> str:
    """``text`` with every ID-number-looking run masked (``430102********0012``), whatever its digits
    (:func:`firmware_py.core.idnumber.mask_id_numbers`, the door's own mask); a hash is kept."""
    if len(text) < 18 or len(text) == 64 and HASH.fullmatch(text):  # too short to hold one, or a hash
        return text
    return mask_id_numbers(text)


def _utf8(text: str) -> str:
    """A lone surrogate (JSON's ``"\\ud800"``, which UTF-8 cannot encode) becomes ``?``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _number_text(literal: str) -> str | None:
    """The masked text of a number literal that is, or shows, an ID number; None for any other number."""
    masked = mask_text(literal)
    if masked != literal:
        return masked
    try:
        value = abs(Decimal(literal))
    except InvalidOperation:
        return None
    if value.is_finite() and 10 ** 17 <= value < 10 ** 18:  # 4.30102199003070012e17 is an ID number too
        digits = str(int(value))
        if ID_NUMBER_LIKE.fullmatch(digits):
            return mask(digits)
    return None


def _number(literal: str) -> int | float | str:
    """A JSON number as parsed, or its masked text; a number Python cannot hold as one (a 5,000-digit
    integer, ``1e999``) stays its literal text."""
    fraction = any(c in literal for c in ".eE")
    if len(literal) < 17 and "e" not in literal.lower():  # fewer than 17 digits: no ID number
        return float(literal) if fraction else int(literal)
    masked = _number_text(literal)
    if masked is not None:
        return masked
    try:
        value = float(literal) if fraction else int(literal)
    except ValueError:
        return literal[:40] + ("…" if len(literal) > 40 else "")
    if isinstance(value, float) and not math.isfinite(value):
        return literal[:40]
    return value


def mask_value(value: Any) -> Any:
    """A JSON-like value with every string and dict key masked and every number that is an ID number
    replaced by its masked text; lone surrogates become ``?``. Other values are kept."""
    if isinstance(value, str):
        return _utf8(mask_text(value))
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        masked = _number_text(str(value))
        return value if masked is None else masked
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        masked = _number_text(repr(value))
        return value if masked is None else masked
    if isinstance(value, dict):
        return {(mask_value(k) if isinstance(k, str) else k): mask_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(v) for v in value]
    return value


def parse(payload: bytes | bytearray | memoryview | str) -> Any:
    """A payload (UTF-8 bytes or text) as masked JSON values; raises :class:`Unreadable` for anything
    that is not JSON. ``NaN`` and ``Infinity`` are read as their text (strict JSON has neither)."""
    text = bytes(payload).decode("utf-8", "replace") if not isinstance(payload, str) else payload
    try:
        value = json.loads(text, parse_int=_number, parse_float=_number, parse_constant=str)
        # Numbers are masked as they are parsed; a string holds an ID number only if the text shows
        # one, or spells characters as \u escapes (which may also hold a lone surrogate).
        if "\\u" in text or mask_id_numbers(text) != text:
            value = mask_value(value)
        return value
    except RecursionError:
        raise Unreadable("not readable: JSON nested too deeply") from None
    except ValueError as exc:
        raise Unreadable(f"not JSON: {exc}") from None


def dumps(value: Any) -> str:
    """Masked ``value`` as strict JSON text (UTF-8 characters kept)."""
    return json.dumps(mask_value(value), ensure_ascii=False, allow_nan=False)


def masked_json(payload: bytes | bytearray | memoryview | str) -> str:
    """A JSON payload masked and written again as valid JSON; raises :class:`Unreadable` for anything else."""
    value = parse(payload)
    try:
        return dumps(value)
    except RecursionError:
        raise Unreadable("not readable: JSON nested too deeply") from None


def shown(payload: bytes | bytearray | memoryview | str, limit: int = 1000, *, cut: bool = False) -> str:
    """A payload for display: masked JSON when it is JSON, else its masked text; at most ``limit``
    characters (``…`` marks a cut). ``cut``: the payload is the start of a longer one, so its JSON
    cannot be whole and a run of digits at its end may be part of a number (dropped, never shown)."""
    data = payload if isinstance(payload, str) else bytes(payload).decode("utf-8", "replace")
    text = None
    if not cut:
        try:
            text = masked_json(data)
        except Unreadable:
            text = None
    if text is None:
        if cut:
            while data and (data[-1] in "Xx" or ascii_digits(data[-1]).isdigit()):
                data = data[:-1]
        text = _utf8(mask_text(data))
    return text if len(text) <= limit and not cut else text[:limit] + "…"
