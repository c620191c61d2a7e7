"""The resident ID card reader at the door: a SAM module on a serial line."""

from __future__ import annotations

import logging
import threading
import time

import serial

from drivers import ga467
from firmware_py.core.inputs import SIDES, DeviceFault, DeviceRecovered, IdCardRead, Post

log = logging.getLogger(__name__)

SILENT_REQUESTS_BEFORE_FAULT = 2
"""Unanswered requests in a row that make an outage (one lost frame is not one)."""
GARBLED_POLLS_BEFORE_FAULT = 5
"""Polls in a row that brought bytes but no valid frame (a wrong baud rate, a bad cable) that
make an outage: a garbled frame now and then is retried, this many is a reader that is down."""

_READ_SLICE_S = 0.05  # longest blocking read: how quickly close() is noticed
_AFTER_BAD_FRAME_S = 0.05  # after a bad frame, wait this long for a good one before giving up
READ_TIMEOUT_FLOOR_S = 1.0
"""The read command waits at least this long: a SAM module needs a good part of a
second to fetch the card's data over RF and decrypt it, before it sends a byte."""


class _Silent(Exception):
    """The reader did not answer at all (or the port is gone)."""


class ResidentIdReader:
    """A resident ID card reader with a SAM module (GA 467 frames) on ``port``.

    The reader is polled: *find card*, and when a card is there *select* and
    *read text and photo*. A complete read posts one
    :class:`~firmware_py.core.inputs.IdCardRead` per presentation: a card left on the
    reader is not reported again until *find* has reported no card. If the
    reader stops answering, one :class:`~firmware_py.core.inputs.DeviceFault` is
    posted for the outage (device ``id_reader.<side>``); it keeps being asked,
    at a slowing pace (``poll_interval`` doubling up to ``max_backoff``), and
    :class:`~firmware_py.core.inputs.DeviceRecovered` is posted when it answers
    again. A garbled, bad-checksum or truncated frame is logged (never the card
    data) and the poll is repeated; a reader that talks but sends no valid frame
    for ``GARBLED_POLLS_BEFORE_FAULT`` polls in a row (a wrong baud rate, a bad
    cable) is an outage too, reported and recovered the same way. The driver
    decides nothing about access.

    Wiring (for the installer): the module's UART is 115200 8N1 by default (see
    the module's label; some are set to 9600). Most are sold with a USB-serial
    bridge: plug it in and use its stable name,
    ``/dev/serial/by-id/usb-...``, rather than ``/dev/ttyUSB0``, which can swap
    between the two readers after a reboot. A bare TTL module goes to the Pi's
    UART (GPIO14 TXD → module RXD, GPIO15 RXD ← module TXD, GND to GND;
    ``/dev/serial0`` with the serial console disabled in ``raspi-config``);
    check the module's logic level, the Pi's pins are 3.3 V only. Mount the
    *outside* reader at the entry and the *inside* one at the exit, and name
    them so in the config (``[[hardware.id_reader]] side = ...``).

    :param port: the serial device or a pyserial URL.
    :param side: ``"outside"`` (entry) or ``"inside"`` (exit).
    :param post: where events go, normally the controller queue's ``put``.
    :param baudrate: the module's line speed.
    :param poll_interval: seconds between polls while all is well.
    :param response_timeout: seconds to wait for an answer before it counts as silence
        (the read command gets at least ``READ_TIMEOUT_FLOOR_S``); an answer still
        arriving then is awaited while its bytes keep flowing.
    :param name: for logs and the thread name; defaults to ``id_reader.<side>``.
    :param max_backoff: the longest pause between retries of a silent reader.
    """

    def __init__(self, port: str, *, side: str, post: Post, baudrate: int = 115200,
                 poll_interval: float = 0.3, response_timeout: float = 1.0, name: str | None = None,
                 max_backoff: float = 5.0):
        if side not in SIDES:
            raise ValueError(f"ResidentIdReader side must be one of {', '.join(SIDES)}, not {side!r}")
        if poll_interval <= 0 or response_timeout <= 0:
            raise ValueError("ResidentIdReader poll_interval and response_timeout must be positive")
        self.port = port
        self.side = side
        self.baudrate = baudrate
        self.poll_interval = poll_interval
        self.response_timeout = response_timeout
        self.max_backoff = max(max_backoff, poll_interval)
        self.device = f"id_reader.{side}"
        # a pause this long inside a frame means the rest is not coming (UART or USB latency)
        self._byte_gap = max(0.1, 64 * 10 / baudrate)
        self.name = name or self.device
        self._post = post
        self._serial: serial.SerialBase | None = None
        self._parser = ga467.FrameParser()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._faulty = False
        self._silent_count = 0
        self._frameless_count = 0  # polls in a row without a valid frame (silent or garbled)
        self._card_read = False  # the card now on the reader has been posted
        self._card_warned = False  # a failure with the card now on the reader was logged

    def __repr__(self) -> str:
        return f"ResidentIdReader(port={self.port!r}, side={self.side!r})"

    # ------------------------------------------------------------ public --
    def start(self) -> None:
        """Start polling in a background thread (the port is opened there)."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop polling and release the port; returns within about 0.1 s."""
        self._closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._close_port()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def faulty(self) -> bool:
        """True while the reader is in an outage (a DeviceFault was posted)."""
        return self._faulty

    def __enter__(self) -> ResidentIdReader:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------- loop --
    def _run(self) -> None:
        delay = 0.0
        while not self._stop.wait(delay):
            try:
                delay = self._poll()
            except _Silent as exc:
                delay = self._on_silence(str(exc))
            except Exception:  # a driver thread must not die on a surprise
                log.exception("%s: unexpected error while polling; retrying", self.name)
                self._close_port()
                delay = self.max_backoff
        self._close_port()

    def _poll(self) -> float:
        found = self._transact(ga467.FIND_CARD, "find card")
        if found is None:
            return self.poll_interval
        if found.status == ga467.Status.FIND_FAILED:
            self._card_read = self._card_warned = False  # the presentation is over
            return self.poll_interval
        if found.status != ga467.Status.CARD_FOUND:
            log.info("%s: find card answered %s", self.name, found.status_text)
            return self.poll_interval
        if self._card_read:
            return self.poll_interval
        selected = self._transact(ga467.SELECT_CARD, "select card")
        if selected is None or selected.status != ga467.Status.SUCCESS:
            self._card_failure("select card", selected)
            return self.poll_interval
        read = self._transact(ga467.READ_TEXT_PHOTO, "read card",
                              timeout=max(self.response_timeout, READ_TIMEOUT_FLOOR_S))
        if read is None or read.status != ga467.Status.SUCCESS:
            self._card_failure("read card", read)
            return self.poll_interval
        try:
            text, _photo = ga467.parse_read_data(read.data)
            card = ga467.decode_text(text)
        except ga467.Ga467Error as exc:
            self._card_failure(f"read card ({exc})", None)
            return self.poll_interval
        self._card_read = True
        log.info("%s: card read", self.name)
        self._post(IdCardRead(
            side=self.side, id_number=card.id_number, name=card.name, sex=card.sex,
            nation=card.nation, birth_date=card.birth_date, address=card.address,
            issuer=card.issuer, valid_from=card.valid_from, valid_to=card.valid_to,
        ))
        return self.poll_interval

    def _card_failure(self, what: str, response: ga467.Response | None) -> None:
        reason = response.status_text if response is not None else "no usable answer"
        level = logging.DEBUG if self._card_warned else logging.WARNING
        self._card_warned = True
        log.log(level, "%s: %s failed: %s; will retry", self.name, what, reason)

    def _on_silence(self, detail: str) -> float:
        self._silent_count += 1
        self._frameless_count += 1
        log.debug("%s: %s", self.name, detail)
        if self._silent_count >= SILENT_REQUESTS_BEFORE_FAULT:
            self._fault(detail)
        elif self._frameless_count >= GARBLED_POLLS_BEFORE_FAULT:
            self._fault(f"no valid frame for {self._frameless_count} polls ({detail})")
        retries = max(self._silent_count - SILENT_REQUESTS_BEFORE_FAULT, 0)
        return min(self.poll_interval * 2 ** min(retries, 16), self.max_backoff)

    def _on_garbage(self, what: str, received: int) -> None:
        """``what`` brought ``received`` bytes and no valid frame."""
        self._silent_count = 0  # it is talking, if badly
        self._frameless_count += 1
        if self._frameless_count >= GARBLED_POLLS_BEFORE_FAULT:
            self._fault(
                f"no valid frame for {self._frameless_count} polls (only garbage: {received} bytes in answer "
                f"to {what}): check that the reader's baud rate is {self.baudrate} and its wiring")

    def _fault(self, detail: str) -> None:
        if not self._faulty:
            self._faulty = True
            log.warning("%s: reader out of order: %s", self.name, detail)
            self._post(DeviceFault(device=self.device, detail=detail))

    def _on_answer(self) -> None:
        self._silent_count = 0
        self._frameless_count = 0
        if self._faulty:
            self._faulty = False
            log.warning("%s: reader answers again", self.name)
            self._post(DeviceRecovered(device=self.device))

    # ------------------------------------------------------------ serial --
    def _open_port(self) -> serial.SerialBase:
        if self._serial is None:
            try:
                self._serial = serial.serial_for_url(
                    self.port, baudrate=self.baudrate, bytesize=8, parity="N", stopbits=1,
                    timeout=_READ_SLICE_S, write_timeout=self.response_timeout, exclusive=True,
                )
            except (serial.SerialException, OSError, ValueError) as exc:
                raise _Silent(f"cannot open {self.port}: {exc}") from None
        return self._serial

    def _close_port(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except Exception:
                pass

    def _transact(self, request: bytes, what: str, timeout: float | None = None) -> ga467.Response | None:
        """Send ``request``; the response, or None (logged) if only garbage came.

        Raises :class:`_Silent` when nothing at all came back in time.
        """
        port = self._open_port()
        parser = self._parser
        try:
            port.reset_input_buffer()  # a late answer to an earlier request is stale
            parser.reset()
            port.write(request)
            timeout = timeout or self.response_timeout
            deadline = time.monotonic() + timeout
            received = 0
            bad: list[ga467.BadFrame] = []
            while not self._stop.is_set() and time.monotonic() < deadline:
                chunk = port.read(max(1, port.in_waiting))
                if not chunk:
                    continue
                received += len(chunk)
                response = self._first_response(parser.feed(chunk), bad, what)
                if response is not None:
                    return response
                now = time.monotonic()
                if bad:
                    deadline = min(deadline, now + _AFTER_BAD_FRAME_S)
                else:  # a long frame may take longer than the timeout: wait while it flows
                    deadline = max(deadline, now + self._byte_gap)
        except (serial.SerialException, OSError) as exc:
            self._close_port()
            raise _Silent(f"serial port {self.port} failed: {exc}") from None
        if self._stop.is_set():
            return None
        if received == 0:
            raise _Silent(f"no answer to {what} within {timeout:g} s on {self.port}")
        response = self._first_response(parser.flush(), bad, what)
        if response is None:
            if not bad:
                log.log(logging.DEBUG if self._faulty else logging.WARNING,
                        "%s: %s: %d bytes of noise and no frame", self.name, what, received)
            self._on_garbage(what, received)
        return response

    def _first_response(self, items: list, bad: list, what: str) -> ga467.Response | None:
        for item in items:
            if isinstance(item, ga467.BadFrame):
                bad.append(item)
                log.log(logging.DEBUG if self._faulty else logging.WARNING,
                        "%s: %s: skipped a frame with %s", self.name, what, item)
                continue
            try:
                response = ga467.Response.from_frame(item)
            except ga467.Ga467Error as exc:
                log.warning("%s: %s: skipped a frame: %s", self.name, what, exc)
                continue
            self._on_answer()
            return response
        return None
