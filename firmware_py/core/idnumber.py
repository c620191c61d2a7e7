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

import bisect
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


class _Folded(dict):
    """Each character as masking reads it, found on first use: its NFKC form with every decimal digit
    (of any script) as its ASCII digit. ``４`` and ``٤`` read ``4``, ``㊸`` reads ``43``, ``⒏`` ``8.``."""

    def __missing__(self, ch: str) -> str:
        folded = "".join(str(d) if (d := unicodedata.decimal(c, None)) is not None else c
                         for c in unicodedata.normalize("NFKC", ch))
        self[ch] = folded
        return folded


_FOLDED = _Folded()


# The characters (code point ranges, hex) that may read as a digit or an X: the decimal digits of
# every script but ASCII's, and the blocks where NFKC makes digits or an X of other characters
# (superscripts and fractions, Roman numerals, circled, parenthesised and squared numbers, full-width
# and mathematical letters and digits, digits with a full stop or comma). Text with none of them reads
# as it is written and is not folded (every event the door stores passes the leak guard).
# tests/unit/test_idnumber.py checks the table against every character of the Unicode database.
_READS_AS_DIGIT = (
    "B2-BE 2E3 660-669 6F0-6F9 7C0-7C9 966-96F 9E6-9EF A66-A6F AE6-AEF B66-B6F BE6-BEF C66-C6F "
    "CE6-CEF D66-D6F DE6-DEF E50-E59 ED0-ED9 F20-F29 1040-1049 1090-1099 17E0-17E9 1810-1819 "
    "1946-194F 19D0-19D9 1A80-1A89 1A90-1A99 1B50-1B59 1BB0-1BB9 1C40-1C49 1C50-1C59 2070-209F 213B "
    "2150-218F 2460-24FF 3251-33FF A620-A629 A8D0-A8D9 A900-A909 A9D0-A9D9 A9F0-A9F9 AA50-AA59 "
    "ABF0-ABF9 FF10-FF5A 104A0-104A9 10D30-10D39 11066-1106F 110F0-110F9 11136-1113F 111D0-111D9 "
    "112F0-112F9 11450-11459 114D0-114D9 11650-11659 116C0-116C9 11730-11739 118E0-118E9 11950-11959 "
    "11C50-11C59 11D50-11D59 11DA0-11DA9 16A60-16A69 16AC0-16AC9 16B50-16B59 1D400-1D7FF 1E140-1E149 "
    "1E2F0-1E2F9 1E950-1E959 1F100-1F14F 1FBF0-1FBF9"
)


def _characters(ranges: str) -> frozenset[str]:
    found = set()
    for item in ranges.split():
        first, _, last = item.partition("-")
        found.update(chr(c) for c in range(int(first, 16), int(last or first, 16) + 1))
    return frozenset(found)


_MAY_READ_AS_DIGIT = _characters(_READS_AS_DIGIT)


def ascii_digits(text: str) -> str:
    """``text`` as masking reads it: NFKC, and every decimal digit of any script (full-width,
    Arabic-Indic, Devanagari, ...) as its ASCII digit, so ``４３０１…`` and ``٤٣٠١…`` read ``4301…``.

    Folded character by character: no digit is ever made or lost by NFKC's composition, so the
    digits read are those of the whole text's NFKC form. Text with no character that may read as a
    digit or an X is returned as it is."""
    if text.isascii() or _MAY_READ_AS_DIGIT.isdisjoint(text):
        return text
    return "".join(_FOLDED[c] for c in text)


def mask_id_numbers(text: str) -> str:
    """Free text with every ID-number-looking run masked as the roster masks numbers (``430102********123X``,
    ASCII), in whatever digits it was written: the one mask for command texts, reasons and comments,
    at the door and at the station.

    The text is read as :func:`ascii_digits` reads it; a character that is part of a masked number
    is replaced by its reading, every other character is kept as it is.
    """
    if text.isascii() or _MAY_READ_AS_DIGIT.isdisjoint(text):
        return ID_NUMBER_LIKE.sub(lambda m: mask(m.group()), text)
    pieces = [_FOLDED[c] for c in text]
    read = "".join(pieces)
    matches = list(ID_NUMBER_LIKE.finditer(read))
    if not matches:
        return text
    starts, at = [], 0  # where each character's reading begins in ``read``
    for piece in pieces:
        starts.append(at)
        at += len(piece)

    def owner(position: int) -> int:
        return bisect.bisect_right(starts, position) - 1

    def end_of(index: int) -> int:
        return starts[index] + len(pieces[index])

    out: list[str] = []
    kept, cursor = 0, None  # text[:kept] is written; ``cursor``: how far the reading of text[kept - 1] is
    for m in matches:
        first, last = owner(m.start()), owner(m.end() - 1)
        if first >= kept:
            if cursor is not None:
                out.append(read[cursor:end_of(kept - 1)])
            out += [text[kept:first], read[starts[first]:m.start()]]
        else:  # begins inside the character where the previous number ended
            out.append(read[cursor:m.start()])
        out.append(mask(m.group()))
        kept, cursor = last + 1, m.end()
    out += [read[cursor:end_of(kept - 1)], text[kept:]]
    return "".join(out)


class _ReadPattern:
    """A pattern searched in text as masking reads it (:func:`ascii_digits`); a match's positions are
    those of the reading, not of the text."""

    def __init__(self, pattern: re.Pattern):
        self.pattern = pattern

    def search(self, text: str) -> re.Match | None:
        return self.pattern.search(ascii_digits(text))


# Seventeen digits and a check character anywhere in text, in any digit set: the roster's test of
# free-text fields and reasons, which must hold no ID number at all.
ID_NUMBER_IN_TEXT = _ReadPattern(re.compile(PATTERN))


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
