"""Resident ID numbers (GB 11643-1999): checking, masking, hashing; pure, no file or database.

A resident identity number has 18 characters::

    4 3 0 1 0 2 | 1 9 8 5 0 3 1 2 | 1 2 3 | X
    region (6)  | birth date (8)  | seq   | check

The first two digits are a province-level code, the birth date is
``YYYYMMDD``, and the last character is the ISO 7064 MOD 11-2 check digit
(``X`` stands for 10). :func:`validate` checks all of that and returns the
normalised number (surrounding blanks removed, ``x`` upper-cased).

The number itself is never stored or shown: the roster keeps :func:`id_hash`
(HMAC-SHA-256 under a per-device secret, for matching a card to its row)
and :func:`mask` (first 6 and last 4 kept, for display). Error messages name
what is wrong using the masked form only.

The device secret the hash is keyed with is read from its file by
:mod:`firmware_py.storage.secret`. :data:`FULL_ID_NUMBER` and
:data:`ID_NUMBER_LIKE` are the one pattern for an ID number inside text
(the leak guard and redaction use them), in any digit set: a number typed in
full-width (``４３０１…``) or Arabic-Indic (``٤٣٠١…``) digits is the same number.
:func:`mask_id_numbers` is the one mask for free text (command texts, reasons,
comments, error messages), at the door and at the station: it reads the text as
:func:`ascii_digits` does (NFKC, every decimal digit as its ASCII digit) before
masking, so no digit set carries a number past it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from datetime import date

from firmware_py.errors import IdNumberError

LENGTH = 18
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
EARLIEST_BIRTH = date(1900, 1, 1)

# Province-level codes (GB/T 2260), plus 71 Taiwan and 81/82/83, the ranges used
# by residence permits for people from Hong Kong, Macau and Taiwan.
PROVINCE_CODES = frozenset(
    [*range(11, 16), *range(21, 24), *range(31, 38), *range(41, 47), *range(50, 55), *range(61, 66), 71, 81, 82, 83]
)

# Seventeen digits and a check character: what an ID number looks like inside text. ``\d`` is any
# Unicode decimal digit (full-width, Arabic-Indic, ...), so the guards see a number in any digit set.
PATTERN = r"\d{17}[\dXxＸｘ]"
# A full number standing alone (not part of a longer run of letters or digits): the leak guard's test.
FULL_ID_NUMBER = re.compile(rf"(?<![\dA-Za-z]){PATTERN}(?![\dA-Za-z])")
# The same, also when letters touch it ("ID430102…"): what redaction masks. Every match of
# FULL_ID_NUMBER is a match of this one, so redacted text always passes the leak guard.
ID_NUMBER_LIKE = re.compile(rf"(?<!\d){PATTERN}(?!\d)")


class _AsciiDigits(dict):
    """``str.translate`` table, filled on first use: a character whose NFKC form is one decimal digit
    (of any script) or an X becomes that ASCII character; every other character stays itself."""

    def __missing__(self, code: int) -> int | str:
        folded = unicodedata.normalize("NFKC", chr(code))
        digit = unicodedata.decimal(folded, None) if len(folded) == 1 else None
        self[code] = str(digit) if digit is not None else folded if folded in ("X", "x") else code
        return self[code]


_ASCII_DIGITS = _AsciiDigits()


def ascii_digits(text: str) -> str:
    """``text`` as masking reads it: each character NFKC-normalised to a decimal digit of any script
    (full-width, Arabic-Indic, Devanagari, superscript, ...) or to an X is that ASCII character, so
    ``４３０１…`` and ``٤٣٠١…`` read ``4301…``; everything else is left as it is, character for
    character (the result is as long as ``text``)."""
    return text if text.isascii() else text.translate(_ASCII_DIGITS)


def mask_id_numbers(text: str) -> str:
    """Free text with every ID-number-looking run masked as the roster masks numbers (``430102********123X``,
    ASCII), in whatever digits it was written: the one mask for command texts, reasons and comments,
    at the door and at the station. The rest of the text is kept as it is."""
    read = ascii_digits(text)
    parts, end = [], 0
    for m in ID_NUMBER_LIKE.finditer(read):
        parts += [text[end:m.start()], mask(m.group())]
        end = m.end()
    return "".join(parts) + text[end:] if parts else text


def holds_full_id_number(text: str) -> bool:
    """Whether ``text`` holds a full ID number standing alone, in any digit set (the leak guard's test)."""
    return FULL_ID_NUMBER.search(ascii_digits(text)) is not None


# --------------------------------------------------------------------------- the number


def normalise(number: str) -> str:
    """Surrounding blanks removed and a trailing ``x`` upper-cased; no other checks."""
    return number.strip().upper()


def mask(number: str) -> str:
    """The display form: first 6 and last 4 characters kept, 8 ``*`` between (``430102********123X``),
    in ASCII digits whatever digits the number was written in.

    A misread number that is not 18 characters long keeps only its first two
    (the province, ``43************``), so it never shows more than a
    well-formed one would; an empty read stays empty.
    """
    n = normalise(ascii_digits(number))
    if len(n) != LENGTH:
        return n[:2] + "*" * max(0, len(n) - 2)
    return n[:6] + "*" * 8 + n[-4:]


def check_digit(first17: str) -> str:
    """The MOD 11-2 check character for the first 17 digits."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise IdNumberError("the check digit is computed over exactly 17 digits")
    total = sum(int(d) * w for d, w in zip(first17, WEIGHTS))
    return CHECK_CHARS[total % 11]


def validate(number: str, *, today: date | None = None) -> str:
    """Return the normalised number, or raise :class:`IdNumberError` naming what is wrong.

    ``today`` (default: the machine's date) bounds the birth date.
    """
    if not isinstance(number, str):
        raise IdNumberError(f"an ID number is text, not {type(number).__name__}")
    n = normalise(number)
    if len(n) != LENGTH:
        raise IdNumberError(f"ID number has {len(n)} characters; a resident ID number has 18")
    shown = mask(n)
    body, last = n[:17], n[17]
    if not (body.isascii() and body.isdigit()):
        position = next(i for i, c in enumerate(body, 1) if not ("0" <= c <= "9"))
        raise IdNumberError(f"ID number {shown}: character {position} is not a digit; the first 17 are digits")
    if not (last.isdigit() or last == "X"):
        raise IdNumberError(f"ID number {shown}: the last character must be a digit or X")
    if int(n[:2]) not in PROVINCE_CODES:
        raise IdNumberError(f"ID number {shown}: region code {n[:2]} is not a province-level code")
    try:
        born = date(int(n[6:10]), int(n[10:12]), int(n[12:14]))
    except ValueError:
        raise IdNumberError(f"ID number {shown}: birth date {n[6:10]}-{n[10:12]}-{n[12:14]} does not exist") from None
    today = today or date.today()
    if born < EARLIEST_BIRTH:
        raise IdNumberError(f"ID number {shown}: birth date {born} is before 1900")
    if born > today:
        raise IdNumberError(f"ID number {shown}: birth date {born} is in the future")
    expected = check_digit(body)
    if last != expected:
        raise IdNumberError(f"ID number {shown}: check digit is {last}, the first 17 digits need {expected}")
    return n


def is_valid(number: object, *, today: date | None = None) -> bool:
    """True when :func:`validate` accepts the number."""
    try:
        validate(number, today=today)  # type: ignore[arg-type]
    except IdNumberError:
        return False
    return True


def id_hash(secret: bytes, number: str) -> str:
    """HMAC-SHA-256 (hex) of the normalised number under the device secret: the roster's matching key."""
    if len(secret) < 16:
        raise ValueError("the device secret is too short")
    return hmac.new(secret, normalise(number).encode("ascii", "replace"), hashlib.sha256).hexdigest()
