"""The command ids a door has run, so that a command delivered twice runs once (DESIGN.md "MQTT" → cmd).

Kept in the door's database as keyed hashes (an id may hold personal data;
:func:`firmware_py.core.commands.executed_key`), oldest first, the last
:data:`REMEMBERED_IDS` of them. :func:`remember_executed` runs inside the
transaction that stores the command's audit event.
"""

from __future__ import annotations

import sqlite_utils

EXECUTED_TABLE = "executed_commands"  # keyed hashes of the command ids run, oldest first (storage.db's schema)
REMEMBERED_IDS = 10_000  # how many of them the door keeps


def was_executed(db: sqlite_utils.Database, key: str) -> bool:
    # A read only (the table is in storage.db's schema): a writer on another connection never makes it wait.
    return db.execute(f"SELECT 1 FROM {EXECUTED_TABLE} WHERE key = ?", (key,)).fetchone() is not None


def remember_executed(db: sqlite_utils.Database, key: str, keep: int | None = None) -> None:
    """Remember that the id behind ``key`` ran; forget all but the last ``keep`` (:data:`REMEMBERED_IDS`)."""
    keep = REMEMBERED_IDS if keep is None else keep
    n = db.execute(f"INSERT OR IGNORE INTO {EXECUTED_TABLE} (key) VALUES (?)", (key,)).lastrowid
    if n and n > keep:
        db.execute(f"DELETE FROM {EXECUTED_TABLE} WHERE n <= ?", (n - keep,))
