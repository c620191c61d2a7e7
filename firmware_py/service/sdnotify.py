"""Telling systemd how the service is doing: the sd_notify datagram protocol, no dependency.

systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket)
to a ``Type=notify`` service; the service sends newline-separated
``KEY=VALUE`` lines as one datagram. With ``WatchdogSec=`` it also passes
``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, the process that must ping).

The contract with the controller (deploy/accessctl.service):

- :meth:`Notifier.ready` once the controller has started (drivers open, first
  event stored). Until then systemd counts the start as pending
  (``TimeoutStartSec``) and the watchdog is not yet armed.
- :meth:`Notifier.watchdog` from **each iteration of the event loop**, never
  from a timer thread. A loop that hangs stops pinging and systemd kills and
  restarts it after ``WatchdogSec``; a busy loop still iterates, so it keeps
  pinging. The loop wakes at least once a second, well inside the 5 s
  (half of ``WatchdogSec=10``) that :attr:`Notifier.watchdog_interval` reports.
  Calls are cheap: at most one datagram goes out per tenth of ``WATCHDOG_USEC``
  (:attr:`Notifier.min_ping_gap`), however often the loop turns.
- :meth:`Notifier.stopping` when a stop was requested, before closing devices.

Without ``NOTIFY_SOCKET`` (run by hand, in tests, in the simulator) every
method is a no-op. A failing send is logged once and never raised: the door
must not stop because its supervisor cannot be told.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """One service's channel to systemd's notify socket.

    ``address`` is the socket path (``None``: not run by systemd, every call
    does nothing); ``watchdog_usec`` the watchdog timeout systemd announced, or
    ``None`` without a watchdog; ``monotonic`` a clock for throttling pings.
    """

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.address = address
        self._target = _socket_address(address) if address else None
        self.watchdog_usec = watchdog_usec
        self._monotonic = monotonic
        self._last_ping: float | None = None
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, pid: int | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> Notifier:
        """The notifier systemd set up for this process (``os.environ`` unless given).

        The watchdog counts only when ``WATCHDOG_PID`` is unset or is this
        process (``pid``, default ``os.getpid()``), as in ``sd_watchdog_enabled``.
        """
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET") or None
        if address and not (address.startswith("/") or address.startswith("@")):
            log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract socket; not notifying systemd", address)
            address = None
        usec = _positive_int(environ.get("WATCHDOG_USEC"))
        watchdog_pid = _positive_int(environ.get("WATCHDOG_PID"))
        if watchdog_pid is not None and watchdog_pid != (pid if pid is not None else os.getpid()):
            usec = None
        return cls(address, watchdog_usec=usec, monotonic=monotonic)

    # ------------------------------------------------------------------ facts

    @property
    def enabled(self) -> bool:
        """True when run by systemd with a notify socket."""
        return self._target is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings that keep the watchdog content (half its timeout), or None."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    @property
    def min_ping_gap(self) -> float:
        """Pings closer together than this are not sent (a tenth of the timeout; 0 without one)."""
        return self.watchdog_usec / 1e7 if self.watchdog_usec else 0.0

    # ------------------------------------------------------------------ messages

    def ready(self) -> bool:
        """The service has started: systemd's start job completes and the watchdog is armed."""
        return self.send("READY=1")

    def watchdog(self) -> bool:
        """Ping the watchdog (``WATCHDOG=1``); True when a datagram went out."""
        if not self.enabled:
            return False
        now = self._monotonic()
        if self._last_ping is not None and now - self._last_ping < self.min_ping_gap:
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        """The service is shutting down (systemd stops expecting pings)."""
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        """One line shown by ``systemctl status`` (newlines become spaces)."""
        return self.send("STATUS=" + " ".join(text.splitlines()))

    def send(self, message: str) -> bool:
        """Send raw ``KEY=VALUE`` lines; False (logged once) when there is no socket or it fails."""
        if self._target is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode("utf-8"), self._target)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
                self._warned = True
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __repr__(self) -> str:
        return f"Notifier({self.address!r}, watchdog_usec={self.watchdog_usec!r})"


def _socket_address(address: str) -> str | bytes:
    # '@name' is Linux's abstract namespace: the kernel wants a leading NUL byte instead.
    return b"\0" + address[1:].encode() if address.startswith("@") else address


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(text) if text else None
    except ValueError:
        return None
    return value if value and value > 0 else None
