"""Supervisor commands (DESIGN.md "MQTT" → cmd): parsing and the audit record; pure.

:func:`parse` turns a raw ``cmd`` payload into a :class:`RemoteCommand`, with
``error`` set when it is not acceptable — the controller still audits it.
:data:`ACTIONS` is the vocabulary; :mod:`firmware_py.core.command_runner` carries
each action out (its one table from action to method, ``CommandRunner.ACTIONS``), at most
once per command id (:func:`executed_key`, remembered by the event log).
:func:`audit_detail` is what the ``command`` event records: outside input
quoted with ID-number-looking values masked, and the sender's name as
``claimed_by`` — what it says it is, never an identity.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json

from firmware_py.core.events import redact
from firmware_py.core.inputs import RemoteCommand

# action -> {field: type}; every field listed is required
ACTIONS: dict[str, dict[str, type]] = {
    "lockdown": {},
    "release_lockdown": {},
    "revoke": {"person_id": str, "reason": str},
    "replay": {"from_seq": int},
    "status": {},
}
MAX_PAYLOAD = 4096
MAX_TEXT = 256  # longest string argument
MAX_SEQ = 2**63 - 1  # SQLite's largest integer


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number strict JSON allows")


def parse(payload: bytes, claimed_by: str | None = None) -> RemoteCommand:
    """Validate a command payload; never raises. ``claimed_by`` is who the sender says it is."""
    def refused(cid, action, args, error):
        return RemoteCommand(cid, action, args, claimed_by, error)

    if len(payload) > MAX_PAYLOAD:
        return refused(None, None, {}, f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}")
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        return refused(None, None, {}, "not a JSON object the door accepts: nested too deeply")
    except (UnicodeDecodeError, ValueError) as exc:
        return refused(None, None, {}, f"not a JSON object: {exc}")
    if not isinstance(data, dict):
        return refused(None, None, {}, "not a JSON object")
    cid = data.get("id")
    cid = cid if isinstance(cid, str) and 0 < len(cid) <= 128 else None
    action = data.get("action")
    action = action if isinstance(action, str) and len(action) <= 64 else None
    args = {k: v for k, v in data.items() if k not in ("id", "action")}
    # what the audit event may carry: short plain values only
    safe_args = {k: v for k, v in args.items()
                 if isinstance(k, str) and len(k) <= 64
                 and isinstance(v, (str, int, float, bool)) and len(str(v)) <= MAX_TEXT}
    if cid is None:
        return refused(None, action, safe_args, "field 'id' is missing or not a string of 1 to 128 characters")
    if action not in ACTIONS:
        return refused(cid, action, safe_args,
                       f"unknown action {str(data.get('action'))[:64]!r}: one of {', '.join(ACTIONS)}")
    fields = ACTIONS[action]
    for name, kind in fields.items():
        if name not in args:
            return refused(cid, action, safe_args, f"field {name!r} is missing for {action}")
        value = args[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            kind_text = "a whole number" if kind is int else "a string"
            return refused(cid, action, safe_args, f"field {name!r} must be {kind_text}")
        if kind is str and not 0 < len(value) <= MAX_TEXT:
            return refused(cid, action, safe_args, f"field {name!r} must be 1 to {MAX_TEXT} characters")
        if kind is int and not 1 <= value <= MAX_SEQ:
            return refused(cid, action, safe_args, f"field {name!r} must be from 1 to {MAX_SEQ}")
    extra = sorted(str(k)[:64] for k in set(args) - set(fields) - {"by"})
    if extra:
        return refused(cid, action, safe_args, f"unknown field(s) for {action}: {', '.join(extra)}")
    by = args.get("by")
    if by is not None and not (isinstance(by, str) and 0 < len(by) <= MAX_TEXT):
        return refused(cid, action, safe_args, f"field 'by' must be 1 to {MAX_TEXT} characters")
    return RemoteCommand(cid, action, args, claimed_by)


def refuse_retained(cmd: RemoteCommand) -> RemoteCommand:
    """The command refused because it came as a retained message (DESIGN.md: commands are never retained).

    A retained command would run again at every reconnect (a retained ``release_lockdown``
    would lift every lockdown set at the door), so it is audited and answered, never run.
    """
    error = "a retained command is refused: commands must be published without retain"
    return dataclasses.replace(cmd, error=f"{error} (also: {cmd.error})" if cmd.error else error)


def claim(cmd: RemoteCommand) -> str | None:
    """Who the sender says it is, masked: the MQTT ``client`` property or ``local:USER``, else the ``by`` field."""
    by = cmd.args.get("by")
    claimed = cmd.claimed_by or (by if isinstance(by, str) else None)
    return redact(claimed) if claimed else None


def audit_detail(cmd: RemoteCommand, ok: bool, error: str | None) -> dict:
    """The ``command`` event's detail: what came from outside, ID-number-looking values masked."""
    detail = {"id": redact(cmd.id), "action": redact(cmd.action), "args": redact(cmd.args),
              "claimed_by": claim(cmd), "ok": ok}
    if error:
        detail["error"] = redact(error)
    return detail


# ---------------------------------------------------------------------- command ids already run


def executed_key(secret: bytes, command_id: str) -> str:
    """How a command id is remembered: HMAC-SHA-256 under the device secret (an id may hold personal data)."""
    return hmac.new(secret, command_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
