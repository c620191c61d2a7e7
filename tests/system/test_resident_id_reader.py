"""ResidentIdReader against the emulated reader, through a real pseudo-terminal."""

import logging
import queue
import threading
import time
from datetime import date

import pytest

from drivers.resident_id_reader import GARBLED_POLLS_BEFORE_FAULT, ResidentIdReader
from firmware_py.core.inputs import DeviceFault, DeviceRecovered, IdCardRead
from simulator.id_card_device import IdCard, IdCardDevice, synthetic_id_number

CARD = IdCard(
    name="测试甲", sex="female", nation="汉", birth=date(1992, 3, 4),
    address="湖南省长沙市芙蓉区测试路1号", id_number=synthetic_id_number("430102", date(1992, 3, 4), 246),
    issuer="长沙市公安局芙蓉分局", valid_from=date(2021, 5, 6), valid_to=None,
)
WAIT = 5.0


@pytest.fixture
def events():
    return queue.Queue()


@pytest.fixture
def make_reader(events, id_card_device):  # readers close before the device goes away
    readers = []

    def make(port, **kwargs):
        options = dict(side="outside", post=events.put, poll_interval=0.02, response_timeout=0.5,
                       max_backoff=0.2)
        reader = ResidentIdReader(port, **(options | kwargs))
        readers.append(reader)
        reader.start()
        return reader

    yield make
    for reader in readers:
        reader.close()


@pytest.fixture
def reader(make_reader, id_card_device):
    return make_reader(id_card_device.port)


def polls_go_by(device, count=5):
    """Let the driver poll ``count`` more times."""
    done = device.requests["FIND_CARD"] + count
    assert device.wait_for_requests("FIND_CARD", done, WAIT)


def test_a_presented_card_is_posted_with_its_fields_decoded(reader, id_card_device, events):
    id_card_device.present(CARD)
    event = events.get(timeout=WAIT)
    assert event == IdCardRead(
        side="outside", id_number=CARD.id_number, name="测试甲", sex="female", nation="汉",
        birth_date=date(1992, 3, 4), address="湖南省长沙市芙蓉区测试路1号", issuer="长沙市公安局芙蓉分局",
        valid_from=date(2021, 5, 6), valid_to=None,
    )


def test_a_tapped_card_is_read_once_and_taken_away(reader, id_card_device, events):
    id_card_device.tap(CARD)
    assert id_card_device.wait_read(WAIT)
    assert events.get(timeout=WAIT).id_number == CARD.id_number
    assert id_card_device.card is None


def test_a_card_left_on_the_reader_is_posted_once(reader, id_card_device, events):
    id_card_device.present(CARD)
    events.get(timeout=WAIT)
    polls_go_by(id_card_device)
    assert events.empty()
    assert id_card_device.requests["READ_TEXT_PHOTO"] == 1


def test_a_card_presented_again_after_removal_is_read_again(reader, id_card_device, events):
    id_card_device.present(CARD)
    events.get(timeout=WAIT)
    id_card_device.remove()
    polls_go_by(id_card_device, 2)
    id_card_device.present(CARD)
    assert isinstance(events.get(timeout=WAIT), IdCardRead)


def test_control_bytes_in_the_photo_pass_through_the_pty_unchanged(reader, id_card_device, events):
    id_card_device.present(IdCard(photo=bytes(range(256)) * 4))  # ^C, XON/XOFF, CR, LF, DEL...
    assert isinstance(events.get(timeout=WAIT), IdCardRead)


def test_noise_before_a_frame_is_skipped(reader, id_card_device, events):
    id_card_device.inject_noise(on="find")
    id_card_device.inject_noise(b"\xaa\xaa\x00\xaa\xaa\xaa\x96\x00\xff", on="read")
    id_card_device.present(CARD)
    assert events.get(timeout=WAIT).id_number == CARD.id_number
    assert id_card_device.injections_pending == 0
    assert id_card_device.requests["READ_TEXT_PHOTO"] == 1


def test_a_bad_checksum_is_logged_and_the_read_retried(reader, id_card_device, events, caplog):
    caplog.set_level(logging.DEBUG)
    id_card_device.corrupt_next_checksum(on="read")
    id_card_device.present(CARD)
    assert events.get(timeout=WAIT).id_number == CARD.id_number
    assert id_card_device.requests["READ_TEXT_PHOTO"] == 2
    assert "bad checksum" in caplog.text
    polls_go_by(id_card_device, 2)
    assert events.empty()  # no fault for a garbled frame, and no second read


def test_a_truncated_frame_is_logged_and_the_read_retried(reader, id_card_device, events, caplog):
    caplog.set_level(logging.DEBUG)
    id_card_device.truncate_next(300, on="read")
    id_card_device.present(CARD)
    assert events.get(timeout=WAIT).id_number == CARD.id_number
    assert id_card_device.requests["READ_TEXT_PHOTO"] == 2
    assert "truncated" in caplog.text
    polls_go_by(id_card_device, 2)
    assert events.empty()


def test_a_truncated_short_answer_is_no_outage(reader, id_card_device, events, caplog):
    id_card_device.truncate_next(5, on="find")
    id_card_device.truncate_next(8, on="find")
    polls_go_by(id_card_device, 4)
    assert id_card_device.injections_pending == 0
    assert events.empty()
    assert "truncated" in caplog.text


def test_the_id_number_never_reaches_the_log(reader, id_card_device, events, caplog):
    caplog.set_level(logging.DEBUG)
    id_card_device.corrupt_next_checksum(on="read")
    id_card_device.truncate_next(700, on="read")
    id_card_device.present(CARD)
    events.get(timeout=WAIT)
    assert caplog.records
    assert CARD.id_number not in caplog.text
    assert CARD.id_number[:14] not in caplog.text


@pytest.fixture
def impatient_reader(make_reader, id_card_device):
    return make_reader(id_card_device.port, response_timeout=0.1, max_backoff=0.3)


def test_a_silent_reader_posts_one_fault_then_recovered_when_it_answers(impatient_reader, id_card_device, events):
    reader = impatient_reader
    id_card_device.go_silent()
    fault = events.get(timeout=WAIT)
    assert isinstance(fault, DeviceFault) and fault.device == "id_reader.outside"
    assert "no answer" in fault.detail
    polls_go_by(id_card_device, 4)  # retried, at a capped back-off, without another fault
    assert events.empty()
    id_card_device.resume()
    assert events.get(timeout=WAIT) == DeviceRecovered(device="id_reader.outside")
    polls_go_by(id_card_device, 3)
    assert events.empty()
    assert not reader.faulty


def test_a_silent_reader_is_retried_ever_more_slowly_up_to_the_cap(impatient_reader, id_card_device):
    id_card_device.go_silent()
    start = id_card_device.requests["FIND_CARD"]
    assert id_card_device.wait_for_requests("FIND_CARD", start + 8, WAIT)
    times = [t for t, name in id_card_device.request_log if name == "FIND_CARD"][start:start + 8]
    gaps = [b - a for a, b in zip(times, times[1:])]  # response_timeout 0.1 + back-off 0.02, 0.04 ... 0.3
    assert gaps[-1] > 0.39  # 0.1 + the 0.3 cap: waits are never shorter than asked
    assert gaps[0] < gaps[-1] - 0.1  # slower and slower (0.12 s first, 0.4 s at the cap)
    assert max(gaps) < 1.2  # without the cap the seventh wait alone would be 0.1 + 1.28 s


def test_an_unplugged_reader_is_one_device_fault(make_reader, events):
    device = IdCardDevice()
    make_reader(device.port)
    polls_go_by(device, 2)
    device.close()
    fault = events.get(timeout=WAIT)
    assert isinstance(fault, DeviceFault) and fault.device == "id_reader.outside"
    time.sleep(0.5)
    assert events.empty()


def test_a_card_is_read_after_the_reader_recovers(impatient_reader, id_card_device, events):
    id_card_device.go_silent()
    assert isinstance(events.get(timeout=WAIT), DeviceFault)
    id_card_device.present(CARD)
    id_card_device.resume()
    assert isinstance(events.get(timeout=WAIT), DeviceRecovered)
    assert isinstance(events.get(timeout=WAIT), IdCardRead)


def test_a_port_that_cannot_be_opened_is_one_device_fault(make_reader, events, tmp_path):
    make_reader(str(tmp_path / "ttyUSB9"), side="inside")
    fault = events.get(timeout=WAIT)
    assert fault.device == "id_reader.inside" and "cannot open" in fault.detail
    time.sleep(0.5)
    assert events.empty()


def test_close_stops_the_polling_thread_promptly(make_reader, id_card_device):
    reader = make_reader(id_card_device.port, response_timeout=3.0, name="reader-under-test")
    id_card_device.go_silent()
    assert id_card_device.wait_for_requests("FIND_CARD", 1, WAIT)  # now waiting for an answer
    started = time.monotonic()
    reader.close()
    assert time.monotonic() - started < 1.5  # not the 3 s response timeout, with room for a loaded machine
    assert "reader-under-test" not in [t.name for t in threading.enumerate()]


def test_the_reader_works_as_a_context_manager(id_card_device, events):
    with ResidentIdReader(id_card_device.port, side="inside", post=events.put, poll_interval=0.02) as reader:
        id_card_device.present(CARD)
        assert events.get(timeout=WAIT).side == "inside"
    assert reader.closed


def test_a_wrong_side_is_refused():
    with pytest.raises(ValueError, match="side"):
        ResidentIdReader("/dev/null", side="front", post=print)


def test_a_reader_sending_only_garbage_posts_one_fault_then_recovered_when_frames_return(
        reader, id_card_device, events, caplog):
    id_card_device.talk_garbage()  # e.g. the module set to 9600 baud, the driver at 115200
    fault = events.get(timeout=WAIT)
    assert isinstance(fault, DeviceFault) and fault.device == "id_reader.outside"
    assert f"no valid frame for {GARBLED_POLLS_BEFORE_FAULT} polls" in fault.detail
    assert "baud" in fault.detail
    polls_go_by(id_card_device, 4)  # still garbage: no second fault
    assert events.empty() and reader.faulty
    id_card_device.resume()
    assert events.get(timeout=WAIT) == DeviceRecovered(device="id_reader.outside")
    id_card_device.present(CARD)
    assert events.get(timeout=WAIT).id_number == CARD.id_number
    assert not reader.faulty


def test_a_few_garbled_answers_in_a_row_are_no_outage(reader, id_card_device, events):
    for _ in range(GARBLED_POLLS_BEFORE_FAULT - 1):
        id_card_device.corrupt_next_checksum(on="find")
    polls_go_by(id_card_device, GARBLED_POLLS_BEFORE_FAULT + 2)
    assert id_card_device.injections_pending == 0
    assert events.empty()
