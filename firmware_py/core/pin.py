"""PINs for the second factor (GB/T 37078 §6.3): a slow salted hash, never the PIN itself.

The roster keeps, per person, :func:`hash_pin` of the PIN and, optionally, of
the duress PIN (§6.4): a second PIN of the person's own that opens the door
like the first and alerts the supervisor. The hash is scrypt (``hashlib``),
its cost chosen so one check stays within :data:`CHECK_BUDGET_S` on a
Raspberry Pi 4 (docs/osdp-readers.md, "PIN hash cost"); the parameters are
stored with each hash, so a later change of cost leaves old hashes valid.

A stored hash reads ``scrypt$N$r$p$<salt hex>$<hash hex>``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os

SCRYPT_N = 2**14  # ~40 ms here on one EPYC core, ~230 ms on a Pi 4 (×6): docs/osdp-readers.md
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
CHECK_BUDGET_S = 0.3
MIN_LENGTH, MAX_LENGTH = 4, 12
_MAX_N = 2**17  # a stored hash asking for more is refused: it could stall the door
_PREFIX = "scrypt"

# What the controller makes of a PIN entered after a credential.
MATCH, DURESS, WRONG = "match", "duress", "wrong"


class PinError(ValueError):
    """A PIN that cannot be set (too short, not digits); the message says what is wrong, never the PIN."""


def check_new_pin(pin: str) -> str:
    """``pin`` when it can be a PIN (4-12 digits, not all one digit); :class:`PinError` otherwise."""
    if not isinstance(pin, str) or not pin.isascii() or not pin.isdigit():
        raise PinError("a PIN is digits only (the keypad's 0-9)")
    if not MIN_LENGTH <= len(pin) <= MAX_LENGTH:
        raise PinError(f"a PIN has {MIN_LENGTH} to {MAX_LENGTH} digits")
    if len(set(pin)) == 1:
        raise PinError("a PIN of one digit repeated is the first anyone tries: choose another")
    return pin


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(pin.encode("ascii"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 2**20,
                          dklen=HASH_BYTES)


def hash_pin(pin: str, *, salt: bytes | None = None) -> str:
    """The stored form of ``pin`` (checked by :func:`check_new_pin`), with a fresh random salt."""
    check_new_pin(pin)
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = _scrypt(pin, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"{_PREFIX}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str | None) -> bool:
    """Whether ``pin`` is the PIN ``stored`` was made from; False for no hash or a malformed one."""
    if not stored or not isinstance(pin, str) or not pin.isascii() or not pin.isdigit():
        return False
    try:
        prefix, n, r, p, salt, digest = stored.split("$")
        n, r, p = int(n), int(r), int(p)
        salt_bytes, digest_bytes = bytes.fromhex(salt), bytes.fromhex(digest)
    except ValueError:
        return False
    if prefix != _PREFIX or not (2 <= n <= _MAX_N and n & (n - 1) == 0) or not 1 <= r <= 16 or not 1 <= p <= 4:
        return False
    return hmac.compare_digest(_scrypt(pin, salt_bytes, n, r, p), digest_bytes)


def is_pin_hash(text: object) -> bool:
    """``text`` has the form of a stored PIN hash (for roster bundles and imports: hashes only)."""
    if not isinstance(text, str):
        return False
    parts = text.split("$")
    return (len(parts) == 6 and parts[0] == _PREFIX and all(x.isdigit() for x in parts[1:4])
            and all(len(x) % 2 == 0 and all(c in "0123456789abcdef" for c in x) for x in parts[4:]))


def check_pin_hash(text: object) -> str:
    """``text`` when it is a PIN hash a door can use (as :func:`hash_pin` makes: known cost
    parameters, a salt, a 32-byte hash); :class:`PinError` saying what is wrong otherwise.

    For hashes that arrive from elsewhere (a roster bundle, the station's CSV). The message
    never repeats the text: what was typed there may be a PIN.
    """
    if not isinstance(text, str):
        raise PinError("a PIN hash is text like scrypt$16384$8$1$<salt hex>$<hash hex>")
    if text.isascii() and text.isdigit():
        raise PinError("holds digits only: a PIN, not its hash; PINs travel only as hashes "
                       "(`accessctl station roster pin-hash` makes one)")
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != _PREFIX:
        raise PinError(f"is not a PIN hash ({_PREFIX}$N$r$p$<salt hex>$<hash hex>, six fields separated by '$')")
    if not all(x.isascii() and x.isdigit() and len(x) <= 7 for x in parts[1:4]):
        raise PinError("the cost parameters N, r and p must be whole numbers")
    n, r, p = (int(x) for x in parts[1:4])
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0) or not 1 <= r <= 16 or not 1 <= p <= 4:
        raise PinError(f"cost N={n} r={r} p={p}: N must be a power of two from 2 to {_MAX_N}, r 1-16, p 1-4")
    salt, digest = parts[4], parts[5]
    if not all(c in "0123456789abcdef" for c in salt + digest):
        raise PinError("salt and hash must be lower-case hexadecimal")
    if not 8 <= len(salt) // 2 <= 64 or len(salt) % 2:
        raise PinError(f"the salt has {len(salt)} hex digits; give 16 to 128 (8 to 64 bytes)")
    if len(digest) != 2 * HASH_BYTES:
        raise PinError(f"the hash has {len(digest)} hex digits; a PIN hash has {2 * HASH_BYTES}")
    return text


def judge_pin(pin: str, pin_hash: str | None, duress_hash: str | None) -> str:
    """:data:`MATCH`, :data:`DURESS` or :data:`WRONG` for ``pin`` against a person's two hashes.

    Two checks are always made (a missing hash is replaced by a hash of nothing anyone can
    enter), so the time taken tells neither which PIN was entered nor whether one is set.
    """
    match = verify_pin(pin, pin_hash or _unusable_hash())
    duress = verify_pin(pin, duress_hash or _unusable_hash())
    if duress and duress_hash:
        return DURESS
    return MATCH if match and pin_hash else WRONG


@functools.cache
def _unusable_hash() -> str:
    return hash_pin(os.urandom(8).hex().translate(_HEX_TO_DIGITS)[:MAX_LENGTH])


_HEX_TO_DIGITS = str.maketrans("abcdef", "012345")
