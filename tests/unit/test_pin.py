"""The PIN's stored form: a slow salted hash (scrypt) that checks the PIN and holds nothing of it in clear."""

from __future__ import annotations

import pytest

from firmware_py.core.inputs import KeypadKeys
from firmware_py.core.pin import (
    DURESS,
    MATCH,
    SCRYPT_N,
    WRONG,
    PinError,
    check_new_pin,
    hash_pin,
    is_pin_hash,
    judge_pin,
    verify_pin,
)


def test_a_hash_checks_its_pin_and_no_other():
    stored = hash_pin("2580")
    assert verify_pin("2580", stored) and not verify_pin("2581", stored)


def test_two_hashes_of_one_pin_differ_by_their_salt():
    assert hash_pin("2580") != hash_pin("2580")


def test_the_stored_hash_names_its_cost_and_holds_no_pin():
    stored = hash_pin("258025")
    assert stored.startswith(f"scrypt${SCRYPT_N}$8$1$") and is_pin_hash(stored)
    assert "258025" not in stored


@pytest.mark.parametrize("stored", [None, "", "plain", "scrypt$16384$8$1$zz$00", "scrypt$1048576$8$1$00$00",
                                    "md5$1$1$1$00$00"])
def test_a_missing_or_malformed_hash_matches_nothing(stored):
    assert verify_pin("2580", stored) is False


@pytest.mark.parametrize("pin, problem", [("12a4", "digits only"), ("123", "4 to 12"), ("1" * 13, "4 to 12"),
                                          ("7777", "one digit repeated"), ("١٢٣٤", "digits only")])
def test_a_pin_that_cannot_be_set_is_refused_without_quoting_it(pin, problem):
    with pytest.raises(PinError, match=problem) as err:
        check_new_pin(pin)
    assert pin not in str(err.value)


def test_the_pin_entered_is_judged_right_duress_or_wrong():
    pin_hash, duress_hash = hash_pin("2580"), hash_pin("0852")
    assert judge_pin("2580", pin_hash, duress_hash) == MATCH
    assert judge_pin("0852", pin_hash, duress_hash) == DURESS
    assert judge_pin("1111", pin_hash, duress_hash) == WRONG
    assert judge_pin("2580", None, None) == WRONG


def test_keys_pressed_never_show_in_their_repr():
    assert "2580" not in repr(KeypadKeys("outside", "2580#"))
