"""Station accounts and sessions: who may log in, with which role, and who is logged in.

Passwords are kept as scrypt hashes (salted, memory-hard, slow), the parameters stored with each
hash so they can be raised later. Sessions are random tokens given to the browser in a cookie; the
table keeps only their SHA-256, so a copy of the archive logs nobody in. Each session has its
own CSRF token. Roles are ordered: viewer (reads) < operator (acknowledges, locks down, revokes)
< admin (accounts, roster).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from firmware_py.errors import AccountError
from firmware_py.station.archive.store import StationStore

ROLES = ("viewer", "operator", "admin")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1  # ~32 MiB and tens of milliseconds per try
_MAXMEM = 128 * 1024 * 1024


@dataclass(frozen=True)
class Session:
    token: str  # only known right after login (the table keeps its hash)
    name: str
    role: str
    csrf: str


def role_allows(role: str, needed: str) -> bool:
    """Whether ``role`` is at least ``needed`` (viewer < operator < admin)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=_MAXMEM, dklen=len(digest) // 2)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got.hex(), digest)


_DUMMY_HASH = None


def _dummy_hash() -> str:
    """A hash to check unknown names against, so a wrong name costs as much time as a wrong password."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_hex(16))
    return _DUMMY_HASH


def check_new_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters (this one has {len(password)})")


def add_account(store: StationStore, name: str, role: str, password: str, at: datetime) -> None:
    if not NAME.fullmatch(name or ""):
        raise AccountError(f"{name!r} is not an account name: letters, digits, '.', '_' or '-', at most 64")
    if role not in ROLES:
        raise AccountError(f"{role!r} is not a role: one of {', '.join(ROLES)}")
    check_new_password(password)
    if not store.add_account(name, role, hash_password(password), at):
        raise AccountError(f"account {name!r} already exists")


def new_password() -> str:
    """A password to hand over once (16 characters, about 96 bits)."""
    return secrets.token_urlsafe(12)


CHANGE_REFUSED = {
    "no_such_account": "no such account 无此账号",
    "last_admin": "the last admin cannot be disabled or demoted 不能停用或降级最后一个管理员账号",
}


def change(store: StationStore, name: str, *, role: str | None = None, disabled: bool | None = None,
           password: str | None = None) -> None:
    """Change one account (role, disabled, password); disabling it or setting its password ends its
    sessions. ``AccountError`` names why nothing changed (no such account, the last admin, a bad role
    or password)."""
    if role is not None and role not in ROLES:
        raise AccountError(f"{role!r} is not a role: one of {', '.join(ROLES)}")
    if password is not None:
        check_new_password(password)
    outcome = store.change_account(name, role=role, disabled=disabled,
                                   password_hash=hash_password(password) if password is not None else None)
    if outcome != "ok":
        raise AccountError(CHANGE_REFUSED[outcome])


def accounts(store: StationStore) -> list[tuple[str, str, str]]:
    """(name, role, created_at) of every account."""
    return store.accounts()


def authenticate(store: StationStore, name: str, password: str) -> str | None:
    """The account's role if ``password`` is its password, else None (same cost either way)."""
    row = store.account(name) if name else None
    if row is None:
        password_matches(password, _dummy_hash())
        return None
    return row[0] if password_matches(password, row[1]) else None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def open_session(store: StationStore, name: str, at: datetime) -> Session:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    role = store.add_session(_token_hash(token), name, csrf, at)
    return Session(token, name, role, csrf)


def find_session(store: StationStore, token: str | None, at: datetime, idle_s: float) -> Session | None:
    """The live session of ``token`` (its last use refreshed), or None; an idle one is ended."""
    if not token or len(token) > 256:
        return None
    key = _token_hash(token)
    row = store.session(key)
    if row is None:
        return None
    name, role, csrf, last_seen = row
    if at - datetime.fromisoformat(last_seen) > timedelta(seconds=idle_s):
        store.end_session(key)
        return None
    store.touch_session(key, at)
    return Session(token, name, role, csrf)


def close_session(store: StationStore, token: str) -> None:
    store.end_session(_token_hash(token))
