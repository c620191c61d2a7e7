"""Supervisor commands (DESIGN.md "MQTT" → cmd): validation and execution.

:func:`parse` turns a raw ``cmd`` payload into a :class:`RemoteCommand`, with
``error`` set when it is not acceptable — the controller still audits it.
:func:`execute` carries out an accepted command on the controller.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from . import roster
from .errors import RosterError
from .inputs import RemoteCommand

if TYPE_CHECKING:
    from .controller import DoorController

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


def parse(payload: bytes, client: str | None = None) -> RemoteCommand:
    """Validate a command payload; never raises."""
    if len(payload) > MAX_PAYLOAD:
        return RemoteCommand(None, None, {}, client, f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return RemoteCommand(None, None, {}, client, f"not a JSON object: {exc}")
    if not isinstance(data, dict):
        return RemoteCommand(None, None, {}, client, "not a JSON object")
    cid = data.get("id")
    cid = cid if isinstance(cid, str) and 0 < len(cid) <= 128 else None
    action = data.get("action")
    action = action if isinstance(action, str) and len(action) <= 64 else None
    args = {k: v for k, v in data.items() if k not in ("id", "action")}
    # what the audit event may carry: short plain values only
    safe_args = {k: v for k, v in args.items()
                 if isinstance(k, str) and len(k) <= 64 and isinstance(v, (str, int, float, bool)) and len(str(v)) <= MAX_TEXT}
    if cid is None:
        return RemoteCommand(None, action, safe_args, client,
                             "field 'id' is missing or not a string of 1 to 128 characters")
    if action not in ACTIONS:
        return RemoteCommand(cid, action, safe_args, client,
                             f"unknown action {str(data.get('action'))[:64]!r}: one of {', '.join(ACTIONS)}")
    fields = ACTIONS[action]
    for name, kind in fields.items():
        if name not in args:
            return RemoteCommand(cid, action, safe_args, client, f"field {name!r} is missing for {action}")
        value = args[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            return RemoteCommand(cid, action, safe_args, client,
                                 f"field {name!r} must be {'a whole number' if kind is int else 'a string'}")
        if kind is str and not 0 < len(value) <= MAX_TEXT:
            return RemoteCommand(cid, action, safe_args, client, f"field {name!r} must be 1 to {MAX_TEXT} characters")
        if kind is int and not 1 <= value <= MAX_SEQ:
            return RemoteCommand(cid, action, safe_args, client, f"field {name!r} must be from 1 to {MAX_SEQ}")
    extra = sorted(str(k)[:64] for k in set(args) - set(fields) - {"by"})
    if extra:
        return RemoteCommand(cid, action, safe_args, client, f"unknown field(s) for {action}: {', '.join(extra)}")
    by = args.get("by")
    if by is not None and not (isinstance(by, str) and 0 < len(by) <= MAX_TEXT):
        return RemoteCommand(cid, action, safe_args, client, f"field 'by' must be 1 to {MAX_TEXT} characters")
    return RemoteCommand(cid, action, args, client)


def execute(controller: "DoorController", cmd: RemoteCommand) -> tuple[bool, str | None]:
    """Carry out an accepted command; return (ok, error)."""
    if cmd.error:
        return False, cmd.error
    by = cmd.client or str(cmd.args.get("by", "supervisor"))
    if cmd.action == "lockdown":
        controller.set_lockdown(True, by)
    elif cmd.action == "release_lockdown":
        controller.set_lockdown(False, by)
    elif cmd.action == "revoke":
        try:
            roster.revoke(controller.db, controller.store, cmd.args["person_id"], cmd.args["reason"],
                          controller.clock.now())
        except RosterError as exc:
            return False, str(exc)
    elif cmd.action == "replay":
        for request in controller.replay_requests:
            request(cmd.args["from_seq"])
    elif cmd.action == "status":
        controller._status_changed()
    return True, None
