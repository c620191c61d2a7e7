"""A card reader with a keypad on the door's OSDP bus (RS-485), over the secure channel."""

from __future__ import annotations

import logging
import threading
import time

import osdp
import osdp_sys  # libosdp's C binding: the panel is driven on this driver's own thread
import serial

from firmware_py.core.inputs import SIDES, BadgeRead, DeviceFault, DeviceRecovered, KeypadKeys, Post, TamperChanged
from firmware_py.core.ports import PATTERNS

log = logging.getLogger(__name__)

SCBK_D = bytes(range(0x30, 0x40))
"""The install key every OSDP reader knows (SCBK-D, published in the standard): never a door's key."""

REFRESH_S = 0.02  # how often libosdp's state machine runs (it polls the reader every 50 ms)
ROUND_TRIP_S = 0.2  # libosdp's reply timeout: a reader that answers at all answers within this

# OSDP keypad data is ASCII; the standard sends '*' as DEL and '#' as CR, some readers the characters.
_KEYS = {0x7F: "*", 0x0D: "#", ord("*"): "*", ord("#"): "#"} | {ord(d): d for d in "0123456789"}

# LED colours and buzzer tones of the door's patterns (the same table as drivers.indicators).
_BLACK, _RED, _GREEN = osdp.CommandLEDColor.Black, osdp.CommandLEDColor.Red, osdp.CommandLEDColor.Green
# pattern: (on colour, off colour, on, off (100 ms units)), (tone on, off (100 ms), repeats; 0 = until changed)
_PATTERNS = {
    "idle": ((_BLACK, _BLACK, 1, 0), None),
    "granted": ((_GREEN, _GREEN, 1, 0), None),
    "denied": ((_RED, _RED, 1, 0), (1, 1, 3)),
    "alarm": ((_RED, _RED, 1, 0), (1, 0, 0)),
    "screening_wait": ((_GREEN, _BLACK, 2, 3), None),
}
assert set(_PATTERNS) == set(PATTERNS)


def parse_scbk(value: bytes | str) -> bytes:
    """A reader's secure channel base key from 16 bytes or 32 hex digits; ValueError naming what is wrong."""
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value.strip())
        except ValueError:
            raise ValueError("scbk must be 32 hexadecimal digits (16 bytes)") from None
    if not isinstance(value, bytes | bytearray) or len(value) != 16:
        raise ValueError("scbk must be 16 bytes (32 hexadecimal digits)")
    if bytes(value) == SCBK_D:
        raise ValueError("scbk is the public install key SCBK-D: give each reader a key of its own")
    if len(set(value)) == 1:
        raise ValueError("scbk is one byte repeated: generate a random key")
    return bytes(value)


class _SerialChannel(osdp.Channel):
    """The RS-485 line as libosdp sees it: never raises; a lost port reads as silence."""

    def __init__(self, port: str, baudrate: int, name: str):
        super().__init__()
        self.port, self.baudrate, self.name = port, baudrate, name
        self.serial: serial.SerialBase | None = None
        self.error = ""  # why the port is not open, for the fault report
        self.last_rx = 0.0  # time.monotonic() of the last byte from the reader

    def open(self) -> bool:
        if self.serial is None:
            try:
                self.serial = serial.serial_for_url(self.port, baudrate=self.baudrate, bytesize=8, parity="N",
                                                    stopbits=1, timeout=0, write_timeout=1.0, exclusive=True)
                self.error = ""
            except (serial.SerialException, OSError, ValueError) as exc:
                self.error = f"cannot open {self.port}: {exc}"
        return self.serial is not None

    def close(self) -> None:
        port, self.serial = self.serial, None
        if port is not None:
            try:
                port.close()
            except Exception:
                pass

    def read(self, max_bytes: int) -> bytes:
        if self.serial is None:
            return b""
        try:
            data = self.serial.read(max_bytes)
        except (serial.SerialException, OSError) as exc:
            self._lost(exc)
            return b""
        if data:
            self.last_rx = time.monotonic()
        return data

    def write(self, buf: bytes) -> int:
        if self.serial is None:
            return len(buf)  # lost on the line, as on a cut cable
        try:
            return self.serial.write(buf) or 0
        except (serial.SerialException, OSError) as exc:
            self._lost(exc)
            return len(buf)

    def flush(self) -> None:
        pass

    def _lost(self, exc: Exception) -> None:
        self.error = f"serial port {self.port} failed: {exc}"
        log.warning("%s: %s", self.name, self.error)
        self.close()


class KeypadReader:
    """A card reader with a PIN keypad, wired to the door's RS-485 bus and spoken to in OSDP.

    The door is the OSDP *control panel*; the reader answers at its ``address``
    and talks only over the secure channel (AES-128), with a base key (SCBK)
    of its own, shared with this door alone. A reader that does not know the
    key (a replaced reader, a reader not yet provisioned) is refused: the
    driver posts no card or key from it, and reports it as a
    :class:`~firmware_py.core.inputs.DeviceFault` that says so. Nothing the
    reader sends is used before the secure channel is up.

    It posts, on its own thread:

    - a card held to the reader: one :class:`~firmware_py.core.inputs.BadgeRead`
      with the card number in upper-case hex (the bits the reader sends, padded
      with zeros to whole bytes); configure the reader to send the card's UID
      (CSN) as raw bits, the same value the PC/SC badge reader reads;
    - keys pressed: one :class:`~firmware_py.core.inputs.KeypadKeys` per keypad report (``0``-``9``,
      ``*``, ``#``; the standard's DEL and CR for ``*`` and ``#`` are
      translated); the keys are never logged;
    - the reader's tamper switch: :class:`~firmware_py.core.inputs.TamperChanged`
      on every change the reader reports (a tamper already open when the
      session starts is reported as active; a first report of "closed" is not
      an event);
    - a reader that stops answering for ``offline_after_s``, or refuses the
      secure channel: one :class:`~firmware_py.core.inputs.DeviceFault` per
      outage, then :class:`~firmware_py.core.inputs.DeviceRecovered` once it
      answers over the secure channel again. The driver keeps trying, every
      ``retry_s`` doubling up to ``max_backoff``.

    :meth:`show` lights the reader's LED and sounds its buzzer for the person at
    the door, with the same patterns as the door's own indicators; the pattern
    in force is shown again when the reader comes back.

    Wiring (for the installer): the reader's RS-485 pair to a USB RS-485 adapter
    with automatic direction control (A to A / D+, B to B / D-, and the signal
    ground), twisted pair, a 120 Ω terminator at each end of the bus; power the
    reader from its own 12 V supply with the grounds joined. Use the adapter's
    stable name ``/dev/serial/by-id/usb-...``. Set the reader's address and
    speed (OSDP's default is 9600 baud) and provision its key as
    docs/commissioning.md describes ("OSDP keypad readers").

    :param port: the serial device (or a pyserial URL).
    :param side: ``"outside"`` (entry) or ``"inside"`` (exit).
    :param post: where events go, normally the controller queue's ``put``.
    :param scbk: the reader's secure channel base key: 16 bytes or 32 hex digits.
    :param address: the reader's OSDP address, 0-126.
    :param baudrate: the bus speed the reader is set to.
    :param install_mode: provisioning only: a reader still on its install key
        (SCBK-D) is given ``scbk``; turn it off again at once (see the docs).
    :param offline_after_s: a reader silent this long is out of order.
    :param retry_s: the first pause before trying an absent or refusing reader again.
    :param max_backoff: the longest pause between tries.
    :param name: the device name in events and logs (default ``keypad_reader.<side>``).
    """

    def __init__(self, port: str, *, side: str, post: Post, scbk: bytes | str, address: int = 0,
                 baudrate: int = 9600, install_mode: bool = False, offline_after_s: float = 1.0,
                 retry_s: float = 0.5, max_backoff: float = 10.0, name: str | None = None):
        if side not in SIDES:
            raise ValueError(f"KeypadReader side must be one of {', '.join(SIDES)}, not {side!r}")
        if not isinstance(address, int) or not 0 <= address <= 126:
            raise ValueError(f"KeypadReader address must be 0-126 (127 is broadcast), not {address!r}")
        if offline_after_s < 2 * ROUND_TRIP_S:
            raise ValueError(f"KeypadReader offline_after_s must be at least {2 * ROUND_TRIP_S:g} s")
        if retry_s <= 0 or max_backoff < retry_s:
            raise ValueError("KeypadReader needs 0 < retry_s <= max_backoff")
        self.port = port
        self.side = side
        self.address = address
        self.install_mode = install_mode
        self.offline_after_s = offline_after_s
        self.retry_s = retry_s
        self.max_backoff = max_backoff
        self.name = name or f"keypad_reader.{side}"
        self._post = post
        self._channel = _SerialChannel(port, baudrate, self.name)
        flags = [osdp.LibFlag.EnableNotification]
        if not install_mode:
            flags.append(osdp.LibFlag.EnforceSecure)
        info = osdp.PDInfo(address, self._channel, scbk=parse_scbk(scbk), name=self.name[:15], flags=flags)
        osdp_sys.set_loglevel(osdp.LogLevel.Critical)  # the driver says what matters, in our log
        self._cp = osdp_sys.ControlPanel([info.get()])
        self._cp.set_event_callback(self._on_osdp_event)
        self._lock = threading.RLock()  # libosdp's context is not thread-safe; its callbacks run inside
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._online = False  # libosdp has the reader online over the secure channel
        self._faulty = False
        self._attempt_at = 0.0  # when the current attempt to reach the reader started
        self._was_online = False  # the reader was online in the current attempt
        self._gave_up = False  # libosdp took the reader offline in the current attempt
        self._next_try_at = 0.0  # when to try again after an outage (0: not waiting)
        self._backoff = retry_s
        self._tamper: bool | None = None  # None: not known yet
        self._pattern = "idle"
        self._pattern_sent = False
        self._fault_detail = ""
        self.key_given = False  # install mode: the reader took this door's key in this run

    def __repr__(self) -> str:
        state = "faulty" if self._faulty else ("online" if self._online else "connecting")
        return f"<KeypadReader {self.name} {self.port!r} address {self.address}: {state}>"

    # ------------------------------------------------------------ public --
    def start(self) -> KeypadReader:
        """Open the port and talk to the reader on a thread of its own."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop talking to the reader and release the port; returns within about 0.1 s."""
        self._closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._channel.close()

    def __enter__(self) -> KeypadReader:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def online(self) -> bool:
        """True while the reader answers over the secure channel."""
        return self._online

    @property
    def faulty(self) -> bool:
        """True while the reader is in an outage (a DeviceFault was posted)."""
        return self._faulty

    @property
    def secure_channel_active(self) -> bool:
        """What libosdp reports: the secure channel with this reader is up."""
        with self._lock:
            return bool(self._cp.sc_status() & 1)

    def wait_online(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._online and time.monotonic() < deadline:
            time.sleep(0.02)
        return self._online

    def show(self, pattern: str) -> None:
        """Show a door pattern (``idle``, ``granted``, ``denied``, ``alarm``, ``screening_wait``) on the reader."""
        if pattern not in _PATTERNS:
            raise ValueError(f"unknown pattern {pattern!r}; one of {', '.join(PATTERNS)}")
        self._pattern, self._pattern_sent = pattern, False
        if self._online:
            self._send_pattern()

    # -------------------------------------------------------------- loop --
    def _run(self) -> None:
        self._begin_attempt()
        while not self._stop.wait(REFRESH_S):
            try:
                with self._lock:
                    self._cp.refresh()  # sends, receives, and calls _on_osdp_event
                self._supervise(time.monotonic())
            except Exception:  # a driver thread must not die on a surprise
                log.exception("%s: unexpected error; retrying", self.name)
                self._fault("unexpected error in the driver (see the log)")
                self._stop.wait(self.max_backoff)
        self._channel.close()

    def _begin_attempt(self) -> None:
        self._attempt_at = time.monotonic()
        self._next_try_at = 0.0
        self._was_online = self._gave_up = False
        self._channel.open()

    def _supervise(self, now: float) -> None:
        if self._next_try_at:
            if now >= self._next_try_at:
                self._restart()
            return
        if self._channel.serial is None:
            self._outage(self._channel.error or f"serial port {self.port} closed")
            return
        silent_for = now - max(self._channel.last_rx, self._attempt_at)
        if self._online:
            if silent_for > self.offline_after_s:
                self._outage(self._silent_detail(silent_for))
                return
            if not self._pattern_sent:
                self._send_pattern()
        elif self._was_online:
            self._outage(f"reader at address {self.address} lost the secure channel or stopped answering")
        elif self._gave_up or now - self._attempt_at > self.offline_after_s + 4 * ROUND_TRIP_S:
            answered = self._channel.last_rx >= self._attempt_at
            self._outage(self._refused_detail() if answered else self._silent_detail(silent_for))

    def _silent_detail(self, silent_for: float) -> str:
        return (f"reader at address {self.address} does not answer on {self.port} (silent for "
                f"{silent_for:.1f} s): check its power, the A/B wires, its address and baud rate")

    def _refused_detail(self) -> str:
        if self.install_mode:
            return (f"reader at address {self.address} answers but accepts neither this door's key "
                    "nor the install key: reset it to its install mode (see the reader's manual)")
        return (f"reader at address {self.address} answers but refuses the secure channel: it does "
                "not hold this door's key (SCBK); a replaced or unprovisioned reader?")

    def _outage(self, detail: str) -> None:
        """The reader is not usable: report it once, and try again after the back-off."""
        self._set_online(False)
        self._fault(detail)
        self._next_try_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.max_backoff)
        with self._lock:
            self._cp.disable_pd(0)  # quiet on the bus until the next try

    def _restart(self) -> None:
        self._channel.close()  # a re-plugged adapter is found again
        self._begin_attempt()
        with self._lock:
            self._cp.enable_pd(0)  # libosdp starts over: identify, capabilities, secure channel

    def _set_online(self, online: bool) -> None:
        if online == self._online:
            return
        self._online = online
        if online:
            self._was_online = True
            self._backoff = self.retry_s
            if self._faulty:
                self._faulty = False
                log.warning("%s: reader answers again over the secure channel", self.name)
                self._emit(DeviceRecovered(device=self.name))
            else:
                log.info("%s: reader online over the secure channel", self.name)
            self._pattern_sent = False  # libosdp takes commands once its state is online: the loop sends them

    def _fault(self, detail: str) -> None:
        if self._stop.is_set():
            return
        if self._faulty:
            level = logging.DEBUG if detail == self._fault_detail else logging.WARNING
            log.log(level, "%s: still out of order: %s", self.name, detail)
            self._fault_detail = detail
            return
        self._faulty, self._fault_detail = True, detail
        log.error("%s: reader out of order: %s", self.name, detail)
        self._emit(DeviceFault(device=self.name, detail=detail))

    # ------------------------------------------------------------ events --
    def _on_osdp_event(self, _pd: int, event: dict) -> int:
        """Called by libosdp inside refresh(), on this driver's thread."""
        try:
            self._handle(event)
        except Exception:
            log.exception("%s: a malformed event from the reader was dropped", self.name)
        return 0

    def _handle(self, event: dict) -> None:
        kind = event.get("event")
        if kind == osdp.Event.Notification:
            self._on_notification(event)
            return
        with_sc = self._online
        if not with_sc:  # install mode may fall back to plain text: nothing unprotected is believed
            log.warning("%s: event from the reader outside the secure channel ignored", self.name)
        elif kind == osdp.Event.CardRead:
            self._on_card(event)
        elif kind == osdp.Event.KeyPress:
            self._on_keys(event)
        elif kind == osdp.Event.Status:
            self._on_status(event)
        else:
            log.info("%s: reader event of type %s ignored", self.name, kind)

    def _on_notification(self, event: dict) -> None:
        kind, arg0, arg1 = event.get("type"), event.get("arg0"), event.get("arg1")
        if kind == osdp.EventNotification.PeripheralDeviceStatus:
            sc_up = bool(self._cp.sc_status() & 1)  # inside refresh(): the lock is held already
            if arg0 and sc_up:
                self._set_online(True)
            elif arg0:
                log.warning("%s: reader online without the secure channel; not used", self.name)
            else:
                self._gave_up = True
                self._set_online(False)
        elif kind == osdp.EventNotification.SecureChannelStatus:
            if arg0 and arg1:
                log.warning("%s: secure channel with the install key: giving the reader its key", self.name)
            elif not arg0:
                self._set_online(False)
        elif kind == osdp.EventNotification.Command:
            if arg0 == osdp.Command.Keyset and arg1:
                self.key_given = True
                log.warning("%s: the reader now holds this door's key: turn install_mode off", self.name)
            elif not arg1:
                log.warning("%s: the reader did not accept command %s", self.name, arg0)

    def _on_card(self, event: dict) -> None:
        data, bits = event.get("data"), event.get("length")
        if event.get("format") == osdp.CardFormat.ASCII or not isinstance(data, bytes) or not data:
            log.warning("%s: card read in a format the door does not take (set the reader to raw bits)",
                        self.name)
            return
        if isinstance(bits, int) and 0 < bits <= 8 * len(data):
            data = data[: (bits + 7) // 8]
            if bits % 8:  # the pad bits after the last one are not the card's
                data = data[:-1] + bytes([data[-1] & (0xFF << (8 - bits % 8)) & 0xFF])
        log.info("%s: card read (%d bits)", self.name, bits if isinstance(bits, int) else 8 * len(data))
        self._emit(BadgeRead(side=self.side, uid=data.hex().upper()))

    def _on_keys(self, event: dict) -> None:
        data = event.get("data")
        keys = "".join(_KEYS.get(b, "") for b in data) if isinstance(data, bytes) else ""
        if isinstance(data, bytes) and len(keys) != len(data):
            log.warning("%s: %d unknown keypad code(s) dropped", self.name, len(data) - len(keys))
        if keys:
            self._emit(KeypadKeys(side=self.side, keys=keys))

    def _on_status(self, event: dict) -> None:
        report = event.get("report")
        if event.get("type") != osdp.StatusReportType.Local or not isinstance(report, bytes) or not report:
            return
        tamper = bool(report[0] & 1)
        if len(report) > 1 and report[1] & 1:
            log.warning("%s: the reader reports a power failure", self.name)
        if tamper != self._tamper and (tamper or self._tamper is not None):
            log.warning("%s: tamper switch %s", self.name, "OPEN" if tamper else "closed again")
            self._emit(TamperChanged(device=self.name, active=tamper))
        self._tamper = tamper

    # ---------------------------------------------------------- commands --
    def _send_pattern(self) -> None:
        (on_color, off_color, on, off), tone = _PATTERNS[self._pattern]
        led = {"command": osdp.Command.LED, "reader": 0, "led_number": 0, "control_code": 1, "temporary": False,
               "on_color": on_color, "off_color": off_color, "on_count": on, "off_count": off}
        if tone is None:
            buzzer = {"command": osdp.Command.Buzzer, "reader": 0, "control_code": 1,
                      "on_count": 0, "off_count": 0, "rep_count": 0}
        else:
            buzzer = {"command": osdp.Command.Buzzer, "reader": 0, "control_code": 2,
                      "on_count": tone[0], "off_count": tone[1], "rep_count": tone[2]}
        self._pattern_sent = self._submit(led, "LED") and self._submit(buzzer, "buzzer")

    def _submit(self, command: dict, what: str) -> bool:
        with self._lock:
            ok = bool(self._cp.submit_command(0, command))
        if not ok:
            log.debug("%s: %s command not queued (reader offline?)", self.name, what)
        return ok

    def _emit(self, event: object) -> None:
        try:
            self._post(event)
        except Exception:
            log.exception("%s: posting %r failed", self.name, event)


class ReaderKeyError(RuntimeError):
    """A reader could not be given its key: the message says what it answered."""


def provision(port: str, *, scbk: bytes | str, address: int = 0, baudrate: int = 9600,
              timeout_s: float = 10.0) -> bool:
    """Give the reader at ``address`` on ``port`` its key ``scbk``, over the install key SCBK-D.

    The reader must be in its install mode (fresh from the box, or reset as its
    manual says). Returns True when the reader took the key now, False when it
    already held it; raises :class:`ReaderKeyError` when it holds another key
    or does not answer. Run it with the door's service stopped: the port is
    opened exclusively.
    """
    faults: list[DeviceFault] = []
    refused = threading.Event()

    def post(event: object) -> None:
        if isinstance(event, DeviceFault):
            faults.append(event)
            refused.set()

    reader = KeypadReader(port, side="outside", post=post, scbk=scbk, address=address, baudrate=baudrate,
                          install_mode=True, name=f"keypad_reader.{address}")
    with reader:
        deadline = time.monotonic() + timeout_s
        while not reader.online and not refused.is_set() and time.monotonic() < deadline:
            refused.wait(0.02)
        if reader.online and reader.secure_channel_active:
            return reader.key_given
    detail = faults[0].detail if faults else f"no secure channel within {timeout_s:g} s"
    raise ReaderKeyError(f"the reader at address {address} on {port} did not take the key: {detail}")
