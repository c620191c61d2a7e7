"""Resident ID numbers (GB 11643-1999) and the device secret that hides them.

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

The device secret (:func:`load_or_create_secret`) is 32 random bytes created
on first use with mode 0600. Losing it makes every stored hash unmatchable,
so it is backed up together with the database.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from datetime import date
from pathlib import Path

from firmware_py.errors import IdNumberError, SecretError

log = logging.getLogger(__name__)

LENGTH = 18
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
EARLIEST_BIRTH = date(1900, 1, 1)

# Province-level codes (GB/T 2260), plus 71 Taiwan and 81/82/83, the ranges used
# by residence permits for people from Hong Kong, Macau and Taiwan.
PROVINCE_CODES = frozenset(
    [*range(11, 16), *range(21, 24), *range(31, 38), *range(41, 47), *range(50, 55), *range(61, 66), 71, 81, 82, 83]
)

SECRET_SIZE = 32


# --------------------------------------------------------------------------- the number


def normalise(number: str) -> str:
    """Surrounding blanks removed and a trailing ``x`` upper-cased; no other checks."""
    return number.strip().upper()


def mask(number: str) -> str:
    """The display form: first 6 and last 4 characters kept, 8 ``*`` between (``430102********123X``).

    Anything that is not 18 characters long is masked completely, so a
    misread number never shows more than a well-formed one would.
    """
    n = normalise(number)
    if len(n) != LENGTH:
        return "*" * len(n)
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


# --------------------------------------------------------------------------- the device secret


def load_or_create_secret(path: str | Path, *, roster_hashes: int = 0) -> bytes:
    """The device's 32-byte HMAC key: read from ``path``, or created there (mode 0600) on first use.

    Refuses (:class:`SecretError`) a file that other users can read or write,
    or that is not exactly 32 bytes: a key that leaked or was damaged must be
    dealt with by a person, not silently replaced. Likewise a missing key is
    created only while the roster holds no ID hash (``roster_hashes``, the
    number of persons with one): a new key would make every one of them
    unmatchable, so then the key must be restored from the backup.
    """
    path = Path(path)
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    if roster_hashes > 0:
        raise SecretError(
            f"{path}: the device secret is missing, but the roster holds {roster_hashes} "
            f"person{'s' if roster_hashes != 1 else ''} whose ID numbers are hashed under it. Restore the secret "
            "file from the commissioning backup (the copy kept with the database backup) to this path, owned by "
            f"the service user with mode 0600 (`chown accessctl: {path}; chmod 600 {path}`). A new secret would "
            "make every ID card in the roster unmatchable; only if the backup is lost, start an empty database "
            "and import the roster again"
        )
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _create_secret(path)
    except FileExistsError:
        pass  # another process created it first: use theirs
    except OSError as exc:
        raise SecretError(f"{path}: cannot create the device secret: {exc.strerror or exc}") from None
    else:
        log.info("created a new device secret at %s", path)
    try:
        return _read_secret(path)
    except FileNotFoundError:
        raise SecretError(f"{path}: the device secret disappeared while it was being created") from None


def _read_secret(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SecretError(f"{path}: cannot read the device secret: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SecretError(f"{path}: the device secret must be a regular file")
        if st.st_mode & 0o077:
            raise SecretError(
                f"{path}: the device secret has mode {stat.S_IMODE(st.st_mode):04o}; other users may read it. "
                f"Check whether it leaked, then `chmod 600 {path}`"
            )
        data = f.read(SECRET_SIZE + 1)
    if len(data) != SECRET_SIZE:
        raise SecretError(
            f"{path}: the device secret is {len(data)} bytes, not {SECRET_SIZE}; restore it from the backup "
            "(a new secret makes every ID number in the roster unmatchable)"
        )
    return data


def _create_secret(path: Path) -> None:
    """Write the key to a temporary file, then link it into place: never a half-written key."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, secrets.token_bytes(SECRET_SIZE))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails with FileExistsError if someone else won the race
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def id_hash(secret: bytes, number: str) -> str:
    """HMAC-SHA-256 (hex) of the normalised number under the device secret: the roster's matching key."""
    if len(secret) < 16:
        raise ValueError("the device secret is too short")
    return hmac.new(secret, normalise(number).encode("ascii", "replace"), hashlib.sha256).hexdigest()
