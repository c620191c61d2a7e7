"""PIN checks on a worker thread: the door's loop hands a PIN over and goes on handling inputs.

Both slow hashes are always checked (:func:`~firmware_py.core.pin.judge_pin`), half a second
on a Pi; on the loop that would hold an exit-button press for as long (DESIGN.md: free
egress is never blocked by software). One thread is enough: a door waits for one PIN at a
time. ``hashlib.scrypt`` lets go of the interpreter lock while it hashes, so the loop runs
meanwhile. The verdict is posted to the door's input queue as a
:class:`~firmware_py.core.inputs.PinChecked`; the PIN itself never leaves this call.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from firmware_py.core.inputs import PinChecked, Post
from firmware_py.core.pin import WRONG, judge_pin

log = logging.getLogger(__name__)


class PinWorker:
    """The service's :class:`~firmware_py.core.ports.PinChecker`; :meth:`close` it with the devices."""

    def __init__(self, post: Post):
        self._post = post
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pin-check")

    def check(self, ticket: int, pin: str, pin_hash: str | None, duress_hash: str | None) -> None:
        self._pool.submit(self._judge, ticket, pin, pin_hash, duress_hash)

    def _judge(self, ticket: int, pin: str, pin_hash: str | None, duress_hash: str | None) -> None:
        try:
            verdict = judge_pin(pin, pin_hash, duress_hash)
        except Exception as exc:  # never the PIN in the message: only what failed
            log.error("a PIN check failed (%s): counted as a wrong PIN", type(exc).__name__)
            verdict = WRONG
        self._post(PinChecked(ticket, verdict))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
