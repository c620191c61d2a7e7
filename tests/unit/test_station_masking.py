"""The station's ID-number mask works on parsed values and writes valid JSON again."""

from __future__ import annotations

import json

import pytest

from firmware_py.core.idnumber import FULL_ID_NUMBER, ascii_digits
from firmware_py.station.archive import masking

FULL_ID = "430102199003070012"  # a fictional person, valid check digit
MASKED = "430102********0012"
FULL_WIDTH = "".join(chr(ord(c) + 0xFEE0) for c in FULL_ID)
ARABIC_INDIC = "".join(chr(0x660 + int(c)) for c in FULL_ID)
HASH = "4301021990030700121234567890123456789012345678901234567890abcdef"


def test_a_bare_id_number_in_json_becomes_its_masked_text_and_the_json_stays_valid():
    payload = f'{{"seq": 1, "detail": {FULL_ID}, "note": "card {FULL_ID} read"}}'.encode()
    value = json.loads(masking.masked_json(payload))
    assert value == {"seq": 1, "detail": MASKED, "note": f"card {MASKED} read"}


@pytest.mark.parametrize("number", [f"{FULL_ID}.0", "4.30102199003070012e17", f"-{FULL_ID}"])
def test_a_number_whose_digits_are_an_id_number_is_masked_in_any_notation(number):
    text = masking.masked_json(f'{{"n": {number}}}')
    assert not any(run in text for run in ("199003", "1990030")), text
    assert json.loads(text)["n"].startswith(("430102", "-430102"))


@pytest.mark.parametrize("written", [FULL_WIDTH, ARABIC_INDIC, FULL_WIDTH[:-1] + "Ｘ",
                                     FULL_ID[:9] + ARABIC_INDIC[9:], "ID" + FULL_WIDTH, "名" + FULL_ID + "号"])
def test_an_id_number_in_other_digits_is_masked(written):
    shown = masking.mask_text(f"name {written} end")
    assert "*" * 8 in shown
    assert not FULL_ID_NUMBER.search(ascii_digits(shown))


def test_text_without_an_id_number_and_a_sha256_are_kept_as_they_are():
    for text in ("P001 张三 ４３", HASH, "1" * 17, "1" * 19):
        assert masking.mask_text(text) == text


@pytest.mark.parametrize("payload", [b"\xff\xfe not json", b"{broken", b"[" * 100_000, b""])
def test_what_is_not_json_is_unreadable_with_a_reason(payload):
    with pytest.raises(masking.Unreadable):
        masking.parse(payload)


def test_nan_huge_numbers_and_lone_surrogates_still_give_strict_json():
    payload = '{"a": NaN, "b": Infinity, "c": 1e999, "d": ' + "9" * 5000 + ', "e": "\\ud800"}'
    value = json.loads(masking.masked_json(payload))
    assert value["a"] == "NaN" and value["b"] == "Infinity" and value["c"] == "1e999"
    assert value["d"].startswith("9999") and len(value["d"]) < 50 and value["e"] == "?"


def test_a_payload_shown_cut_never_shows_the_start_of_a_number_at_the_cut():
    text = masking.shown(f'{{"x": "{FULL_ID}"}}'.encode()[:20], 1000, cut=True)
    assert text.endswith("…") and "43010219" not in text
    assert masking.shown(b"{" + b'"k": 1, ' * 500 + b"}", 100).endswith("…")


def test_an_id_number_spelt_in_json_escapes_is_masked():
    escaped = "".join(f"\\u{ord(c):04x}" for c in FULL_ID)
    assert masking.parse(f'{{"name": "{escaped}", "ok": "P001"}}') == {"name": MASKED, "ok": "P001"}
