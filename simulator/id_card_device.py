"""A resident ID card reader (SAM module) at the far end of a pseudo-terminal.

The real :class:`drivers.resident_id_reader.ResidentIdReader` opens
``IdCardDevice().port`` as if it were ``/dev/ttyUSB0``; this emulator answers
its GA 467 requests with the frames a real reader sends, at the pace of the
configured baud rate (10 bits a byte, 8N1), and can misbehave on demand:
noise before an answer, a bad checksum, a truncated answer, silence, or
nothing but garbage (a reader set to another baud rate than the driver's).

Cards are synthetic: :func:`synthetic_id_number` makes a number with a valid
GB 11643 check digit for a fictional person. Never put real people here.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import tty
from collections import Counter
from dataclasses import dataclass
from datetime import date

from drivers import ga467

log = logging.getLogger(__name__)

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
DEFAULT_NOISE = b"\x00\xff\x13\xaa\xaa\x55\xaa\xaa\xaa\x96"  # includes preamble look-alikes


def gb11643_check_digit(first17: str) -> str:
    """The 18th character of a resident ID number (GB 11643)."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError("need the first 17 digits of an ID number")
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS)) % 11]


def synthetic_id_number(region: str = "430102", birth: date = date(1990, 1, 1), sequence: int = 1) -> str:
    """A well-formed ID number for a fictional person (region 430102 = Changsha, Furong).

    ``sequence`` (1-999) is the order code; odd means male, even female.
    """
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return first17 + gb11643_check_digit(first17)


@dataclass(frozen=True)
class IdCard:
    """A synthetic resident ID card; ``valid_to`` None means long-term (长期)."""

    name: str = "测试甲"
    sex: str = "male"
    nation: str = "汉"
    birth: date = date(1990, 1, 1)
    address: str = "湖南省长沙市芙蓉区测试路1号"
    id_number: str = synthetic_id_number()
    issuer: str = "长沙市公安局芙蓉分局"
    valid_from: date = date(2020, 1, 1)
    valid_to: date | None = date(2040, 1, 1)
    photo: bytes = bytes(ga467.PHOTO_SIZE)

    def __post_init__(self) -> None:
        self.text_block()  # a field too long for the card fails here, not in the device thread

    def __repr__(self) -> str:
        return f"IdCard(name={self.name!r}, id_number=<redacted>)"

    def text_block(self) -> bytes:
        return ga467.encode_text(ga467.CardText(
            name=self.name, sex=self.sex, nation=self.nation, birth_date=self.birth,
            address=self.address, id_number=self.id_number, issuer=self.issuer,
            valid_from=self.valid_from, valid_to=self.valid_to,
        ))


_ON = {"any": None, "find": ga467.Command.FIND_CARD, "select": ga467.Command.SELECT_CARD,
       "read": ga467.Command.READ_TEXT_PHOTO}

# how long the module works on a command before it answers (RF exchange, SAM crypto)
PROCESSING_S = {
    ga467.Command.FIND_CARD: 0.010,
    ga467.Command.SELECT_CARD: 0.015,
    ga467.Command.READ_TEXT_PHOTO: 0.150,
}


class IdCardDevice:
    """The emulated reader; give ``.port`` to the driver.

    ``baudrate`` sets the pace of the answers (a pty itself ignores it);
    ``time_scale`` multiplies every delay (0.1 = ten times faster than life,
    0 = no delays). Thread-safe: tests call the methods from their own thread.
    """

    CHUNK = 32  # bytes written at a time, so the driver sees frames arrive piecemeal

    def __init__(self, *, baudrate: int = 115200, time_scale: float = 1.0):
        self.baudrate = baudrate
        self.time_scale = time_scale
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._lock = threading.Condition()
        self._card: IdCard | None = None
        self._tap_event: threading.Event | None = None  # the tap still on the reader
        self._last_tap: threading.Event | None = None
        self._noise: list[tuple[ga467.Command | None, bytes]] = []
        self._bad_checksum: list[ga467.Command | None] = []
        self._truncate: list[tuple[ga467.Command | None, int | None]] = []
        self._silent = False
        self._garbage = False
        self.requests: Counter[str] = Counter()  # received requests by command name
        self.request_log: list[tuple[float, str]] = []  # (time.monotonic(), command name)
        self.reads_sent = 0  # complete, correct read responses sent
        self._stop = threading.Event()
        self._parser = ga467.FrameParser()
        self._thread = threading.Thread(target=self._serve, name="id-card-device", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"IdCardDevice(port={self.port!r})"

    # ------------------------------------------------------------ cards --
    def present(self, card: IdCard) -> None:
        """Lay ``card`` on the reader until :meth:`remove`."""
        with self._lock:
            self._card, self._tap_event = card, None

    def remove(self) -> None:
        with self._lock:
            self._card, self._tap_event = None, None

    def tap(self, card: IdCard) -> threading.Event:
        """Present ``card`` until it has been read once, then take it away.

        The returned event is set when the read response has been sent.
        """
        event = threading.Event()
        with self._lock:
            self._card, self._tap_event, self._last_tap = card, event, event
        return event

    def wait_read(self, timeout: float) -> bool:
        """Wait until the card of the last :meth:`tap` has been read; False on timeout."""
        with self._lock:
            event = self._last_tap
        if event is None:
            raise RuntimeError("wait_read() without a tap()")
        return event.wait(timeout)

    @property
    def card(self) -> IdCard | None:
        return self._card

    # --------------------------------------------------------- failures --
    def inject_noise(self, data: bytes = DEFAULT_NOISE, *, on: str = "any") -> None:
        """Send ``data`` just before the next response (to a command ``on``)."""
        with self._lock:
            self._noise.append((_ON[on], data))

    def corrupt_next_checksum(self, *, on: str = "any") -> None:
        """Flip the checksum of the next response (to a command ``on``)."""
        with self._lock:
            self._bad_checksum.append(_ON[on])

    def truncate_next(self, keep: int | None = None, *, on: str = "any") -> None:
        """Send only the first ``keep`` bytes (default half) of the next response."""
        with self._lock:
            self._truncate.append((_ON[on], keep))

    def go_silent(self) -> None:
        """Stop answering (requests are swallowed) until :meth:`resume`."""
        with self._lock:
            self._silent = True

    def talk_garbage(self) -> None:
        """Answer every request with bytes that hold no frame, as a reader at another baud rate
        than the driver's does (each byte arrives mangled), until :meth:`resume`."""
        with self._lock:
            self._garbage = True

    def resume(self) -> None:
        """Answer normally again (after :meth:`go_silent` or :meth:`talk_garbage`)."""
        with self._lock:
            self._silent = self._garbage = False

    @property
    def injections_pending(self) -> int:
        """Noise, checksum and truncation injections not yet used up."""
        with self._lock:
            return len(self._noise) + len(self._bad_checksum) + len(self._truncate)

    @property
    def silent(self) -> bool:
        return self._silent

    def wait_for_requests(self, command: str, count: int, timeout: float) -> bool:
        """Wait until ``requests[command] >= count`` (e.g. ``"FIND_CARD"``)."""
        with self._lock:
            return self._lock.wait_for(lambda: self.requests[command] >= count, timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> IdCardDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------- server --
    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(self._master, 4096)
            except OSError as exc:
                log.debug("%r stops serving: %s", self, exc)
                return
            for item in self._parser.feed(data):
                try:
                    self._answer(item)
                except Exception:  # keep serving: a test should see a bad answer, not a dead device
                    log.exception("%r failed to answer a request", self)

    def _answer(self, item: ga467.Frame | ga467.BadFrame) -> None:
        if isinstance(item, ga467.BadFrame):
            status = ga467.Status.CHECKSUM_ERROR if item.reason == "bad checksum" else ga467.Status.LENGTH_ERROR
            command, response = None, ga467.build_response(status)
        else:
            try:
                request = ga467.Request.from_frame(item)
            except ga467.Ga467Error:
                command, response = None, ga467.build_response(ga467.Status.LENGTH_ERROR)
            else:
                command = request.command
                response = self._respond(command)
        with self._lock:
            self.requests[command.name if command else "OTHER"] += 1
            self.request_log.append((time.monotonic(), command.name if command else "OTHER"))
            self._lock.notify_all()
            if self._silent:
                return
            noise = self._take(self._noise, command)
            corrupt = self._take(self._bad_checksum, command, pair=False)
            truncate = self._take(self._truncate, command)
            garbage = self._garbage
        self._sleep(PROCESSING_S.get(command, 0.005) * self.time_scale)
        good = True
        if corrupt is not _NONE:
            response = response[:-1] + bytes([response[-1] ^ 0xFF])
            good = False
        if truncate is not _NONE:
            response = response[: truncate if truncate is not None else len(response) // 2]
            good = False
        if noise is not _NONE:
            self._send(noise)
        if garbage:  # 0x80 | low nibble: never the preamble AA AA AA 96 69, so never a frame
            self._send(bytes(0x80 | (b & 0x0F) for b in response))
            return
        self._send(response)
        if good and command is ga467.Command.READ_TEXT_PHOTO and response[9] == ga467.Status.SUCCESS:
            with self._lock:
                self.reads_sent += 1
                if self._tap_event is not None:
                    self._tap_event.set()
                    self._card, self._tap_event = None, None
                self._lock.notify_all()

    def _respond(self, command: ga467.Command | None) -> bytes:
        card = self._card
        if command is ga467.Command.FIND_CARD:
            return ga467.build_find_response(card is not None)
        if command is ga467.Command.SELECT_CARD:
            return ga467.build_select_response(card is not None)
        if command is ga467.Command.READ_TEXT_PHOTO:
            if card is None:
                return ga467.build_response(ga467.Status.READ_FAILED)
            return ga467.build_read_response(card.text_block(), card.photo)
        if command in (ga467.Command.SAM_STATUS, ga467.Command.RESET_SAM):
            return ga467.build_response(ga467.Status.SUCCESS)
        return ga467.build_response(ga467.Status.BAD_COMMAND)

    @staticmethod
    def _take(pending: list, command, *, pair: bool = True):
        for i, entry in enumerate(pending):
            on = entry[0] if pair else entry
            if on is None or on is command:
                del pending[i]
                return entry[1] if pair else True
        return _NONE

    def _send(self, data: bytes) -> None:
        byte_time = 10 / self.baudrate * self.time_scale
        for i in range(0, len(data), self.CHUNK):
            if self._stop.is_set():
                return
            chunk = data[i:i + self.CHUNK]
            try:
                os.write(self._master, chunk)
            except OSError:
                return
            self._sleep(len(chunk) * byte_time)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)


_NONE = object()
