"""Resident ID numbers (GB 11643-1999): checking, masking, the keyed hash."""

import hashlib
import hmac
import json
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_py.core.idnumber import (
    CHECK_CHARS,
    FULL_ID_NUMBER,
    ID_NUMBER_LIKE,
    check_digit,
    id_hash,
    is_valid,
    mask,
    validate,
)
from firmware_py.errors import AccessCtlError, IdNumberError
from tests.fixtures.roster import id_number

STANDARD_EXAMPLE = "11010519491231002X"  # the example printed in GB 11643-1999
GOOD = id_number("43010219850312123")  # synthetic, Changsha Furong district
TODAY = date(2026, 11, 23)


def wrong_check(number: str) -> str:
    return number[:17] + next(c for c in CHECK_CHARS if c != number[17])


# --------------------------------------------------------------------------- good numbers


def test_the_standards_example_number_is_valid():
    assert validate(STANDARD_EXAMPLE) == STANDARD_EXAMPLE


def test_the_check_digit_of_the_standards_example_is_x():
    assert check_digit(STANDARD_EXAMPLE[:17]) == "X"


def test_a_lower_case_x_is_accepted_and_upper_cased():
    assert validate(STANDARD_EXAMPLE.lower()) == STANDARD_EXAMPLE


def test_surrounding_blanks_are_removed():
    assert validate(f"  {GOOD}\n") == GOOD


def test_residence_permit_ranges_for_hong_kong_macau_and_taiwan_are_accepted():
    for region in ("810000", "820000", "830000"):
        assert is_valid(id_number(region + "19900101001"))


def test_a_person_born_today_is_valid():
    assert validate(id_number("43010220261123001"), today=TODAY)


def test_february_29_of_a_leap_year_is_a_real_birth_date():
    assert is_valid(id_number("43010220000229001"))


# --------------------------------------------------------------------------- bad numbers


def test_every_wrong_check_digit_is_rejected():
    for c in CHECK_CHARS:
        if c != GOOD[17]:
            with pytest.raises(IdNumberError, match="check digit"):
                validate(GOOD[:17] + c)


def test_a_number_of_17_characters_is_rejected():
    with pytest.raises(IdNumberError, match="has 17 characters"):
        validate(GOOD[:17])


def test_a_15_digit_first_generation_number_is_rejected():
    with pytest.raises(IdNumberError, match="has 15 characters"):
        validate("430102850312123")


def test_a_letter_among_the_first_17_is_rejected():
    with pytest.raises(IdNumberError, match="character 5 is not a digit"):
        validate(GOOD[:4] + "A" + GOOD[5:])


def test_x_anywhere_but_last_is_rejected():
    with pytest.raises(IdNumberError, match="not a digit"):
        validate("X" + GOOD[1:])


def test_a_region_that_is_no_province_is_rejected():
    for region in ("00", "10", "16", "24", "38", "47", "55", "66", "72", "84", "99"):
        with pytest.raises(IdNumberError, match=f"region code {region}"):
            validate(id_number(region + "0102198503121234"[:15]))


def test_february_30_is_rejected():
    with pytest.raises(IdNumberError, match="1990-02-30 does not exist"):
        validate(id_number("43010219900230123"))


def test_february_29_of_a_common_year_is_rejected():
    with pytest.raises(IdNumberError, match="does not exist"):
        validate(id_number("43010219010229123"))


def test_month_13_is_rejected():
    with pytest.raises(IdNumberError, match="does not exist"):
        validate(id_number("43010219901301123"))


def test_a_birth_date_in_the_future_is_rejected():
    with pytest.raises(IdNumberError, match="2026-11-24 is in the future"):
        validate(id_number("43010220261124001"), today=TODAY)


def test_a_birth_date_before_1900_is_rejected():
    with pytest.raises(IdNumberError, match="before 1900"):
        validate(id_number("43010218991231001"))


def test_is_valid_is_false_for_bad_numbers_and_non_text():
    assert not is_valid(wrong_check(GOOD))
    assert not is_valid("")
    assert not is_valid(None)


def test_error_messages_never_contain_the_full_number():
    bad = [wrong_check(GOOD), id_number("99010219850312123"), id_number("43010219900230123"),
           id_number("43010229990101001"), GOOD + "1", GOOD[:4] + "A" + GOOD[5:]]
    for number in bad:
        with pytest.raises(IdNumberError) as caught:
            validate(number)
        assert number not in str(caught.value)
        assert number[:17] not in str(caught.value)


def test_an_id_number_error_is_a_value_error_not_a_user_facing_store_error():
    assert issubclass(IdNumberError, ValueError)
    assert not issubclass(IdNumberError, AccessCtlError)


@settings(max_examples=200, deadline=None)
@given(
    region=st.sampled_from(["11", "31", "43", "65", "81"]),
    born=st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    rest=st.text(alphabet="0123456789", min_size=7, max_size=7),
    position=st.integers(0, 17),
    replacement=st.sampled_from("0123456789X"),
)
def test_changing_any_single_character_of_a_valid_number_makes_it_invalid(region, born, rest, position, replacement):
    number = id_number(region + rest[:4] + born.strftime("%Y%m%d") + rest[4:])
    assert validate(number, today=TODAY) == number
    changed = number[:position] + replacement + number[position + 1:]
    if changed != number:
        assert not is_valid(changed, today=TODAY)


# --------------------------------------------------------------------------- masking


def test_mask_keeps_the_first_6_and_last_4_characters():
    assert mask(GOOD) == "430102********123X"


def test_mask_upper_cases_a_lower_case_x():
    assert mask(STANDARD_EXAMPLE.lower()) == "110105********002X"


def test_a_malformed_number_keeps_only_its_province_code():
    assert mask("43010219850312") == "43" + "*" * 12


def test_a_misread_number_of_nineteen_characters_keeps_only_its_province_code():
    assert mask(GOOD + "7") == "43" + "*" * 17


def test_an_empty_read_stays_empty():
    assert mask("") == ""


def test_an_eighteen_character_number_with_a_wrong_check_digit_is_masked_like_a_good_one():
    bad = GOOD[:17] + ("0" if GOOD[17] != "0" else "1")
    assert not is_valid(bad) and mask(bad) == bad[:6] + "*" * 8 + bad[-4:]


def test_redaction_masks_every_number_the_leak_guard_would_refuse():
    text = f"card {GOOD}; id{GOOD}x"
    assert FULL_ID_NUMBER.search(text)
    redacted = ID_NUMBER_LIKE.sub(lambda m: mask(m.group()), text)
    assert not FULL_ID_NUMBER.search(redacted) and not ID_NUMBER_LIKE.search(redacted)


# --------------------------------------------------------------------------- keyed hash


def test_the_id_hash_is_hmac_sha256_of_the_normalised_number(tmp_path):
    secret = b"k" * 32
    expected = hmac.new(secret, STANDARD_EXAMPLE.encode(), hashlib.sha256).hexdigest()
    assert id_hash(secret, STANDARD_EXAMPLE) == expected
    assert id_hash(secret, " " + STANDARD_EXAMPLE.lower()) == expected


def test_the_same_number_hashes_differently_on_another_device():
    assert id_hash(b"a" * 32, GOOD) != id_hash(b"b" * 32, GOOD)


def test_the_plain_sha256_of_a_number_is_not_its_id_hash():
    # Without the key, hashing all ~10^10 plausible numbers would reverse an unkeyed hash.
    assert id_hash(b"k" * 32, GOOD) != hashlib.sha256(GOOD.encode()).hexdigest()


# --------------------------------------------------------------------------- other digit sets (issue 18, item 6)

FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
# An ID number written in two other digit sets, and in a mix of them with ASCII.
CIRCLED = str.maketrans("0123456789", "⓪①②③④⑤⑥⑦⑧⑨")
# NFKC reads some characters as two digits (㊸ is 43) or a digit and a full stop (⒏ is "8.").
CIRCLED_43 = chr(0x32B1 + 43 - 36)
OTHER_DIGITS = {"full-width": GOOD.translate(FULL_WIDTH), "Arabic-Indic": GOOD.translate(ARABIC_INDIC),
                "mixed": GOOD[:6].translate(ARABIC_INDIC) + GOOD[6:12] + GOOD[12:].translate(FULL_WIDTH),
                "circled": CIRCLED_43 + GOOD[2:].translate(CIRCLED)}
MASKED = GOOD[:6] + "*" * 8 + GOOD[-4:]


def in_ascii(text: str) -> str:
    """The test's own reading of any digit set: NFKC, then every decimal digit as its ASCII digit."""
    import unicodedata

    text = unicodedata.normalize("NFKC", text)
    return "".join(str(unicodedata.decimal(c)) if unicodedata.decimal(c, None) is not None else c for c in text)


def holds_a_full_number(text: str) -> bool:
    import re

    return re.search(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])", in_ascii(text)) is not None


@pytest.mark.parametrize("digits", sorted(OTHER_DIGITS))
def test_a_number_in_other_digits_in_free_text_is_masked_in_ascii(digits):
    from firmware_py.core.idnumber import mask_id_numbers

    text = f"退回：证件 {OTHER_DIGITS[digits]} 已挂失"
    assert holds_a_full_number(text)
    assert mask_id_numbers(text) == f"退回：证件 {MASKED} 已挂失"


@pytest.mark.parametrize("digits", sorted(OTHER_DIGITS))
def test_the_mask_of_a_number_in_other_digits_is_the_mask_of_the_number(digits):
    assert mask(OTHER_DIGITS[digits]) == MASKED


@pytest.mark.parametrize("digits", sorted(OTHER_DIGITS))
def test_the_leak_guard_refuses_a_number_in_other_digits(digits):
    from firmware_py.core.events import LeakError, refuse_full_id_numbers

    with pytest.raises(LeakError):
        refuse_full_id_numbers(f'{{"reason":"{OTHER_DIGITS[digits]}"}}')


def test_free_text_without_a_number_is_kept_as_it_is():
    from firmware_py.core.idnumber import mask_id_numbers

    text = "ＡＢＣ　全角文字，第１２号；٣ items"
    assert mask_id_numbers(text) == text


def test_a_number_ending_in_a_digit_with_a_full_stop_is_masked_and_the_stop_kept():
    from firmware_py.core.idnumber import mask_id_numbers

    body = next(b for b in (f"{43010219850312100 + k}" for k in range(100)) if check_digit(b) in "123456789")
    last = check_digit(body)
    stop = chr(0x2488 + int(last) - 1)  # ⒈ … ⒐: the digit and a full stop
    assert holds_a_full_number(f"no. {body}{stop}")
    assert mask_id_numbers(f"no. {body}{stop} ok") == f"no. {body[:6]}{'*' * 8}{body[14:]}{last}. ok"


def test_every_character_that_reads_as_a_digit_or_an_x_is_in_the_table_that_spares_plain_text_the_folding():
    import sys
    import unicodedata

    from firmware_py.core.idnumber import _MAY_READ_AS_DIGIT

    def reads_as_digit_or_x(c: str) -> bool:
        return any(unicodedata.decimal(x, None) is not None or x in "Xx" for x in unicodedata.normalize("NFKC", c))

    missing = [f"U+{c:04X}" for c in range(0x80, sys.maxunicode + 1)
               if chr(c) not in _MAY_READ_AS_DIGIT and reads_as_digit_or_x(chr(c))]
    assert missing == [], f"Unicode {unicodedata.unidata_version}: add these to idnumber._READS_AS_DIGIT"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["0123456789", "０１２３４５６７８９", "٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹", "०१२३४५६७८९",
                                 "⓪①②③④⑤⑥⑦⑧⑨", "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗"]),
                min_size=18, max_size=18),
       st.text(max_size=8), st.text(max_size=8))
def test_masked_free_text_never_holds_a_full_number_in_any_digit_set(digit_sets, before, after):
    from firmware_py.core.idnumber import mask_id_numbers

    number = "".join(digits[int(c)] if c.isdigit() else c for digits, c in zip(digit_sets, GOOD))
    assert not holds_a_full_number(mask_id_numbers(f"{before}{number}{after}"))


# --------------------------------------------------------------------------- ... stored and published masked


@pytest.fixture
def door_on_sqlite(roster_world):
    """The controller on the real roster and event log in a SQLite file, with one person on the roster."""
    from datetime import date

    from firmware_py.core.clock import SimulatedClock
    from firmware_py.core.controller import DoorController
    from firmware_py.storage import roster
    from firmware_py.storage.door_log import SqliteEventLog
    from tests.fixtures.memory_ports import MONDAY_9, MemoryIndicators, MemoryLock

    roster.add(roster_world.db, roster_world.store, secret=roster_world.secret,
               schedule_groups=roster_world.config.calendar.schedules, person_id="P001", name="赵一",
               id_number=GOOD, role="staff", organisation="示例档案馆", employer_type="own",
               badge_uids=["04a1b2c3"], review_date=date(2025, 12, 10), training_hours=48,
               commitment_date=date(2025, 12, 15), valid_from=date(2026, 1, 1), valid_until=date(2026, 12, 31),
               schedule_group="office")
    controller = DoorController(roster_world.config, roster=roster.SqliteRoster(roster_world.db, roster_world.store),
                                event_log=SqliteEventLog(roster_world.store), lock=MemoryLock(),
                                indicators=MemoryIndicators(), clock=SimulatedClock(MONDAY_9),
                                secret=roster_world.secret)
    controller.start()
    return controller, roster_world


def stored_and_published(world) -> list[str]:
    """Every stored event's JSON, and every MQTT payload the link would publish from the outbox."""
    from firmware_py.link.door_link import published_event

    stored = [json.dumps(e, ensure_ascii=False) for e in world.store.events()]
    published = [published_event(body, h).decode("utf-8") for _, _, _, body, h in world.store.outbox_rows(1, 1000)]
    assert len(published) == len(stored)
    return stored + published


@pytest.mark.parametrize("digits", sorted(OTHER_DIGITS))
def test_a_number_in_other_digits_in_a_revoke_reason_is_stored_and_published_masked(door_on_sqlite, digits):
    from firmware_py.core import commands

    controller, world = door_on_sqlite
    reason = f"证件 {OTHER_DIGITS[digits]} 挂失"
    controller.handle(commands.parse(json.dumps({"id": "c1", "action": "revoke", "person_id": "P001",
                                                 "reason": reason}, ensure_ascii=False).encode()))
    texts = stored_and_published(world)
    audit = json.loads(texts[len(texts) // 2 - 1])
    assert audit["type"] == "command" and audit["detail"]["args"]["reason"] == f"证件 {MASKED} 挂失"
    assert audit["detail"]["error"] == "cannot revoke P001: the reason must not contain an ID number"
    assert [t for t in texts if holds_a_full_number(t)] == []


@pytest.mark.parametrize("digits", sorted(OTHER_DIGITS))
def test_a_number_in_other_digits_in_a_commands_own_text_is_stored_and_published_masked(door_on_sqlite, digits):
    from firmware_py.core import commands

    controller, world = door_on_sqlite
    answers = []
    controller.command_results.append(lambda *a: answers.append(a))
    number = OTHER_DIGITS[digits]
    controller.handle(commands.parse(json.dumps({"id": f"cmd-{number}", "action": "lockdown", "by": number},
                                                ensure_ascii=False).encode(), f"ops {number}"))
    texts = stored_and_published(world)
    audit = json.loads(texts[len(texts) // 2 - 1])
    assert audit["type"] == "command"
    assert (audit["detail"]["id"], audit["detail"]["claimed_by"]) == (f"cmd-{MASKED}", f"ops {MASKED}")
    assert [t for t in texts if holds_a_full_number(t)] == []
    assert answers == [(f"cmd-{MASKED}", True, None)]
