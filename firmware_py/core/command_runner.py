"""The supervisor's commands at the door: one table from action to method, run once per id, audited.

A :class:`~firmware_py.core.inputs.RemoteCommand` (from MQTT, or the door's own
command line through the local queue) is refused when the parser refused it,
when its action is not in :attr:`CommandRunner.ACTIONS`, or when its id already
ran; otherwise it is carried out on the door. Either way it is audited as a
``command`` event (the id remembered in the same transaction) and answered to
:attr:`CommandRunner.results`. Nothing a command holds ever ends the door's loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from firmware_py.core import commands
from firmware_py.core.events import redact, redact_id_numbers
from firmware_py.core.inputs import RemoteCommand
from firmware_py.errors import RosterError


class CommandTarget(Protocol):
    """What the commands act on: the door controller (named by its parts, so this module does not
    import the controller that builds it)."""

    clock: Any
    event_log: Any
    roster: Any

    def emit(self, category: str, type_: str, **fields) -> Any: ...
    def set_lockdown(self, on: bool, by: str) -> None: ...
    def status_changed(self) -> None: ...
    def store_backlog(self) -> None: ...

log = logging.getLogger(__name__)


class CommandRunner:
    """Runs the commands for one door.

    :param door: the controller the commands act on (lockdown, roster, status).
    :param secret: the device secret that keys the remembered command ids.
    """

    def __init__(self, door: CommandTarget, *, secret: bytes):
        self.door = door
        self.secret = secret
        self.results: list[Callable[[str | None, bool, str | None], None]] = []  # (id, ok, error) of each
        self.replay_requests: list[Callable[[int], None]] = []  # from_seq of each replay

    def handle(self, ev: RemoteCommand) -> None:
        door = self.door
        door.store_backlog()  # what waits in memory keeps its place before a revocation's roster event
        ok, error, key = self._carry_out(ev)
        detail = commands.audit_detail(ev, ok, error)  # ID-number-looking values masked, the sender as claimed_by
        try:
            try:  # the id is remembered together with its audit record
                door.emit("system", "command", detail=detail, command_key=key)
            except ValueError as exc:  # a value strict JSON cannot hold: audit the command without its arguments
                log.error("command %s: its arguments cannot be stored (%s); audited without them", detail["id"],
                          redact(str(exc))[:200])
                detail["args"] = f"the arguments could not be stored as strict JSON: {type(exc).__name__}"
                door.emit("system", "command", detail=detail, command_key=key)
        finally:  # answered even when the audit could not be stored (that is then a controller fault)
            for answer in self.results:
                try:
                    answer(detail["id"], ok, detail.get("error"))
                except Exception:
                    log.exception("answering command %s failed", detail["id"])

    def _carry_out(self, cmd: RemoteCommand) -> tuple[bool, str | None, str | None]:
        """Run ``cmd`` unless refused or already run; return (ok, error, key of the id to remember or None).

        An unexpected error while executing becomes the answer: a command from
        outside never ends the door's loop.
        """
        if cmd.error:
            return False, cmd.error, None
        action = self.ACTIONS.get(cmd.action)
        if action is None:
            return False, f"unknown action {str(cmd.action)[:64]!r}", None
        key = commands.executed_key(self.secret, cmd.id)
        if self.door.event_log.was_executed(key):
            return False, f"command id {cmd.id!r} already executed", None
        try:
            ok, error = action(self, cmd, commands.claim(cmd) or "supervisor")
        except Exception as exc:  # a command from outside must never end the door's loop
            log.error("command %s (%s) failed: %s", redact_id_numbers(str(cmd.id)), redact_id_numbers(str(cmd.action)),
                      redact_id_numbers(f"{type(exc).__name__}: {exc}"))
            ok, error = False, f"the door could not carry it out: {type(exc).__name__}"
        return ok, error, key

    def _lockdown(self, cmd: RemoteCommand, by: str) -> tuple[bool, str | None]:
        self.door.set_lockdown(True, by)
        return True, None

    def _release_lockdown(self, cmd: RemoteCommand, by: str) -> tuple[bool, str | None]:
        self.door.set_lockdown(False, by)
        return True, None

    def _revoke(self, cmd: RemoteCommand, by: str) -> tuple[bool, str | None]:
        try:
            self.door.roster.revoke(cmd.args["person_id"], cmd.args["reason"], self.door.clock.now())
        except RosterError as exc:
            return False, str(exc)
        return True, None

    def _replay(self, cmd: RemoteCommand, by: str) -> tuple[bool, str | None]:
        for request in self.replay_requests:
            request(cmd.args["from_seq"])
        return True, None

    def _status(self, cmd: RemoteCommand, by: str) -> tuple[bool, str | None]:
        self.door.status_changed()
        return True, None

    # One table from action to method (commands.ACTIONS holds each action's fields).
    ACTIONS: dict = {
        "lockdown": _lockdown,
        "release_lockdown": _release_lockdown,
        "revoke": _revoke,
        "replay": _replay,
        "status": _status,
    }
