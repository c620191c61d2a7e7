"""The staff badge reader: an ISO 14443 contactless reader on PC/SC (pcscd + pyscard)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from smartcard import scard

from firmware_py.core.inputs import SIDES, BadgeRead, DeviceFault, DeviceRecovered, Post

log = logging.getLogger(__name__)

#: PC/SC Part 3 "get data": the UID of the contactless card in the field.
GET_UID_APDU = [0xFF, 0xCA, 0x00, 0x00, 0x00]

#: UID sizes a reader answers to ``FF CA 00 00 00``: ISO 14443 A single, double
#: and triple size (4, 7, 10 bytes; ISO 14443 B's PUPI is 4), and 8 for the
#: ISO 15693 UID or FeliCa IDm that the same command returns.
UID_LENGTHS = (4, 7, 8, 10)

# Results that mean the reader or the PC/SC service is gone (not the card).
_OUTAGE_CODES = frozenset({
    scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED, scard.SCARD_E_UNKNOWN_READER,
    scard.SCARD_E_READER_UNAVAILABLE, scard.SCARD_E_NO_READERS_AVAILABLE, scard.SCARD_E_INVALID_HANDLE,
    scard.SCARD_F_COMM_ERROR, scard.SCARD_E_SYSTEM_CANCELLED, scard.SCARD_F_INTERNAL_ERROR,
})


class BadgeResponseError(ValueError):
    """The badge's answer to ``FF CA 00 00 00`` is not a UID."""


def uid_from_response(response: Sequence[int] | bytes) -> str:
    """The UID in a response APDU to ``FF CA 00 00 00``, as upper-case hex without spaces.

    Raises :class:`BadgeResponseError` when the status word is not ``90 00``,
    the response is too short to hold one (the card left mid-read) or the UID
    has a length no card has.
    """
    data = bytes(response)
    if len(data) < 2:
        raise BadgeResponseError(f"response of {len(data)} byte(s) has no status word "
                                 "(card removed while it was read?)")
    sw = data[-2:]
    if sw != b"\x90\x00":
        hint = " (the reader does not support 'get UID')" if sw == b"\x6a\x81" else ""
        raise BadgeResponseError(f"card answered status {sw.hex(' ').upper()}{hint}")
    uid = data[:-2]
    if len(uid) not in UID_LENGTHS:
        raise BadgeResponseError(f"UID of {len(uid)} byte(s); a badge UID has "
                                 f"{', '.join(map(str, UID_LENGTHS))} bytes")
    return uid.hex().upper()


class _Outage(Exception):
    """The reader or the PC/SC service is not available (message: what a technician sees)."""


_SERVICE_GONE = frozenset({scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED, scard.SCARD_F_COMM_ERROR,
                           scard.SCARD_E_INVALID_HANDLE})


def list_readers() -> list[str] | None:
    """The reader names the PC/SC service lists ([] when none), or None when it does not answer."""
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return None
    try:
        hresult, readers = scard.SCardListReaders(context, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        return list(readers) if hresult == scard.SCARD_S_SUCCESS else None
    finally:
        scard.SCardReleaseContext(context)


def _message(hresult: int) -> str:
    return f"{scard.SCardGetErrorMessage(hresult).rstrip('.')} (0x{hresult & 0xFFFFFFFF:08X})"


def _outage(reader: str, hresult: int) -> _Outage:
    if hresult in _SERVICE_GONE:
        return _Outage(f"PC/SC service lost, is pcscd running? {_message(hresult)}")
    return _Outage(f"reader {reader!r} unplugged or unavailable: {_message(hresult)}")


class BadgeReader:
    """A contactless badge reader next to the door, read through PC/SC.

    Any CCID contactless reader that answers the PC/SC "get UID" command
    ``FF CA 00 00 00`` works; the ACS ACR122U (or ACR1252U) is a common choice.
    Plug it into the Pi's USB and install ``pcscd`` (with ``libccid``). Find
    its exact name with ``pcsc_scan`` (Debian package ``pcsc-tools``): it lists
    e.g. ``0: ACS ACR122U PICC Interface 00 00``. Configure a part of that name
    that is unique: ``reader_name = "ACR122U PICC Interface 00 00"``. Two
    identical readers differ only by the index (``00 00``, ``01 00``), which
    follows the USB enumeration order: use two different models, or check with
    a card on each reader that inside and outside are not swapped after moving
    a cable. On Raspberry Pi OS the kernel NFC modules grab an ACR122U before
    pcscd can: blacklist ``pn533_usb``, ``pn533`` and ``nfc`` in
    ``/etc/modprobe.d/``. Use badges with a fixed UID: a 4-byte UID starting
    with ``08`` is random and changes at every presentation.

    Each presentation of a card posts one :class:`BadgeRead` with the UID in
    upper-case hex; the card must leave the field before it is read again. A
    card that answers with an error status, or leaves while it is read, is
    logged and skipped. When the reader is unplugged or ``pcscd`` stops, one
    :class:`DeviceFault` is posted for the outage; the driver keeps looking for
    it (back-off from ``poll_interval`` up to ``max_backoff``), posts
    :class:`DeviceRecovered` when it is back and reads cards again. A card
    already on the reader when it starts (or comes back) is read.

    :param reader_name: a substring of the PC/SC reader name (see above).
    :param side: where the reader is mounted: ``"outside"`` (entry) or
        ``"inside"`` (exit).
    :param post: where to report events (usually the controller queue's
        ``put``); called on the reader's own thread.
    :param poll_interval: seconds between checks that :meth:`close` was asked
        for, and the first retry delay after an outage.
    :param max_backoff: the longest delay between two attempts to find the
        reader again.
    :param name: the device name in faults and logs (default
        ``badge_reader.<side>``).
    """

    def __init__(self, reader_name: str, *, side: str, post: Post, poll_interval: float = 0.2,
                 max_backoff: float = 2.0, name: str | None = None):
        if not reader_name:
            raise ValueError("reader_name must be a non-empty part of the PC/SC reader name")
        if side not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)}, not {side!r}")
        if poll_interval <= 0 or max_backoff < poll_interval:
            raise ValueError("need 0 < poll_interval <= max_backoff")
        self.reader_name = reader_name
        self.side = side
        self.name = name or f"badge_reader.{side}"
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self._post = post
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._context_lock = threading.Lock()
        self._context: int | None = None
        self._thread: threading.Thread | None = None
        self._faulted = False
        self._reader: str | None = None  # the PC/SC reader in use

    def __repr__(self) -> str:
        state = "faulted" if self._faulted else ("watching " + repr(self._reader) if self._reader else "idle")
        return f"<BadgeReader {self.name} {self.reader_name!r}: {state}>"

    # ------------------------------------------------------------ lifecycle

    def start(self) -> BadgeReader:
        """Start watching the reader on a thread of its own."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop watching; returns within about ``poll_interval``."""
        self._stop.set()
        with self._context_lock:
            if self._context is not None:
                scard.SCardCancel(self._context)  # wakes SCardGetStatusChange at once
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.poll_interval + 2.0)
            if self._thread.is_alive():
                log.warning("%s: reader thread did not stop", self.name)
        self._ready.clear()

    def __enter__(self) -> BadgeReader:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def reader(self) -> str | None:
        """The full PC/SC name of the reader in use, ``None`` while it is missing."""
        return self._reader

    @property
    def faulted(self) -> bool:
        return self._faulted

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the reader is found and watched for cards."""
        return self._ready.wait(timeout)

    # ---------------------------------------------------------------- thread

    def _run(self) -> None:
        backoff = self.poll_interval
        while not self._stop.is_set():
            watched = False
            try:
                self._watch()
            except _Outage as exc:
                self._fault(str(exc) if self._faulted or self._stop.is_set() else self._diagnose(str(exc)))
            except Exception as exc:  # never let the thread die: report and retry
                log.exception("%s: unexpected error", self.name)
                self._fault(f"unexpected error: {exc!r}")
            finally:
                watched = self._ready.is_set()  # the reader was there: start backing off afresh
                self._ready.clear()
                self._reader = None
                self._release_context()
            if watched:
                backoff = self.poll_interval
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, self.max_backoff)
        log.debug("%s: stopped", self.name)

    def _watch(self) -> None:
        """Find the reader and read cards until it goes away (raises) or close() (returns)."""
        context = self._establish_context()
        reader = self._find_reader(context)
        self._reader = reader
        self._recovered(reader)
        self._ready.set()
        state = scard.SCARD_STATE_UNAWARE
        presentation: int | None = None  # event counter of the card last seen, None: no card
        retry = True  # one more attempt if the read of this presentation broke off
        timeout_ms = max(1, int(self.poll_interval * 1000))
        while not self._stop.is_set():
            hresult, states = scard.SCardGetStatusChange(context, timeout_ms, [(reader, state)])
            if hresult in (scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED):
                continue
            if hresult != scard.SCARD_S_SUCCESS:
                raise _outage(reader, hresult)
            event = states[0][1]
            state = event & ~scard.SCARD_STATE_CHANGED
            if event & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
                raise _Outage(f"reader {reader!r} unplugged")
            if not event & scard.SCARD_STATE_PRESENT:
                presentation, retry = None, True
                continue
            counter = event >> 16  # pcsc-lite counts insertions and removals here
            if presentation == counter:
                continue  # the same card, still in the field
            presentation = counter
            if event & scard.SCARD_STATE_MUTE:
                log.warning("%s: a card is on the reader but does not answer; skipped", self.name)
                continue
            if not self._read_card(context, reader) and retry:
                # The card went quiet mid-read; pcscd may not have seen it leave
                # (a card swapped within its poll). Look once more, shortly.
                retry, presentation, state = False, None, scard.SCARD_STATE_UNAWARE
                self._stop.wait(self.poll_interval)

    def _establish_context(self) -> int:
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            raise _Outage(f"PC/SC service not available, is pcscd running? {_message(hresult)}")
        with self._context_lock:
            self._context = context
        if self._stop.is_set():  # close() came before there was a context to cancel
            raise _Outage("closing")
        return context

    def _release_context(self) -> None:
        with self._context_lock:
            context, self._context = self._context, None
        if context is not None:
            scard.SCardReleaseContext(context)  # fails harmlessly when pcscd is gone

    def _list_readers(self, context: int) -> list[str]:
        hresult, readers = scard.SCardListReaders(context, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if hresult != scard.SCARD_S_SUCCESS:
            raise _outage("(any)", hresult)
        return list(readers)

    def _not_found(self, readers: list[str]) -> str:
        present = ", ".join(repr(r) for r in readers) or "none"
        return f"no PC/SC reader named like {self.reader_name!r} (readers present: {present})"

    def _diagnose(self, detail: str) -> str:
        """A fresh look at what is missing, for the fault report: the service or the reader."""
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            return f"PC/SC service not available, is pcscd running? {_message(hresult)}"
        try:
            readers = self._list_readers(context)
            if not any(self.reader_name in r for r in readers):
                return self._not_found(readers)
        except _Outage as exc:
            return str(exc)
        finally:
            scard.SCardReleaseContext(context)
        return detail

    def _find_reader(self, context: int) -> str:
        readers = self._list_readers(context)
        matches = [r for r in readers if self.reader_name in r]
        if not matches:
            raise _Outage(self._not_found(readers))
        if len(matches) > 1:
            log.warning("%s: %d readers match %r, using %r: configure a longer part of the name",
                        self.name, len(matches), self.reader_name, matches[0])
        return matches[0]

    def _read_card(self, context: int, reader: str) -> bool:
        """Read and post the UID; False if the exchange with the card broke off."""
        started = time.monotonic()
        hresult, card, protocol = scard.SCardConnect(
            context, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
        if hresult != scard.SCARD_S_SUCCESS:
            self._card_failed(reader, "cannot connect to the card", hresult)
            return False
        try:
            hresult, response = scard.SCardTransmit(card, protocol, GET_UID_APDU)
            if hresult != scard.SCARD_S_SUCCESS:
                self._card_failed(reader, "reading the UID failed", hresult)
                return False
        finally:
            scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
        try:
            uid = uid_from_response(response)
        except BadgeResponseError as exc:
            log.warning("%s: card skipped: %s", self.name, exc)
            return len(response) >= 2  # an empty answer: vpcd lost the card mid-read
        if len(uid) == 8 and uid.startswith("08"):
            log.warning("%s: card %s has a random UID: it cannot be enrolled as a badge", self.name, uid)
        log.debug("%s: badge %s read in %.0f ms", self.name, uid, (time.monotonic() - started) * 1000)
        self._emit(BadgeRead(side=self.side, uid=uid))
        return True

    def _card_failed(self, reader: str, what: str, hresult: int) -> None:
        if hresult in _OUTAGE_CODES:
            raise _outage(reader, hresult)
        log.warning("%s: card skipped, %s: %s", self.name, what, _message(hresult))

    # ---------------------------------------------------------------- events

    def _fault(self, detail: str) -> None:
        if self._stop.is_set():
            return
        if self._faulted:
            log.debug("%s: still unavailable: %s", self.name, detail)
            return
        self._faulted = True
        log.error("%s: %s", self.name, detail)
        self._emit(DeviceFault(device=self.name, detail=detail))

    def _recovered(self, reader: str) -> None:
        if self._faulted:
            self._faulted = False
            log.warning("%s: reader %r is back", self.name, reader)
            self._emit(DeviceRecovered(device=self.name))
        else:
            log.info("%s: watching reader %r", self.name, reader)

    def _emit(self, event: object) -> None:
        try:
            self._post(event)
        except Exception:
            log.exception("%s: posting %r failed", self.name, event)
