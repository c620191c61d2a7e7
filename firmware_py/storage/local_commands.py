"""Commands from the door's own command line to the running service.

`accessctl lockdown on` runs in another process than `accessctl run`; it
leaves the command in the database, and the service's loop takes it from
there within a second and handles it exactly like a supervisor's MQTT
command: validated, carried out, audited as a ``command`` event. It works
without a broker, which is when a technician at the door may need it most.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid

import sqlite_utils

from firmware_py.core.commands import parse
from firmware_py.core.events import redact_id_numbers
from firmware_py.core.inputs import RemoteCommand
from firmware_py.storage.db import transaction

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0


def enqueue(db: sqlite_utils.Database, command: dict, client: str) -> str:
    """Queue ``command`` (without id); return the id it was given.

    ``client`` is who the caller says it is (``local:USER``): recorded as the command's
    ``claimed_by``. It and a ``by`` field are queued with ID-number-looking text masked.
    """
    command_id = f"local-{uuid.uuid4().hex[:12]}"
    if isinstance(command.get("by"), str):
        command = {**command, "by": redact_id_numbers(command["by"])}
    with transaction(db):
        db.execute("INSERT INTO local_commands (payload, client) VALUES (?, ?)",
                   (json.dumps({"id": command_id, **command}), redact_id_numbers(client)))
    return command_id


def take(db: sqlite_utils.Database) -> list[RemoteCommand]:
    """Remove and return the queued commands, oldest first; none while the database cannot be read."""
    try:
        with transaction(db):
            rows = db.execute("SELECT id, payload, client FROM local_commands ORDER BY id").fetchall()
            if rows:
                db.execute("DELETE FROM local_commands WHERE id <= ?", (rows[-1][0],))
    except sqlite3.Error as exc:  # busy or damaged: they stay queued for the next poll; the loop goes on
        log.error("cannot take the local command queue: %s", exc)
        return []
    return [parse(str(payload).encode("utf-8", "replace"), claimed_by=str(client)) for _, payload, client in rows]


def wait_for_result(db: sqlite_utils.Database, command_id: str, timeout: float) -> dict | None:
    """The ``command`` event that answered ``command_id``, or None if none came in time."""
    deadline = time.monotonic() + timeout
    while True:
        for (body,) in db.execute("SELECT body FROM events WHERE type = 'command' ORDER BY seq DESC LIMIT 20"):
            event = json.loads(body)
            if event["detail"].get("id") == command_id:
                return event
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)
