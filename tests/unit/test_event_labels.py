"""Every event type, denial reason and direction the door can store has its Chinese and English label,
so the monitor, the simulator and the station's page never show a bare identifier."""

import re

import pytest

from firmware_py.core.event_line import DIRECTION_LABELS, REASON_LABELS, TYPE_LABELS
from firmware_py.core.events import DIRECTIONS, REASONS, TYPES

CHINESE_THEN_ENGLISH = re.compile(r"^[\u4e00-\u9fff]+ [a-zA-Z][a-zA-Z -]*$")


@pytest.mark.parametrize("name, labels", [
    *[(t, TYPE_LABELS) for types in TYPES.values() for t in types],
    *[(r, REASON_LABELS) for r in REASONS],
    *[(d, DIRECTION_LABELS) for d in DIRECTIONS],
])
def test_every_name_in_the_vocabulary_has_a_chinese_and_english_label(name, labels):
    assert name in labels, f"{name} has no label"
    assert CHINESE_THEN_ENGLISH.match(labels[name]), labels[name]
