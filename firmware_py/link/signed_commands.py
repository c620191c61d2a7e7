"""Supervisor commands signed with the station's roster key (DESIGN.md "Roster bundles", last sentences).

A signed command is the ordinary command object (``{"id", "action", …}``) with three more fields:
``issued_at`` (ISO 8601 with offset), ``door`` (``SITE/DOOR``, the one door it is for) and ``sig``,
the Ed25519 signature (base64) over :data:`DOMAIN` and the canonical JSON of every other field.
So the id, the issue time and the target door are inside the signature: a command cannot be
pointed at another door, changed, or kept and sent again after :data:`MAX_AGE_S` (within it, the
door runs a command id at most once). :func:`sign_command` is the station's side;
:func:`open_command` the door's, which turns anything unsigned, badly signed, for another door
or stale into a refused :class:`~firmware_py.core.inputs.RemoteCommand` that the controller
audits and answers like any other refusal.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from datetime import datetime

from firmware_py.core import commands
from firmware_py.core.inputs import RemoteCommand

DOMAIN = b"accessctl command v1\n"
SIGNED_FIELDS = ("issued_at", "door", "sig")
MAX_AGE_S = 600.0  # a command issued longer ago is refused (clocks are synchronised, GB 50396 5.1.3)
MAX_AHEAD_S = 60.0  # ... and one issued this far in the door's future


def _canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sign_command(private_key, command: dict, *, site: str, door: str, issued_at: datetime) -> bytes:
    """The payload to publish on the door's ``cmd`` topic: ``command`` signed for ``site/door``."""
    body = {**command, "issued_at": issued_at.isoformat(timespec="seconds"), "door": f"{site}/{door}"}
    signature = private_key.sign(DOMAIN + _canonical(body))
    return _canonical({**body, "sig": base64.b64encode(signature).decode("ascii")})


def command_payload(command: dict, *, site: str, door: str, key=None, now: datetime | None = None) -> bytes:
    """What a station puts on a door's ``cmd`` topic: ``command`` signed for ``site/door`` at ``now`` with
    ``key`` (the station's Ed25519 private key), or plain JSON from a station without a key."""
    if key is None:
        return json.dumps(command, ensure_ascii=False).encode("utf-8")
    return sign_command(key, command, site=site, door=door, issued_at=now or datetime.now().astimezone())


def open_command(payload: bytes, public_key, *, site: str, door: str, now: datetime,
                 claimed_by: str | None = None) -> RemoteCommand:
    """The command inside a signed payload, or the payload refused (``error`` says why); never raises."""
    from cryptography.exceptions import InvalidSignature

    plain = commands.parse(payload, claimed_by=claimed_by)  # size, JSON, and what the audit may quote

    def refused(why: str) -> RemoteCommand:
        return dataclasses.replace(plain, error=f"{why}; this door runs only commands signed by the station")

    if len(payload) > commands.MAX_PAYLOAD:
        return plain
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return refused("not a signed command (not JSON)")
    if not isinstance(data, dict) or "sig" not in data:
        return refused("an unsigned command is refused")
    sig, issued, target = data.get("sig"), data.get("issued_at"), data.get("door")
    body = {k: v for k, v in data.items() if k != "sig"}
    try:
        signature = base64.b64decode(sig, validate=True) if isinstance(sig, str) else b""
        public_key.verify(signature, DOMAIN + _canonical(body))
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return refused("the command's signature does not verify with the station's public key")
    if target != f"{site}/{door}":
        return refused(f"the command is signed for door {str(target)[:80]!r}, not {site}/{door}")
    try:
        at = datetime.fromisoformat(issued)
        if at.tzinfo is None:
            raise ValueError
    except (TypeError, ValueError):
        return refused("the command's issued_at is not an ISO 8601 time with its offset")
    age = (now - at).total_seconds()
    if age > MAX_AGE_S or age < -MAX_AHEAD_S:
        return refused(f"the command was issued at {at.isoformat()}, {age:.0f} s from the door's clock; at most "
                       f"{MAX_AGE_S:.0f} s old")
    inner = {k: v for k, v in data.items() if k not in SIGNED_FIELDS}
    return commands.parse(_canonical(inner), claimed_by=claimed_by)
