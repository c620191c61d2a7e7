"""The door's OSDP keypad readers built from ``[[hardware.keypad_reader]]``, for the Pi and the simulator alike.

Each reader gets its key from its ``scbk_file`` (32 hex digits, docs/osdp-readers.md, "Keys"),
posts its cards and keys to the controller's queue, and shows the door's patterns on its LED
and buzzer: :class:`IndicatorsWithKeypads` passes each pattern the controller shows on a side
to the keypad reader on that side as well, so the person at the keypad sees what the door's
own lights say (a duress grant included, which shows as any grant).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from firmware_py.config.schema import KeypadReaderConfig
from firmware_py.core.inputs import Post
from firmware_py.core.ports import Indicators
from firmware_py.errors import ConfigError

log = logging.getLogger(__name__)


def read_scbk(path: Path | None, side: str) -> str:
    """The reader's key from its file; :class:`ConfigError` naming the file when it cannot be read."""
    if path is None:
        raise ConfigError(f"[[hardware.keypad_reader]] ({side}): scbk_file is missing: the reader's key file")
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {side} keypad reader's key: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    from drivers.osdp_reader import parse_scbk

    try:
        parse_scbk(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: the {side} keypad reader's key: {exc}") from None
    return text


def build_keypad_readers(readers: Sequence[KeypadReaderConfig], post: Post, *, port_of=None) -> list:
    """Started :class:`~drivers.osdp_reader.KeypadReader` s, one per configured reader; ``port_of`` maps a
    reader's config to the port to open (the simulator's pseudo-terminals), default its ``port``."""
    from drivers.osdp_reader import KeypadReader

    built = []
    try:
        for r in readers:
            reader = KeypadReader(port_of(r) if port_of else r.port, side=r.side, post=post,
                                  scbk=read_scbk(r.scbk_file, r.side), address=r.address, baudrate=r.baudrate)
            built.append(reader.start())
    except BaseException:
        for reader in reversed(built):
            reader.close()
        raise
    return built


class IndicatorsWithKeypads:
    """The door's indicators, with each pattern also shown on the keypad reader of the side it is for."""

    def __init__(self, indicators: Indicators, keypads: Sequence):
        self.indicators = indicators
        self.keypads = list(keypads)

    def show(self, pattern: str, side: str = "both") -> None:
        self.indicators.show(pattern, side)
        for keypad in self.keypads:
            if side in ("both", keypad.side):
                try:
                    keypad.show(pattern)
                except Exception:  # a reader's LED must never stop the door
                    log.exception("could not show %s on %s", pattern, keypad.name)
