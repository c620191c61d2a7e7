"""The door's :class:`~firmware_py.core.ports.EventLog` on SQLite.

One transaction stores an event, the door state it changes (``meta``:
occupancy, lockdown) and the command id it answers (:mod:`executed_commands`),
after the events kept in memory while the database refused them
(:attr:`SqliteEventLog.backlog`), so the log, the state and the order of
events always agree. The chain anchor beside the device secret is moved on
here, at start, stop and every :attr:`ChainAnchor.EVERY` events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from firmware_py.core.events import canonical, check_vocabulary, refuse_full_id_numbers
from firmware_py.storage.db import get_meta, set_meta, transaction
from firmware_py.storage.eventstore import ChainAnchor, EventStore
from firmware_py.storage.executed_commands import remember_executed, was_executed

ANCHORED_TYPES = ("controller_started", "controller_stopped")


class SqliteEventLog:
    """The door's event log, state and executed command ids in its SQLite database.

    :param store: the :class:`EventStore` on the door's connection.
    :param anchor: the chain anchor file to keep (the service's); None keeps none.
    """

    def __init__(self, store: EventStore, *, anchor: ChainAnchor | None = None):
        self.store = store
        self.db = store.db
        self._anchor = anchor
        self.backlog: list[dict] = []
        self._anchor_due: tuple[int, str] | None = None  # a periodic anchor, written off the decision path

    # ------------------------------------------------------------------ writing

    def record(self, category: str, type: str, *, state: Mapping[str, Any] | None = None,
               command_key: str | None = None, **fields) -> list[dict]:
        check_vocabulary(category, type, fields.get("direction"), fields.get("reason"))
        item = _item(category, type, fields, state, command_key, at=None)
        with self.store.batch():
            stored = [self._write(i) for i in self.backlog]
            stored.append(self._write(item))
        self.backlog.clear()
        self._move_anchor(stored[-1])
        return stored

    def defer(self, category: str, type: str, *, state: Mapping[str, Any] | None = None,
              command_key: str | None = None, **fields) -> dict:
        check_vocabulary(category, type, fields.get("direction"), fields.get("reason"))
        at = self.store.clock.now().isoformat(timespec="milliseconds")
        event = {"seq": None, "ts": at, "site": self.store.site, "door": self.store.door, "category": category,
                 "type": type, "direction": None, "person": None, "credential": None, "reason": None,
                 **fields, "detail": fields.get("detail") or {}}
        refuse_full_id_numbers(canonical(event))  # never stored later either: refused now, not at every retry
        state = json.loads(canonical(dict(state))) if state else None  # a copy: the caller's dict moves on
        self.backlog.append(_item(category, type, fields, state, command_key, at=at))
        return event

    def store_backlog(self) -> list[dict]:
        if not self.backlog:
            return []
        with self.store.batch():
            stored = [self._write(i) for i in self.backlog]
        self.backlog.clear()
        self._move_anchor(stored[-1])
        return stored

    def _write(self, item: dict) -> dict:
        event = self.store.append(item["category"], item["type"], at=item["at"], **item["fields"])
        for key, value in (item["state"] or {}).items():
            set_meta(self.db, key, value)
        if item["command_key"] is not None:
            remember_executed(self.db, item["command_key"])
        return event

    def _move_anchor(self, last: dict) -> None:
        if self._anchor is None:
            return
        if last["type"] in ANCHORED_TYPES:
            self._anchor.write(last["seq"], last["hash"])
            self._anchor_due = None
        elif self._anchor.due(last["seq"]):
            # Its fsync would sit between a grant's record and the lock releasing: the loop
            # writes it once the input is handled (write_due_anchor).
            self._anchor_due = (last["seq"], last["hash"])

    def keep_state(self, key: str, value: Any, *, durable: bool = True) -> None:
        """Store ``key`` alone. ``durable=False`` commits without the fsync (``synchronous=NORMAL`` for
        this one transaction): in the WAL, the next durable commit makes it durable too."""
        if durable:
            with transaction(self.db):
                set_meta(self.db, key, value)
            return
        conn = self.db.conn
        conn.execute("PRAGMA synchronous=NORMAL")
        try:
            with transaction(self.db):
                set_meta(self.db, key, value)
        finally:
            conn.execute("PRAGMA synchronous=FULL")

    def write_due_anchor(self) -> None:
        """Move the anchor beside the secret if the log has grown past it (the service loop calls this)."""
        if self._anchor is not None and self._anchor_due is not None:
            seq, h = self._anchor_due
            self._anchor_due = None
            self._anchor.write(seq, h)

    # ------------------------------------------------------------------ reading

    def head(self) -> tuple[int, str]:
        return self.store.head()

    def hash_at(self, seq: int) -> str | None:
        return self.store.hash_at(seq)

    def queued(self) -> int:
        return self.store.queued()

    def anchor(self) -> tuple[int, str] | None:
        return self._anchor.read() if self._anchor is not None else None

    def state(self, key: str, default: Any = None) -> Any:
        return get_meta(self.db, key, default)

    def was_executed(self, command_key: str) -> bool:
        return (any(i["command_key"] == command_key for i in self.backlog)
                or was_executed(self.db, command_key))


def _item(category: str, type: str, fields: dict, state, command_key: str | None, *, at: str | None) -> dict:
    return {"category": category, "type": type, "fields": dict(fields), "state": state, "command_key": command_key,
            "at": at}
