"""An OSDP card reader with a keypad at the far end of a pseudo-terminal.

The real :class:`drivers.osdp_reader.KeypadReader` opens ``OsdpReaderDevice().port``
as if it were the RS-485 adapter; behind it, libosdp in *peripheral device*
mode plays the reader: the secure channel with its own key (or the install
key SCBK-D, ready to be provisioned), card reads, keypad entry, the tamper
switch, and the LED and buzzer commands the door sends. It misbehaves on
demand: silence (a cut cable, a dead reader) and a wrong key (a replaced reader).

Card numbers and PINs here are synthetic.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import tty
from dataclasses import dataclass

import osdp

log = logging.getLogger(__name__)

# OSDP keypad data: ASCII digits, '*' as DEL and '#' as CR.
_KEY_CODES = {"*": 0x7F, "#": 0x0D} | {d: ord(d) for d in "0123456789"}

_NOTIFICATION = 11  # OSDP_CMD_NOTIFICATION: what libosdp tells the peripheral (no name in osdp 3.2.9)

CAPABILITIES = [
    (osdp.Capability.CommunicationSecurity, 1, 1),
    (osdp.Capability.CardDataFormat, 1, 1),
    (osdp.Capability.LEDControl, 1, 1),
    (osdp.Capability.AudibleControl, 1, 1),
    (osdp.Capability.ContactStatusMonitoring, 1, 1),
]


@dataclass(frozen=True)
class ReaderCommand:
    """A command the door sent to the reader, as libosdp decoded it (``command`` is an ``osdp.Command``)."""

    at: float  # time.monotonic()
    command: int
    fields: dict

    @property
    def led_color(self) -> int | None:
        return self.fields.get("on_color") if self.command == osdp.Command.LED else None


class _PtyChannel(osdp.Channel):
    """The reader's end of the line: the pty master. Silent mode swallows both ways."""

    def __init__(self, fd: int):
        super().__init__()
        self.fd = fd
        self.silent = False

    def read(self, max_bytes: int) -> bytes:
        try:
            ready, _, _ = select.select([self.fd], [], [], 0)
            data = os.read(self.fd, max_bytes) if ready else b""
        except OSError:
            return b""
        return b"" if self.silent else data

    def write(self, buf: bytes) -> int:
        if self.silent:
            return len(buf)
        try:
            return os.write(self.fd, buf)
        except OSError:
            return len(buf)

    def flush(self) -> None:
        pass


class OsdpReaderDevice:
    """The emulated reader; give ``.port`` to the driver.

    :param scbk: the reader's key; ``None`` is a reader fresh from the box, on the
        install key SCBK-D, that takes the key the door gives it (see
        :attr:`provisioned_key`).
    :param address: its OSDP address.

    Thread-safe: tests call the methods from their own thread.
    """

    def __init__(self, *, scbk: bytes | None, address: int = 0):
        self.address = address
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # the line carries binary frames: no echo, no control characters
        self.port = os.ttyname(self._slave)
        self._channel = _PtyChannel(self._master)
        self._cond = threading.Condition()
        self.commands: list[ReaderCommand] = []
        self.provisioned_key: bytes | None = None
        self._tamper = False
        self._pd: osdp.PeripheralDevice | None = None
        self._start(scbk)

    def __repr__(self) -> str:
        return f"OsdpReaderDevice(port={self.port!r}, address={self.address})"

    def _start(self, scbk: bytes | None) -> None:
        self.scbk = scbk
        info = osdp.PDInfo(self.address, self._channel, scbk=scbk, name="sim-reader",
                           flags=[osdp.LibFlag.EnableNotification],
                           id=osdp.PdId(2, 1, 0x0A0B0C, 0x00001234, 0x010000))
        self._pd = osdp.PeripheralDevice(info, osdp.PDCapabilities(CAPABILITIES), log_level=osdp.LogLevel.Critical,
                                         command_handler=self._on_command)
        self._pd.start()

    # ----------------------------------------------------------- the door --
    def _on_command(self, command: dict) -> tuple[int, dict | None]:
        kind = command.get("command")
        if kind == osdp.Command.Keyset:
            self.provisioned_key = bytes(command.get("data", b""))
            self.scbk = self.provisioned_key  # a real reader stores it in its flash
        with self._cond:
            self.commands.append(ReaderCommand(time.monotonic(), kind, dict(command)))
            self._cond.notify_all()
        if command.get("type") == osdp.EventNotification.SecureChannelStatus and command.get("arg0") \
                and self._tamper and kind == _NOTIFICATION:
            # a session starts: the reader says its enclosure is open (after this callback: libosdp is busy)
            threading.Thread(target=self._report_tamper, name="osdp-device-tamper", daemon=True).start()
        return 0, None

    def wait_for_command(self, predicate, timeout: float) -> ReaderCommand | None:
        """The first command so far that satisfies ``predicate(ReaderCommand)``, waiting up to ``timeout``."""
        found: list[ReaderCommand] = []

        def match() -> bool:
            found[:] = [c for c in self.commands if predicate(c)][:1]
            return bool(found)

        with self._cond:
            self._cond.wait_for(match, timeout)
        return found[0] if found else None

    @property
    def secure_channel_active(self) -> bool:
        """What libosdp's peripheral reports: the secure channel with the door is up."""
        return bool(self._pd.is_sc_active())

    # ----------------------------------------------------- the person --
    def present_card(self, card: bytes | str, *, bits: int | None = None) -> None:
        """Hold a card to the reader: its number (bytes or hex) as raw bits (all of them by default)."""
        data = bytes.fromhex(card) if isinstance(card, str) else bytes(card)
        self._submit({"event": osdp.Event.CardRead, "reader_no": 0, "direction": 0,
                      "format": osdp.CardFormat.Unspecified, "length": bits or 8 * len(data), "data": data})

    def press_keys(self, keys: str) -> None:
        """Press ``keys`` (digits, ``*``, ``#``) on the keypad; sent as the standard encodes them."""
        try:
            data = bytes(_KEY_CODES[k] for k in keys)
        except KeyError as exc:
            raise ValueError(f"a keypad has no key {exc.args[0]!r}") from None
        self._submit({"event": osdp.Event.KeyPress, "reader_no": 0, "data": data})

    def set_tamper(self, active: bool) -> None:
        """Open (True) or close the reader's enclosure."""
        self._tamper = active
        self._report_tamper()

    def _report_tamper(self) -> None:
        self._submit({"event": osdp.Event.Status, "type": osdp.StatusReportType.Local,
                      "report": bytes([int(self._tamper), 0])})

    def _submit(self, event: dict) -> None:
        pd = self._pd
        if pd is None or not pd.submit_event(event):
            raise RuntimeError(f"{self!r}: libosdp refused the event")

    # --------------------------------------------------------- failures --
    def go_silent(self) -> None:
        """Stop answering (everything the door sends is swallowed) until :meth:`resume`."""
        self._channel.silent = True

    def resume(self) -> None:
        self._channel.silent = False

    def replace(self, *, scbk: bytes | None) -> None:
        """Put another reader on the same wire: same address, this key (a wrong one, or None for a new one)."""
        self._pd.teardown()
        self._start(scbk)

    def close(self) -> None:
        if self._pd is not None:
            self._pd.teardown()
            self._pd = None
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> OsdpReaderDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
