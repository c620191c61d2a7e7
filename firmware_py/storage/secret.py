"""The device secret: the 32-byte key the roster's ID hashes are made with, in a file beside the database.

It is created on first use with mode 0600. Losing it makes every stored hash
unmatchable, so it is backed up together with the database. The hash itself
is :func:`firmware_py.core.idnumber.id_hash` (pure); this module is the file.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from firmware_py.errors import SecretError

log = logging.getLogger(__name__)

SECRET_SIZE = 32


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


