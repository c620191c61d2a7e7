"""The keypad readers' part of the composition root (firmware_py/service/keypads.py), without a serial port."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from firmware_py.errors import ConfigError
from firmware_py.service.keypads import IndicatorsWithKeypads, read_scbk
from tests.fixtures.memory_ports import MemoryIndicators

KEY = "8f3c1a2b4d5e6f708192a3b4c5d6e7f8"


@dataclass
class _Keypad:
    side: str
    name: str = "keypad"
    shown: list[str] = field(default_factory=list)

    def show(self, pattern: str) -> None:
        self.shown.append(pattern)


def test_each_pattern_is_shown_on_the_keypad_of_its_side_too():
    outside, inside = _Keypad("outside"), _Keypad("inside")
    door = MemoryIndicators()
    indicators = IndicatorsWithKeypads(door, [outside, inside])
    indicators.show("screening_wait", "outside")
    indicators.show("granted", "inside")
    indicators.show("idle")
    assert door.shown == [("screening_wait", "outside"), ("granted", "inside"), ("idle", "both")]
    assert (outside.shown, inside.shown) == (["screening_wait", "idle"], ["granted", "idle"])


def test_a_keypad_that_fails_to_show_does_not_stop_the_door(caplog):
    broken = _Keypad("outside")
    broken.show = lambda pattern: (_ for _ in ()).throw(OSError("port gone"))
    door = MemoryIndicators()
    IndicatorsWithKeypads(door, [broken]).show("denied", "outside")
    assert door.shown == [("denied", "outside")] and "could not show denied" in caplog.text


def test_the_readers_key_is_read_from_its_file(tmp_path):
    path = tmp_path / "keypad.scbk"
    path.write_text(KEY + "\n")
    assert read_scbk(path, "outside") == KEY


@pytest.mark.parametrize("content, problem", [(None, "cannot read the outside keypad reader's key"),
                                              ("303132333435363738393A3B3C3D3E3F", "install key"),
                                              ("abc", "32 hexadecimal digits")])
def test_a_missing_or_unfit_key_file_is_a_config_error_naming_it(tmp_path, content, problem):
    path = tmp_path / "keypad.scbk"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=problem) as err:
        read_scbk(path, "outside")
    assert str(path) in str(err.value)
