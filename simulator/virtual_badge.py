"""A staff badge played over the socket of vsmartcard's virtual reader (vpcd).

vpcd is a PC/SC reader driver loaded by the real ``pcscd``; instead of an
antenna it listens on a TCP port (35963 for ``Virtual PCD 00 00``, 35964 for
``Virtual PCD 00 01`` under Debian's own configuration; the simulator's and the
tests' own pcscd use a free pair, :attr:`simulator.pcsc_stack.Pcscd.card_ports`)
and the card connects to it as a client. Connecting is
holding the badge to the reader, disconnecting is taking it away.

Every message both ways is a 2-byte big-endian length and a payload. A 1-byte
payload from vpcd is a control: 0 power off, 1 power on, 2 reset (no reply),
4 "send your ATR" (reply with the ATR; pcscd asks for it about every 400 ms to
see whether the card is still there). A longer payload is a command APDU and
the reply is the response APDU. The badge answers ``FF CA 00 00 00`` (PC/SC
Part 3 "get data: UID") with its UID and ``90 00``, like a contactless reader
does for an ISO 14443 card, and ``6A 81`` (function not supported) to anything
else.

``vpcd must never be installed on the production controller``: it listens on
all interfaces. It belongs to the development and test set-up only.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time

log = logging.getLogger(__name__)

VPCD_HOST = "127.0.0.1"
VPCD_PORTS = {"Virtual PCD 00 00": 35963, "Virtual PCD 00 01": 35964}

# The ATR a PC/SC contactless reader (e.g. ACR122U) reports for a MIFARE Classic
# 1K card: PC/SC Part 3 storage-card ATR, RID A0 00 00 03 06, standard 03
# (ISO 14443 A part 3), card name 00 01, TCK 6A (XOR of T0..the last byte).
DEFAULT_ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")

GET_UID = bytes.fromhex("FFCA0000")
SW_OK = 0x9000
SW_NOT_SUPPORTED = bytes.fromhex("6A81")

_CTRL_OFF, _CTRL_ON, _CTRL_RESET, _CTRL_ATR = 0, 1, 2, 4


def _uid_bytes(uid: bytes | str) -> bytes:
    if isinstance(uid, str):
        uid = bytes.fromhex(uid.replace(":", "").replace(" ", ""))
    if not 1 <= len(uid) <= 10:
        raise ValueError(f"a badge UID has 4, 7 or 10 bytes, got {len(uid)}")
    return bytes(uid)


class VirtualBadge:
    """An ISO 14443 staff badge held to a vpcd virtual reader.

    :param uid: the badge UID, as bytes or hex (``"04A1B2C3D4E5F6"``, spaces and
        colons allowed).
    :param port: vpcd's card port: 35963 is the reader ``Virtual PCD 00 00``,
        35964 ``Virtual PCD 00 01``.
    :param atr: the answer-to-reset the card reports.
    :param uid_status: the status word answered to ``FF CA 00 00 00``;
        anything but ``0x9000`` makes a faulty badge that answers only the
        status word (e.g. ``0x6A81``).
    :param drop_on_read: the badge is snatched away while the UID is being read:
        it disconnects instead of answering ``FF CA``.
    """

    def __init__(self, uid: bytes | str, *, port: int = 35963, atr: bytes = DEFAULT_ATR,
                 uid_status: int = SW_OK, drop_on_read: bool = False, host: str = VPCD_HOST) -> None:
        self.uid = _uid_bytes(uid)
        self.port = port
        self.host = host
        self.atr = bytes(atr)
        self.uid_status = uid_status
        self.drop_on_read = drop_on_read
        self._lock = threading.Condition()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._uid_requests = 0  # FF CA commands answered (or dropped) since the last insert()
        self.uids_read = 0      # FF CA answered with the UID and 90 00, over the badge's life
        self.powered = False

    def __repr__(self) -> str:
        return f"VirtualBadge(uid={self.uid.hex().upper()!r}, port={self.port})"

    @property
    def inserted(self) -> bool:
        with self._lock:
            return self._sock is not None

    # ------------------------------------------------------------ presenting

    def insert(self, timeout: float = 2.0) -> None:
        """Hold the badge to the reader (connect to vpcd and serve it).

        Raises ``ConnectionError`` if vpcd is not listening (pcscd not running
        or the vpcd driver not loaded).
        """
        with self._lock:
            if self._sock is not None:
                raise RuntimeError(f"{self!r} is already on the reader")
            try:
                sock = socket.create_connection((self.host, self.port), timeout=timeout)
            except OSError as exc:
                raise ConnectionError(
                    f"cannot reach vpcd on {self.host}:{self.port} ({exc}); is pcscd running "
                    "with the vsmartcard-vpcd driver?") from exc
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            self._uid_requests = 0
            self._thread = threading.Thread(target=self._serve, args=(sock,),
                                            name=f"virtual-badge-{self.port}", daemon=True)
            self._thread.start()
        log.debug("%r inserted", self)

    def remove(self) -> None:
        """Take the badge away (disconnect). Harmless if it is not on the reader."""
        with self._lock:
            sock, thread = self._sock, self._thread
            self._sock = self._thread = None
            self.powered = False
            self._lock.notify_all()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        log.debug("%r removed", self)

    close = remove

    def wait_uid_request(self, timeout: float = 3.0) -> bool:
        """Wait until the reader asked for the UID since the last ``insert()``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._uid_requests == 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    def tap(self, timeout: float = 3.0, hold: float = 0.1) -> bool:
        """Present the badge until the reader asked for its UID (or ``timeout``), then take it away.

        ``hold`` keeps it on the reader that much longer after the read, as a
        hand does. Returns True if the UID was asked for (whatever the badge
        answered).
        """
        self.insert()
        try:
            asked = self.wait_uid_request(timeout)
            if hold:
                time.sleep(hold)
            return asked
        finally:
            self.remove()

    def __enter__(self) -> VirtualBadge:
        self.insert()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    # --------------------------------------------------------------- serving

    def _serve(self, sock: socket.socket) -> None:
        try:
            while True:
                header = _recv_exact(sock, 2)
                if header is None:
                    break
                (length,) = struct.unpack(">H", header)
                payload = _recv_exact(sock, length)
                if payload is None:
                    break
                reply = self._answer(payload)
                if reply is not _DROP and reply is not None:
                    sock.sendall(struct.pack(">H", len(reply)) + reply)
                if payload[:4] == GET_UID:  # count it once the answer is on its way
                    with self._lock:
                        self._uid_requests += 1
                        self._lock.notify_all()
                if reply is _DROP:
                    break
        except OSError as exc:
            log.debug("%r: connection ended: %s", self, exc)
        finally:
            with self._lock:
                if self._sock is sock:  # vpcd closed on us, or the badge dropped itself
                    self._sock = self._thread = None
                    self.powered = False
                self._lock.notify_all()
            try:
                sock.close()
            except OSError:
                pass

    def _answer(self, payload: bytes) -> bytes | object | None:
        if len(payload) == 1:
            ctrl = payload[0]
            if ctrl == _CTRL_ATR:
                return self.atr
            if ctrl in (_CTRL_ON, _CTRL_RESET):
                self.powered = True
            elif ctrl == _CTRL_OFF:
                self.powered = False
            else:
                log.warning("%r: unknown vpcd control byte %#04x", self, ctrl)
            return None
        if payload[:4] == GET_UID:
            return self._answer_get_uid(payload)
        log.debug("%r: unsupported APDU %s", self, payload.hex(" ").upper())
        return SW_NOT_SUPPORTED

    def _answer_get_uid(self, apdu: bytes) -> bytes | object:
        with self._lock:
            if self.drop_on_read:
                return _DROP
            if self.uid_status != SW_OK:
                return self.uid_status.to_bytes(2, "big")
            le = apdu[4] if len(apdu) >= 5 else 0
            if le and le < len(self.uid):
                return bytes([0x6C, len(self.uid)])  # wrong Le: the right one is len(uid)
            self.uids_read += 1
            return self.uid + SW_OK.to_bytes(2, "big")


_DROP = object()


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    # vpcd sends the power-on control (which has no reply) and then the APDU on a
    # Nagle socket: without an immediate ACK the APDU waits for our delayed ACK (40 ms).
    if _QUICKACK is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:
            pass
    return bytes(buf)


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only
