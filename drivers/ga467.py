"""GA 467 (GA/T 467) serial frames of a resident ID card reader's SAM module.

A pure codec, no I/O: the driver (:mod:`drivers.resident_id_reader`) and the
emulator (:mod:`simulator.id_card_device`) both build and parse frames here.

Frame layout, both directions::

    AA AA AA 96 69 | LEN (2, big-endian) | body | CHK

``LEN`` counts every byte after itself, the checksum included; ``CHK`` is the
XOR of the bytes from index 5 (the first length byte) up to the byte before it.
A request body is ``CMD PARA [data]``, a response body ``SW1 SW2 SW3 [data]``.

A successful "read text and photo" response (LEN ``05 08``) carries: text
length (2) and photo length (2), both big-endian, 256 bytes of UTF-16LE text
and 1024 bytes of WLT photo (vendor-encoded; passed through untouched).

Nothing in this module logs, and nothing repr's a resident ID number.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date
from functools import reduce
from operator import xor

PREAMBLE = b"\xaa\xaa\xaa\x96\x69"
HEADER_SIZE = len(PREAMBLE) + 2  # preamble and LEN
MIN_LENGTH = 3  # LEN of the shortest frame: a request CMD PARA CHK
MAX_LENGTH = 0x1000  # above any GA 467 frame (text+photo+fingerprint is 0x090A)

TEXT_SIZE = 256
PHOTO_SIZE = 1024
LONG_TERM = "长期"  # "valid to" of a card that does not expire


class Ga467Error(ValueError):
    """A frame is well formed but its content cannot be understood."""


# ---------------------------------------------------------------- commands --

class Command(enum.Enum):
    """Request (CMD, PARA) pairs the driver sends."""

    RESET_SAM = (0x10, 0xFF)
    SAM_STATUS = (0x11, 0xFF)
    SAM_ID = (0x12, 0xFF)
    FIND_CARD = (0x20, 0x01)
    SELECT_CARD = (0x20, 0x02)
    READ_TEXT_PHOTO = (0x30, 0x01)

    @classmethod
    def lookup(cls, cmd: int, para: int) -> Command | None:
        for command in cls:
            if command.value == (cmd, para):
                return command
        return None


class Status(enum.IntEnum):
    """SW3, the byte of a response's status word that says what happened."""

    SUCCESS = 0x90
    CARD_FOUND = 0x9F  # only in answer to FIND_CARD
    FIELD_EMPTY = 0x91
    CHECKSUM_ERROR = 0x10
    LENGTH_ERROR = 0x11
    BAD_COMMAND = 0x21
    UNAUTHORISED = 0x23
    UNKNOWN_ERROR = 0x24
    CARD_AUTH_FAILED = 0x31
    SAM_AUTH_FAILED = 0x32
    VALIDATION_FAILED = 0x33
    WRONG_CARD = 0x40
    READ_FAILED = 0x41
    RANDOM_NUMBER_FAILED = 0x47
    SELF_TEST_FAILED = 0x60
    SAM_UNAUTHORISED = 0x66
    FIND_FAILED = 0x80  # no card in the field
    SELECT_FAILED = 0x81


STATUS_TEXT: dict[int, str] = {
    Status.SUCCESS: "success",
    Status.CARD_FOUND: "card found",
    Status.FIELD_EMPTY: "field empty (no such data on the card)",
    Status.CHECKSUM_ERROR: "request checksum error",
    Status.LENGTH_ERROR: "request length error",
    Status.BAD_COMMAND: "bad command",
    Status.UNAUTHORISED: "command not authorised",
    Status.UNKNOWN_ERROR: "unknown error",
    Status.CARD_AUTH_FAILED: "card failed to authenticate the SAM",
    Status.SAM_AUTH_FAILED: "SAM failed to authenticate the card",
    Status.VALIDATION_FAILED: "information validation failed",
    Status.WRONG_CARD: "wrong card type",
    Status.READ_FAILED: "read failed",
    Status.RANDOM_NUMBER_FAILED: "random number failed",
    Status.SELF_TEST_FAILED: "SAM self-test failed",
    Status.SAM_UNAUTHORISED: "SAM not authorised",
    Status.FIND_FAILED: "find card failed (no card)",
    Status.SELECT_FAILED: "select card failed",
}


def status_text(sw3: int) -> str:
    """What a status byte means, for a log line; unknown codes are shown in hex."""
    return STATUS_TEXT.get(sw3, f"unknown status 0x{sw3:02X}")


# ------------------------------------------------------------------ frames --

def checksum(data: bytes) -> int:
    """XOR of ``data``: pass the bytes from LEN up to (excluding) CHK."""
    return reduce(xor, data, 0)


def build_frame(body: bytes) -> bytes:
    """Wrap a request or response body in preamble, LEN and CHK."""
    length = len(body) + 1
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"GA 467 frame body of {len(body)} bytes is out of range")
    head = length.to_bytes(2, "big") + body
    return PREAMBLE + head + bytes([checksum(head)])


def build_request(command: Command | tuple[int, int], data: bytes = b"") -> bytes:
    """A request frame, e.g. ``build_request(Command.FIND_CARD)``."""
    cmd, para = command.value if isinstance(command, Command) else command
    return build_frame(bytes([cmd, para]) + data)


FIND_CARD = build_request(Command.FIND_CARD)
SELECT_CARD = build_request(Command.SELECT_CARD)
READ_TEXT_PHOTO = build_request(Command.READ_TEXT_PHOTO)
SAM_STATUS = build_request(Command.SAM_STATUS)


def build_response(status: int, data: bytes = b"", *, sw1: int = 0x00, sw2: int = 0x00) -> bytes:
    """A response frame with status word ``sw1 sw2 status`` and ``data``."""
    return build_frame(bytes([sw1, sw2, status]) + data)


def build_find_response(found: bool) -> bytes:
    """Card found: ``9F`` and four zero bytes (as real readers send); none: ``80``."""
    return build_response(Status.CARD_FOUND, bytes(4)) if found else build_response(Status.FIND_FAILED)


def build_select_response(ok: bool) -> bytes:
    """Selected: ``90`` and eight zero bytes (as real readers send); failed: ``81``."""
    return build_response(Status.SUCCESS, bytes(8)) if ok else build_response(Status.SELECT_FAILED)


def build_read_response(text: bytes, photo: bytes = bytes(PHOTO_SIZE)) -> bytes:
    """A successful read: text and photo lengths, the text block, the photo."""
    data = len(text).to_bytes(2, "big") + len(photo).to_bytes(2, "big") + text + photo
    return build_response(Status.SUCCESS, data)


@dataclass(frozen=True)
class Frame:
    """One complete frame with a correct length and checksum, as received."""

    raw: bytes = field(repr=False)

    @property
    def body(self) -> bytes:
        """The bytes between LEN and CHK."""
        return self.raw[HEADER_SIZE:-1]

    def __repr__(self) -> str:  # a read response holds an ID number: show the header only
        return f"Frame({len(self.raw)} bytes, head={self.raw[HEADER_SIZE:HEADER_SIZE + 3].hex(' ')})"


@dataclass(frozen=True)
class BadFrame:
    """Something that began like a frame but cannot be one: log it and move on.

    ``reason`` is ``"bad length"``, ``"bad checksum"`` or ``"truncated"``;
    ``size`` how many bytes it spanned; ``head`` its first bytes (preamble,
    LEN and at most the status word: never card data).
    """

    reason: str
    size: int
    head: bytes

    def __str__(self) -> str:
        return f"{self.reason} ({self.size} bytes, starting {self.head.hex(' ')})"


@dataclass(frozen=True)
class Request:
    """A parsed request: ``cmd``, ``para`` and data; ``command`` if it is a known one."""

    cmd: int
    para: int
    data: bytes = b""

    @property
    def command(self) -> Command | None:
        return Command.lookup(self.cmd, self.para)

    @classmethod
    def from_frame(cls, frame: Frame) -> Request:
        body = frame.body
        if len(body) < 2:
            raise Ga467Error(f"request of {len(body)} body bytes has no CMD PARA")
        return cls(body[0], body[1], body[2:])


@dataclass(frozen=True)
class Response:
    """A parsed response: status word ``sw1 sw2 status`` and data."""

    sw1: int
    sw2: int
    status: int
    data: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        return self.status in (Status.SUCCESS, Status.CARD_FOUND)

    @property
    def status_text(self) -> str:
        return status_text(self.status)

    @classmethod
    def from_frame(cls, frame: Frame) -> Response:
        body = frame.body
        if len(body) < 3:
            raise Ga467Error(f"response of {len(body)} body bytes has no status word")
        return cls(body[0], body[1], body[2], body[3:])


class FrameParser:
    """Cuts a byte stream into frames, incrementally.

    ``feed(data)`` returns the :class:`Frame` and :class:`BadFrame` items
    completed by ``data``, in order. Bytes before a preamble are dropped (and
    counted in ``discarded``). A frame with an impossible length or a wrong
    checksum is reported as a :class:`BadFrame` and the search for the next
    preamble resumes one byte after the bad one's start, so a good frame that
    a truncated one swallowed is still found. Never raises on any input.

    When the line goes quiet with half a frame pending (a truncated frame
    whose LEN promises more than ever came), call :meth:`flush`.
    """

    def __init__(self, *, max_length: int = MAX_LENGTH):
        self.max_length = max_length
        self.discarded = 0
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | BadFrame]:
        self._buf += data
        return self._drain()

    def flush(self) -> list[Frame | BadFrame]:
        """The line went quiet: report a pending partial frame as truncated.

        Frames hidden inside it are still recovered. Afterwards the parser is empty.
        """
        out: list[Frame | BadFrame] = []
        while self._buf:
            if self._buf.startswith(PREAMBLE):
                out.append(BadFrame("truncated", len(self._buf), bytes(self._buf[:10])))
                del self._buf[:1]
                self.discarded += 1
                out += self._drain()
            else:  # only a prefix of a preamble is left
                self.discarded += len(self._buf)
                self._buf.clear()
        return out

    def reset(self) -> None:
        """Forget everything buffered (e.g. before sending a new request)."""
        self.discarded += len(self._buf)
        self._buf.clear()

    def _drain(self) -> list[Frame | BadFrame]:
        out: list[Frame | BadFrame] = []
        buf = self._buf
        while True:
            start = buf.find(PREAMBLE)
            if start < 0:
                keep = _preamble_prefix_at_end(buf)
                self.discarded += len(buf) - keep
                del buf[: len(buf) - keep]
                return out
            if start:
                self.discarded += start
                del buf[:start]
            if len(buf) < HEADER_SIZE:
                return out
            length = int.from_bytes(buf[5:7], "big")
            if not MIN_LENGTH <= length <= self.max_length:
                out.append(BadFrame("bad length", HEADER_SIZE, bytes(buf[:HEADER_SIZE])))
                del buf[:1]
                self.discarded += 1
                continue
            total = HEADER_SIZE + length
            if len(buf) < total:
                return out
            raw = bytes(buf[:total])
            if checksum(raw[5:-1]) != raw[-1]:
                out.append(BadFrame("bad checksum", total, raw[:10]))
                del buf[:1]
                self.discarded += 1
                continue
            out.append(Frame(raw))
            del buf[:total]


def _preamble_prefix_at_end(buf: bytearray) -> int:
    """Length of the longest tail of ``buf`` that could be the start of a preamble."""
    for n in range(min(len(buf), len(PREAMBLE) - 1), 0, -1):
        if buf.endswith(PREAMBLE[:n]):
            return n
    return 0


# -------------------------------------------------------------- text block --

NATIONS: dict[str, str] = {
    f"{i:02d}": name
    for i, name in enumerate(
        "汉 蒙古 回 藏 维吾尔 苗 彝 壮 布依 朝鲜 满 侗 瑶 白 土家 哈尼 哈萨克 傣 黎 "
        "傈僳 佤 畲 高山 拉祜 水 东乡 纳西 景颇 柯尔克孜 土 达斡尔 仫佬 羌 布朗 "
        "撒拉 毛南 仡佬 锡伯 阿昌 普米 塔吉克 怒 乌孜别克 俄罗斯 鄂温克 德昂 "
        "保安 裕固 京 塔塔尔 独龙 鄂伦春 赫哲 门巴 珞巴 基诺".split(),
        start=1,
    )
} | {"97": "其他", "98": "外国血统中国籍人士"}
"""GB 3304 nationality codes as printed on the card."""

_NATION_CODES = {name: code for code, name in NATIONS.items()}

# (first character, length) of each field in the 128-character text block
_FIELDS = {
    "name": (0, 15),
    "sex": (15, 1),
    "nation": (16, 2),
    "birth_date": (18, 8),
    "address": (26, 35),
    "id_number": (61, 18),
    "issuer": (79, 15),
    "valid_from": (94, 8),
    "valid_to": (102, 8),
    "reserved": (110, 18),
}
_SEX = {"1": "male", "2": "female"}
_SEX_CODES = {"male": "1", "female": "2", "": "0"}


@dataclass(frozen=True)
class CardText:
    """The printed fields of a resident ID card, decoded from its text block.

    ``sex`` is ``"male"``, ``"female"`` or ``""`` (not stated); ``nation`` the
    name (e.g. ``"汉"``), or the raw code when it is not in GB 3304;
    ``valid_to`` is None for a long-term (长期) card.
    """

    name: str
    sex: str
    nation: str
    birth_date: date
    address: str
    id_number: str
    issuer: str
    valid_from: date
    valid_to: date | None

    def __repr__(self) -> str:
        return "CardText(id_number=<redacted>)"


def decode_text(block: bytes) -> CardText:
    """Decode the 256-byte UTF-16LE text block; raises :class:`Ga467Error`.

    Error messages name the field, never its content.
    """
    if len(block) != TEXT_SIZE:
        raise Ga467Error(f"text block is {len(block)} bytes, not {TEXT_SIZE}")
    try:
        text = block.decode("utf-16-le")
    except UnicodeDecodeError:
        raise Ga467Error("text block is not valid UTF-16LE") from None
    if len(text) != TEXT_SIZE // 2:
        raise Ga467Error("text block holds characters outside the basic plane")

    def get(name: str) -> str:
        start, size = _FIELDS[name]
        return text[start:start + size].strip(" \x00")

    def day(name: str) -> date:
        value = get(name)
        if len(value) != 8 or not value.isascii() or not value.isdigit():
            raise Ga467Error(f"{name} is not a YYYYMMDD date")
        try:
            return date(int(value[:4]), int(value[4:6]), int(value[6:]))
        except ValueError:
            raise Ga467Error(f"{name} is not a calendar date") from None

    id_number = get("id_number")
    if len(id_number) != 18:
        raise Ga467Error(f"ID number field holds {len(id_number)} characters, not 18")
    nation = get("nation")
    return CardText(
        name=get("name"),
        sex=_SEX.get(get("sex"), ""),
        nation=NATIONS.get(nation, nation),
        birth_date=day("birth_date"),
        address=get("address"),
        id_number=id_number,
        issuer=get("issuer"),
        valid_from=day("valid_from"),
        valid_to=None if get("valid_to") == LONG_TERM else day("valid_to"),
    )


def encode_text(card: CardText) -> bytes:
    """The 256-byte text block a card with these fields carries (for the emulator)."""
    nation = _NATION_CODES.get(card.nation, card.nation)
    values = {
        "name": card.name,
        "sex": _SEX_CODES.get(card.sex, card.sex),
        "nation": nation,
        "birth_date": card.birth_date.strftime("%Y%m%d"),
        "address": card.address,
        "id_number": card.id_number,
        "issuer": card.issuer,
        "valid_from": card.valid_from.strftime("%Y%m%d"),
        "valid_to": LONG_TERM if card.valid_to is None else card.valid_to.strftime("%Y%m%d"),
        "reserved": "",
    }
    text = ""
    for name, (_start, size) in _FIELDS.items():
        value = values[name]
        if len(value) > size:
            raise ValueError(f"card field {name} is longer than {size} characters")
        text += value.ljust(size)
    return text.encode("utf-16-le")


def parse_read_data(data: bytes) -> tuple[bytes, bytes]:
    """Split a successful read response's data into (text block, photo)."""
    if len(data) < 4:
        raise Ga467Error(f"read response data of {len(data)} bytes has no length fields")
    text_len = int.from_bytes(data[0:2], "big")
    photo_len = int.from_bytes(data[2:4], "big")
    if text_len != TEXT_SIZE:
        raise Ga467Error(f"read response announces {text_len} text bytes, not {TEXT_SIZE}")
    if len(data) < 4 + text_len + photo_len:
        raise Ga467Error(f"read response data of {len(data)} bytes is shorter than announced "
                         f"({4 + text_len + photo_len})")
    return data[4:4 + text_len], data[4 + text_len:4 + text_len + photo_len]
