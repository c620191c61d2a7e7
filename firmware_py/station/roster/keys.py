"""The site's roster keys, made on the station: ``accessctl station roster keygen``.

Three files in one directory (docs/commissioning.md, "Roster keys"): the station's Ed25519 signing
key (``roster-signing.key``, PEM PKCS#8, 0600), its public half for the doors
(``roster-signing.pub``, PEM, 0644) and the site roster key (``site-roster.key``, 32 random bytes,
0600). An existing file is never overwritten: a rotation makes the new keys in another directory
beside the old ones, so the old keys stay in use until every door has the new ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from firmware_py.errors import ConfigError
from firmware_py.link import roster_keys

SIGNING_FILE = "roster-signing.key"
PUBLIC_FILE = "roster-signing.pub"
SITE_FILE = "site-roster.key"
KINDS = ("signing", "site")


@dataclass(frozen=True)
class MadeKeys:
    """What :func:`make_keys` wrote, with the fingerprints a technician compares at each door."""

    written: tuple[Path, ...]
    signing_key: Path | None = None
    public_key: Path | None = None
    site_key: Path | None = None
    public_key_id: str | None = None  # roster_keys.public_key_id of the new public key
    site_key_id: str | None = None  # roster_keys.key_id of the new site key (the bundles' key_id)


def make_keys(directory: str | Path, *, kinds: tuple[str, ...] = KINDS) -> MadeKeys:
    """Make the signing pair (``"signing"``) and/or the site roster key (``"site"``) in ``directory``.

    :class:`ConfigError`, and nothing written, when one of the files is already there.
    """
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    directory = Path(directory)
    files = {"signing": (directory / SIGNING_FILE, directory / PUBLIC_FILE), "site": (directory / SITE_FILE,)}
    for kind in kinds:
        for path in files[kind]:
            if path.exists() or path.is_symlink():
                raise ConfigError(f"{path} exists: keygen never overwrites a key. To rotate, make the new keys "
                                  "in another directory (docs/commissioning.md, 'Roster keys')")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    made: dict = {"written": ()}
    if "signing" in kinds:
        key = Ed25519PrivateKey.generate()
        private, public = files["signing"]
        _write(private, key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()), 0o600)
        _write(public, key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo), 0o644)
        made.update(written=(private, public), signing_key=private, public_key=public,
                    public_key_id=roster_keys.public_key_id(key.public_key()))
    if "site" in kinds:
        secret = os.urandom(roster_keys.SITE_KEY_SIZE)
        _write(files["site"][0], secret, 0o600)
        made.update(written=(*made["written"], files["site"][0]), site_key=files["site"][0],
                    site_key_id=roster_keys.key_id(secret))
    return MadeKeys(**made)


def _write(path: Path, data: bytes, mode: int) -> None:
    """A new file with ``mode`` from its first byte (never a moment readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # whatever the umask
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
