"""PINs in roster bundles, as hashes only (GB/T 37078 §6.3-6.4, DESIGN.md "PIN and duress").

The station's CSV may carry ``pin_hash`` and ``duress_pin_hash``; a PIN itself is refused with the
line named and never repeated; a bundle carrying the hashes replaces the PINs set at the door, one
without them keeps those; a malformed hash field in a signed bundle is refused with its reason.
"""

from __future__ import annotations

import zlib
from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_py.core.pin import DURESS, MATCH, PinError, check_pin_hash, hash_pin, judge_pin
from firmware_py.errors import BundleError, RosterError
from firmware_py.link import roster_bundle as rb
from firmware_py.station.roster.bundle import check_roster
from firmware_py.storage import roster
from firmware_py.storage import roster_bundle as applying
from tests.fixtures.roster import HEADER
from tests.fixtures.roster_bundle import GROUPS, SITE_KEY, assembled, person, signed

KEY = Ed25519PrivateKey.generate()
PIN, DURESS_PIN, OTHER_PIN = "739154", "602817", "481936"  # six digits: not found by chance in hex text
SALT = bytes(range(16))
PIN_HASH, DURESS_HASH = hash_pin(PIN, salt=SALT), hash_pin(DURESS_PIN, salt=SALT[::-1])
PIN_HEADER = HEADER + ",pin_hash,duress_pin_hash"


def with_pins(n: int, pin_hash: str = "", duress_hash: str = "") -> str:
    return f"{person(n)},{pin_hash},{duress_hash}"


def checked(*lines: str, header: str = PIN_HEADER):
    data = "\n".join((header, *lines)).encode() + b"\n"
    return check_roster(data, "roster.csv", site_key=SITE_KEY, schedule_groups=GROUPS, today=date(2026, 11, 23))


def apply(world, people, version=1, header=PIN_HEADER):
    bundle = signed(world.tmp, people, key=KEY, version=version, header=header)
    return applying.apply_bundle(world.db, world.store, *assembled(bundle, KEY.public_key()), schedule_groups=GROUPS)


# ---------------------------------------------------------------- the station's CSV


def test_the_csvs_pin_hashes_are_kept_with_their_persons():
    rows = checked(with_pins(1, PIN_HASH, DURESS_HASH), with_pins(2))
    assert rows.pins == {"P00001": (PIN_HASH, DURESS_HASH), "P00002": (None, None)}


def test_a_csv_without_pin_columns_carries_no_pins():
    assert checked(person(1), header=HEADER).pins is None


@pytest.mark.parametrize("column", ["pin", "PIN", "duress_pin", "pin_code", "Duress PIN", "password"])
def test_a_column_for_plain_pins_refuses_the_file_naming_the_header_line(column):
    with pytest.raises(RosterError, match=rf"line 1, header: column '{column}' would hold PINs"):
        checked(f"{person(1)},{PIN}", header=f"{HEADER},{column}")


def test_a_plain_pin_in_the_hash_column_refuses_the_file_naming_the_line_and_never_repeats_it():
    with pytest.raises(RosterError) as caught:
        checked(with_pins(1, PIN_HASH), with_pins(2, DURESS_PIN), with_pins(3, "", OTHER_PIN))
    message = str(caught.value)
    assert "line 3, pin_hash: holds digits only: a PIN, not its hash" in message
    assert "line 4, duress_pin_hash: holds digits only" in message
    assert DURESS_PIN not in message and OTHER_PIN not in message


def test_the_same_hash_for_pin_and_duress_pin_is_refused():
    with pytest.raises(RosterError, match="line 2, duress_pin_hash: is the same hash as pin_hash"):
        checked(with_pins(1, PIN_HASH, PIN_HASH))


# ---------------------------------------------------------------- the bundle


def test_no_pin_appears_in_any_byte_of_a_bundle_that_carries_pin_hashes(tmp_path):
    bundle = signed(tmp_path, [with_pins(1, PIN_HASH, DURESS_HASH), with_pins(2, hash_pin(OTHER_PIN))],
                    key=KEY, header=PIN_HEADER)
    manifest, payload = assembled(bundle, KEY.public_key())
    text = zlib.decompress(b"".join(payload))
    assert PIN_HASH.encode() in text and DURESS_HASH.encode() in text  # the hashes travel ...
    for pin in (PIN, DURESS_PIN, OTHER_PIN):  # ... the PINs never: not signed, compressed or decompressed
        for blob in (bundle.manifest, *bundle.chunks, payload, text):
            assert pin.encode() not in blob and pin.encode("utf-16-le") not in blob


def test_a_bundle_with_pin_hashes_sets_them_at_the_door_where_the_pin_then_opens(roster_world):
    event = apply(roster_world, [with_pins(1, PIN_HASH, DURESS_HASH)])
    assert event["detail"]["pins"] == "bundle"
    p = roster.get(roster_world.db, "P00001")
    assert judge_pin(PIN, p.pin_hash, p.duress_pin_hash) == MATCH
    assert judge_pin(DURESS_PIN, p.pin_hash, p.duress_pin_hash) == DURESS


def test_a_bundle_with_pin_columns_replaces_the_pins_set_at_the_door(roster_world):
    apply(roster_world, [person(1), person(2)], header=HEADER)
    roster.set_pin(roster_world.db, roster_world.store, "P00001", OTHER_PIN)
    roster.set_pin(roster_world.db, roster_world.store, "P00002", OTHER_PIN)
    apply(roster_world, [with_pins(1, PIN_HASH), with_pins(2)], version=2)

    assert roster.get(roster_world.db, "P00001").pin_hash == PIN_HASH
    assert roster.get(roster_world.db, "P00002").pin_hash is None  # the station gives none: none


def test_a_bundle_without_pin_columns_keeps_the_pins_set_at_the_door(roster_world):
    apply(roster_world, [person(1)], header=HEADER)
    roster.set_pin(roster_world.db, roster_world.store, "P00001", OTHER_PIN)
    event = apply(roster_world, [person(1)], version=2, header=HEADER)
    assert event["detail"]["pins"] == "door"
    p = roster.get(roster_world.db, "P00001")
    assert judge_pin(OTHER_PIN, p.pin_hash, p.duress_pin_hash) == MATCH


# ---------------------------------------------------------------- malformed hash fields (properties)

HASH_TEXT = st.one_of(
    st.text(max_size=120),
    st.text(alphabet="0123456789abcdefABCDEF$scrypt", max_size=120),
    st.builds(lambda n, r, p, salt, digest: f"scrypt${n}${r}${p}${salt}${digest}",
              st.integers(-5, 2**20), st.integers(-2, 40), st.integers(-2, 9),
              st.text(alphabet="0123456789abcdefg", max_size=140), st.text(alphabet="0123456789abcdefG", max_size=70)),
    st.integers(0, 10**12).map(str),
)
FIELD_VALUE = st.one_of(HASH_TEXT, st.integers(), st.booleans(), st.floats(allow_nan=False), st.lists(st.text()),
                        st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2))


@settings(max_examples=300, deadline=None)
@given(HASH_TEXT)
def test_any_text_is_a_usable_pin_hash_or_refused_with_a_reason_that_does_not_repeat_it(text):
    try:
        assert check_pin_hash(text) == text
    except PinError as exc:
        assert str(exc)
        if len(text) >= 8:
            assert text not in str(exc)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(rb.PIN_COLUMNS), FIELD_VALUE)
def test_a_signed_row_with_any_pin_hash_field_is_read_or_refused_as_malformed_naming_row_and_field(
        tmp_path_factory, column, value):
    bundle = signed(tmp_path_factory.mktemp("b"), [with_pins(1, PIN_HASH)], key=KEY, header=PIN_HEADER)
    manifest, payload = assembled(bundle, KEY.public_key())
    header, rows = rb.read_payload(manifest, payload)
    row = list(next(rows))
    row[len(rb.COLUMNS) + rb.PIN_COLUMNS.index(column)] = value
    try:
        stored, _ = rb.check_row(row, 1, schedule_groups=GROUPS, pins=header.pins)
    except BundleError as exc:
        assert exc.reason == "malformed"
        assert str(exc).startswith(f"row 1 ('P00001'), {column}: ")
        if isinstance(value, str) and len(value) >= 8:
            assert value not in str(exc)
    else:
        assert stored[-2:] == tuple(row[-2:]) and all(v is None or check_pin_hash(v) for v in stored[-2:])
