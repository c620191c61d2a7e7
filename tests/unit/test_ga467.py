"""The GA 467 codec: frames, status words, the parser and the card text block.

Public test vectors (byte strings read in the stored public code, not copied code):

- hevz/hev-idcard-reader, src/hev-dbus-object-idcard-reader.c: the requests
  find ``…00 03 20 01 22``, select ``…00 03 20 02 21``, read ``…00 03 30 01 32``,
  SAM status ``…00 03 11 FF ED`` and set-max-RF-byte ``…00 04 61 FF 50 CA``;
  the text block at frame offset 14, status byte at offset 9.
- heavyii/cardreader, src/com/dlrc/idcard/IdReader.java: the responses
  card found ``…00 08 00 00 9F 00 00 00 00 97``, no card ``…00 04 00 00 80 84``,
  selected ``…00 0C 00 00 90`` + 8 zero bytes + ``9C``, select failed ``…81 85``,
  read failed ``…41 45``.
- HslCommunication, Profinet/IDCard/SAMSerial.cs (decompiled copy in the stored
  code): LEN = frame length - 7, XOR from index 5, text fields by character
  (name 0/15, sex 15, nation 16/2, birth 18/8, address 26/35, number 61/18,
  issuer 79/15, valid 94/8 and 102/8), photo at frame offset 270.
- The read-response head ``AA AA AA 96 69 05 08 00 00 90 01 00 04 00`` (1295
  bytes in all) is quoted by several public Android and Qt readers in the
  stored code (e.g. a ``CZIdcardApiManager.java``; repositories not identified).
- SAM status OK ``…00 04 00 00 90 94`` from a public Qt reader polling loop.
"""

from datetime import date

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from drivers import ga467
from drivers.ga467 import BadFrame, CardText, Frame, FrameParser, Response, Status
from simulator.id_card_device import synthetic_id_number


def h(text: str) -> bytes:
    return bytes.fromhex(text)


ID_NUMBER = synthetic_id_number("430102", date(1990, 1, 1), 123)
CARD = CardText(
    name="测试甲", sex="male", nation="汉", birth_date=date(1990, 1, 1),
    address="湖南省长沙市芙蓉区测试路1号", id_number=ID_NUMBER, issuer="长沙市公安局芙蓉分局",
    valid_from=date(2020, 1, 1), valid_to=date(2040, 1, 1),
)


def parse_all(data: bytes) -> list:
    parser = FrameParser()
    return parser.feed(data) + parser.flush()


# ------------------------------------------------------------- requests --

@pytest.mark.parametrize("frame, vector", [
    (ga467.FIND_CARD, "AA AA AA 96 69 00 03 20 01 22"),
    (ga467.SELECT_CARD, "AA AA AA 96 69 00 03 20 02 21"),
    (ga467.READ_TEXT_PHOTO, "AA AA AA 96 69 00 03 30 01 32"),
    (ga467.SAM_STATUS, "AA AA AA 96 69 00 03 11 FF ED"),
    (ga467.build_request((0x61, 0xFF), b"\x50"), "AA AA AA 96 69 00 04 61 FF 50 CA"),
])
def test_request_frames_match_public_vectors(frame, vector):
    assert frame == h(vector)


def test_a_request_frame_parses_back_to_its_command():
    [frame] = parse_all(ga467.READ_TEXT_PHOTO)
    assert ga467.Request.from_frame(frame).command is ga467.Command.READ_TEXT_PHOTO


# ------------------------------------------------------------ responses --

@pytest.mark.parametrize("built, vector", [
    (ga467.build_find_response(True), "AA AA AA 96 69 00 08 00 00 9F 00 00 00 00 97"),
    (ga467.build_find_response(False), "AA AA AA 96 69 00 04 00 00 80 84"),
    (ga467.build_select_response(True), "AA AA AA 96 69 00 0C 00 00 90 00 00 00 00 00 00 00 00 9C"),
    (ga467.build_select_response(False), "AA AA AA 96 69 00 04 00 00 81 85"),
    (ga467.build_response(Status.READ_FAILED), "AA AA AA 96 69 00 04 00 00 41 45"),
    (ga467.build_response(Status.SUCCESS), "AA AA AA 96 69 00 04 00 00 90 94"),
])
def test_response_frames_match_public_vectors(built, vector):
    assert built == h(vector)


@pytest.mark.parametrize("vector, status", [
    ("AA AA AA 96 69 00 08 00 00 9F 00 00 00 00 97", Status.CARD_FOUND),
    ("AA AA AA 96 69 00 04 00 00 80 84", Status.FIND_FAILED),
    ("AA AA AA 96 69 00 04 00 00 81 85", Status.SELECT_FAILED),
    ("AA AA AA 96 69 00 04 00 00 41 45", Status.READ_FAILED),
])
def test_public_response_vectors_parse_to_their_status(vector, status):
    [frame] = parse_all(h(vector))
    assert Response.from_frame(frame).status == status


def test_status_bytes_have_names_for_the_log():
    assert ga467.status_text(0x80) == "find card failed (no card)"
    assert ga467.status_text(0x10) == "request checksum error"
    assert ga467.status_text(0x66) == "SAM not authorised"
    assert ga467.status_text(0x77) == "unknown status 0x77"


def test_a_read_response_has_the_public_head_and_1295_bytes():
    frame = ga467.build_read_response(ga467.encode_text(CARD))
    assert len(frame) == 1295
    assert frame[:14] == h("AA AA AA 96 69 05 08 00 00 90 01 00 04 00")


def test_a_read_response_decodes_to_the_card_fields():
    photo = bytes(range(256)) * 4
    [frame] = parse_all(ga467.build_read_response(ga467.encode_text(CARD), photo))
    text, got_photo = ga467.parse_read_data(Response.from_frame(frame).data)
    assert ga467.decode_text(text) == CARD
    assert got_photo == photo


def test_read_data_announcing_a_wrong_text_length_is_refused():
    with pytest.raises(ga467.Ga467Error, match="text bytes"):
        ga467.parse_read_data(h("0080 0400") + bytes(128 + 1024))


# ----------------------------------------------------------- text block --

def hand_made_block(valid_to: str = "20400101", sex: str = "2", nation: str = "03") -> bytes:
    fields = [("测试乙", 15), (sex, 1), (nation, 2), ("19851231", 8), ("湖南省长沙市芙蓉区示例街2号", 35),
              (ID_NUMBER, 18), ("长沙市公安局芙蓉分局", 15), ("20150601", 8), (valid_to, 8), ("", 18)]
    return "".join(value.ljust(size) for value, size in fields).encode("utf-16-le")


def test_text_block_fields_are_read_at_their_character_offsets():
    card = ga467.decode_text(hand_made_block())
    assert (card.name, card.sex, card.nation) == ("测试乙", "female", "回")
    assert card.birth_date == date(1985, 12, 31)
    assert card.address == "湖南省长沙市芙蓉区示例街2号"
    assert card.id_number == ID_NUMBER
    assert card.issuer == "长沙市公安局芙蓉分局"
    assert (card.valid_from, card.valid_to) == (date(2015, 6, 1), date(2040, 1, 1))


def test_long_term_card_has_no_end_date():
    assert ga467.decode_text(hand_made_block(valid_to="长期")).valid_to is None


def test_unknown_nation_code_is_kept_as_the_code():
    assert ga467.decode_text(hand_made_block(nation="77")).nation == "77"


def test_encoded_text_block_is_the_hand_made_one():
    card = ga467.decode_text(hand_made_block())
    assert ga467.encode_text(card) == hand_made_block()


def test_text_block_with_a_bad_date_is_refused_without_showing_the_number():
    block = hand_made_block().replace("19851231".encode("utf-16-le"), "19851331".encode("utf-16-le"))
    with pytest.raises(ga467.Ga467Error) as caught:
        ga467.decode_text(block)
    assert "birth_date" in str(caught.value) and ID_NUMBER not in str(caught.value)


def test_card_text_and_frames_do_not_show_the_id_number():
    frame = Frame(ga467.build_read_response(ga467.encode_text(CARD)))
    for shown in (repr(CARD), repr(frame), str(BadFrame("bad checksum", 1295, frame.raw[:10]))):
        assert ID_NUMBER not in shown
        assert ID_NUMBER.encode("utf-16-le").hex() not in shown.replace(" ", "")


# --------------------------------------------------------------- parser --

def test_a_frame_fed_one_byte_at_a_time_comes_out_once_complete():
    parser = FrameParser()
    frame = ga467.build_find_response(True)
    outputs = [parser.feed(frame[i:i + 1]) for i in range(len(frame))]
    assert outputs[:-1] == [[]] * (len(frame) - 1)
    assert outputs[-1] == [Frame(frame)]


def test_noise_before_a_frame_is_dropped():
    parser = FrameParser()
    assert parser.feed(h("00 FF AA AA 13 AA AA AA 96") + ga467.FIND_CARD) == [Frame(ga467.FIND_CARD)]
    assert parser.discarded == 9


def test_a_bad_checksum_is_reported_and_the_next_frame_still_found():
    bad = ga467.build_find_response(True)[:-1] + b"\x00"
    items = parse_all(bad + ga467.SELECT_CARD)
    assert [type(i) for i in items] == [BadFrame, Frame]
    assert items[0].reason == "bad checksum" and items[1] == Frame(ga467.SELECT_CARD)


@pytest.mark.parametrize("length", [b"\x00\x00", b"\x00\x02", b"\xff\xff"])
def test_an_impossible_length_is_reported_and_the_next_frame_still_found(length):
    items = parse_all(ga467.PREAMBLE + length + ga467.FIND_CARD)
    assert items[0].reason == "bad length"
    assert items[-1] == Frame(ga467.FIND_CARD)


def test_a_truncated_frame_that_swallowed_the_next_one_is_reported_on_flush():
    parser = FrameParser()
    read = ga467.build_read_response(ga467.encode_text(CARD))
    assert parser.feed(read[:300] + ga467.build_find_response(False)) == []
    items = parser.flush()
    assert items[0].reason == "truncated"
    assert items[-1] == Frame(ga467.build_find_response(False))
    assert parser.pending == 0


def test_a_flipped_length_byte_does_not_lose_the_following_frame():
    frame = bytearray(ga467.build_select_response(True))
    frame[6] ^= 0x40
    items = parse_all(bytes(frame) + ga467.FIND_CARD)
    assert isinstance(items[0], BadFrame)
    assert items[-1] == Frame(ga467.FIND_CARD)


def checked(items: list) -> list:
    for item in items:
        if isinstance(item, Frame):
            raw = item.raw
            assert raw.startswith(ga467.PREAMBLE)
            assert int.from_bytes(raw[5:7], "big") == len(raw) - 7
            assert ga467.checksum(raw[5:-1]) == raw[-1]
        else:
            assert isinstance(item, BadFrame) and item.reason in ("bad length", "bad checksum", "truncated")
    return items


def feed_in_pieces(data: bytes, cuts: list[int]) -> list:
    parser = FrameParser()
    items, last = [], 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        items += parser.feed(data[last:cut])
        last = cut
    return items + parser.flush()


preamble_heavy_bytes = st.lists(
    st.one_of(st.binary(max_size=8), st.just(ga467.PREAMBLE), st.sampled_from([b"\xaa", b"\x96\x69", b"\x00\x05"])),
    max_size=30,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(data=st.one_of(st.binary(max_size=600), preamble_heavy_bytes), cuts=st.lists(st.integers(0, 700), max_size=12))
def test_arbitrary_bytes_in_arbitrary_pieces_never_raise_nor_yield_a_bad_frame(data, cuts):
    items = checked(feed_in_pieces(data, cuts))
    assert items == checked(parse_all(data))  # the cut points change nothing


noise = st.binary(max_size=40).filter(lambda b: ga467.PREAMBLE not in b)
bodies = st.binary(min_size=2, max_size=60)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.tuples(noise, bodies), min_size=1, max_size=6), tail=noise,
       cuts=st.lists(st.integers(0, 800), max_size=10))
def test_valid_frames_embedded_in_noise_are_all_recovered(parts, tail, cuts):
    frames = [ga467.build_frame(body) for _, body in parts]
    stream = b"".join(n + f for (n, _), f in zip(parts, frames)) + tail
    assume(len(stream) <= 800)
    items = checked(feed_in_pieces(stream, cuts))
    assert items == [Frame(f) for f in frames]
