"""Door commands from the page: the door's own ``cmd`` topic and payload (DESIGN.md "MQTT").

``{"id": "station-…", "action": "lockdown" | "release_lockdown" | "revoke", …, "by": ACCOUNT}``,
QoS 1, never retained, published through the monitor's MQTT client (the station's one
connection). The door audits the command with ``by``; the station audits the request. A full ID
number typed into a revoke's reason is masked before the command leaves (the door keeps the reason).
With the station's signing key (``[roster] signing_key``) the command is signed for its one door
with its issue time (:func:`firmware_py.link.signed_commands.sign_command`), so a door that runs
only signed commands obeys it and nobody else's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from firmware_py.core.commands import MAX_TEXT
from firmware_py.link.signed_commands import command_payload
from firmware_py.station.archive import masking

ACTIONS = ("lockdown", "release_lockdown", "revoke")


class CommandRefused(ValueError):
    """The command cannot be sent as asked (missing or over-long field)."""


@dataclass(frozen=True)
class Sent:
    id: str
    topic: str
    payload: dict


def build(action: str, by: str, *, person_id: str = "", reason: str = "") -> dict:
    if action not in ACTIONS:
        raise CommandRefused(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    command = {"id": f"station-{uuid.uuid4().hex[:16]}", "action": action}
    if action == "revoke":
        person_id, reason = person_id.strip(), masking.mask_text(reason.strip())
        for name, value in (("person_id", person_id), ("reason", reason)):
            if not 0 < len(value) <= MAX_TEXT:
                raise CommandRefused(f"revoke needs a {name} of 1 to {MAX_TEXT} characters")
        command.update(person_id=person_id, reason=reason)
    command["by"] = by
    return command


def send(monitor, prefix: str, site: str, door: str, command: dict, *, key=None, now: datetime | None = None,
         timeout_s: float = 5.0) -> Sent:
    """Publish ``command`` to the door (signed when the station has a ``key``) and wait for the broker's
    acknowledgement.

    Raises :class:`ConnectionError` when the station is not connected or the broker does not
    acknowledge within ``timeout_s``.
    """
    client = getattr(monitor, "client", None)
    if client is None or not monitor.connected:
        raise ConnectionError("the station is not connected to the broker: nothing was sent")
    topic = f"{prefix}/{site}/{door}/cmd"
    info = client.publish(topic, command_payload(command, site=site, door=door, key=key, now=now), qos=1, retain=False)
    info.wait_for_publish(timeout_s)
    if not info.is_published():
        raise ConnectionError(f"the broker did not acknowledge the command on {topic} within {timeout_s:g} s")
    return Sent(command["id"], topic, command)
