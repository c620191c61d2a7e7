"""The keys of the station's signed roster: the station's Ed25519 pair and the site roster key.

The station signs with its private key (``[roster] signing_key``) and hashes ID numbers under the
site roster key (``[roster] site_key``); each door has the public half and the same site key
(docs/commissioning.md, "Roster keys"). Every problem with a key file is a
:class:`~firmware_py.errors.ConfigError` naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from firmware_py.errors import ConfigError

SITE_KEY_SIZE = 32


def load_signing_key(path: str | Path):
    """The station's Ed25519 private key (PEM, PKCS#8: ``openssl genpkey -algorithm ed25519``)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _read_key_file(path, "roster signing key", private=True)
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a PEM private key without a passphrase ({exc}); make one with "
                          "`openssl genpkey -algorithm ed25519 -out FILE`") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: a {type(key).__name__}, not an Ed25519 key; make one with "
                          "`openssl genpkey -algorithm ed25519 -out FILE`")
    return key


def load_public_key(path: str | Path):
    """The station's Ed25519 public key (PEM: ``openssl pkey -in signing.key -pubout``)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = _read_key_file(path, "station public key", private=False)
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a PEM public key ({exc}); make it on the station with "
                          "`openssl pkey -in roster-signing.key -pubout -out roster-signing.pub`") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: a {type(key).__name__}, not the station's Ed25519 public key")
    return key


def load_site_key(path: str | Path) -> bytes:
    """The site roster key: exactly 32 bytes (``head -c 32 /dev/urandom``), readable by its owner only."""
    data = _read_key_file(path, "site roster key", private=True)
    if len(data) != SITE_KEY_SIZE:
        raise ConfigError(f"{path}: the site roster key is {len(data)} bytes, not {SITE_KEY_SIZE}; copy the site's "
                          "key from the station (docs/commissioning.md, 'Roster keys'), never make a new one here")
    return data


def key_id(site_key: bytes) -> str:
    """A fingerprint of the site roster key (not the key): a door refuses rows hashed under another."""
    return hmac.new(site_key, b"accessctl site roster key id", hashlib.sha256).hexdigest()[:16]


def public_key_id(public_key) -> str:
    """A fingerprint of the station's public key: the same on the station and on every door that has it."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def _read_key_file(path: str | Path, what: str, *, private: bool) -> bytes:
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: the {what} must be a regular file")
        if private and st.st_mode & 0o077:
            raise ConfigError(f"{path}: the {what} has mode {stat.S_IMODE(st.st_mode):04o}; other users may read "
                              f"it. Check whether it leaked, then `chmod 600 {path}`")
        return f.read(64 * 1024)


@dataclass(frozen=True)
class DoorKeys:
    """What a door checks bundles with: the station's public key and the site roster key."""

    public_key: object
    site_key: bytes

    @property
    def key_id(self) -> str:
        return key_id(self.site_key)


def door_keys(cfg) -> DoorKeys | None:
    """The keys of a door's ``[roster]`` section, read and checked (at start); None when not configured."""
    r = cfg.roster
    if not r.enabled:
        return None
    try:
        return DoorKeys(load_public_key(r.station_public_key), load_site_key(r.site_key))
    except ConfigError as exc:
        raise ConfigError(f"{cfg.path}: [roster]: {exc}") from None
