"""BadgeReader end to end: VirtualBadge -> vpcd -> real pcscd -> pyscard -> BadgeReader."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import time

import pytest

from drivers.badge_reader import BadgeReader, BadgeResponseError, uid_from_response
from firmware_py.core.inputs import BadgeRead, DeviceFault, DeviceRecovered
from simulator.pcsc_stack import find_pcscd, find_vpcd_driver, free_port_pair
from simulator.virtual_badge import VirtualBadge
from tests.fixtures.constants import REPO
from tests.fixtures.pcscd import wait_until_empty

SYSTEM_SOCKET = "/run/pcscd/pcscd.comm"

OUTSIDE, INSIDE = "Virtual PCD 00 00", "Virtual PCD 00 01"  # vpcd's card ports: pcscd.port_of(...)
UID = "04A1B2C3D4E5F6"  # synthetic 7-byte ISO 14443 A UID
CLOSE_BOUND_S = 2.0  # "prompt" against the 5 s poll and back-off below, with room for a loaded machine


def next_event(events: queue.Queue, timeout: float = 3.0):
    return events.get(timeout=timeout)


def assert_quiet(events: queue.Queue, seconds: float) -> None:
    try:
        event = events.get(timeout=seconds)
    except queue.Empty:
        return
    pytest.fail(f"unexpected event {event!r}")


@pytest.fixture
def events() -> queue.Queue:
    return queue.Queue()


@pytest.fixture
def outside_reader(pcscd, events):
    assert wait_until_empty("Virtual PCD 00 00")  # the last test's badge has left
    with BadgeReader("Virtual PCD 00 00", side="outside", post=events.put, poll_interval=0.1,
                     max_backoff=0.4) as reader:
        assert reader.wait_ready(3.0)
        yield reader


# ------------------------------------------------------------ pure functions

def test_uid_is_upper_case_hex_without_spaces():
    assert uid_from_response([0x04, 0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6, 0x90, 0x00]) == "04A1B2C3D4E5F6"


def test_four_and_ten_byte_uids_are_accepted():
    assert uid_from_response(bytes.fromhex("DEADBEEF9000")) == "DEADBEEF"
    assert uid_from_response(bytes.fromhex("0102030405060708090A9000")) == "0102030405060708090A"


@pytest.mark.parametrize("response", [b"", b"\x90", b"\x90\x00", bytes.fromhex("0102039000"),
                                      bytes.fromhex("01020304050607080910119000")],
                         ids=["empty", "one byte", "status only", "3-byte uid", "11-byte uid"])
def test_responses_of_impossible_length_are_rejected(response):
    with pytest.raises(BadgeResponseError):
        uid_from_response(response)


def test_an_error_status_is_rejected_with_the_status_in_the_message():
    with pytest.raises(BadgeResponseError, match="6A 81"):
        uid_from_response(bytes.fromhex("6A81"))


def test_reader_rejects_an_unknown_side():
    with pytest.raises(ValueError, match="side"):
        BadgeReader("ACR122U", side="roof", post=print)


# ------------------------------------------------------- through real pcscd

def test_a_tapped_badge_posts_its_uid_once(pcscd, outside_reader, events):
    badge = VirtualBadge(UID.lower(), port=pcscd.port_of(OUTSIDE))
    assert badge.tap(hold=0.9)  # held over two of pcscd's presence polls
    assert next_event(events) == BadgeRead(side="outside", uid=UID)
    assert_quiet(events, 0.5)
    assert badge.uids_read == 1


def test_a_second_tap_posts_again(pcscd, outside_reader, events):
    badge = VirtualBadge(UID, port=pcscd.port_of(OUTSIDE))
    badge.tap()
    assert next_event(events) == BadgeRead(side="outside", uid=UID)
    badge.tap()
    assert next_event(events) == BadgeRead(side="outside", uid=UID)


def test_card_to_post_latency_is_under_a_second(pcscd, outside_reader, events):
    badge = VirtualBadge("DEADBEEF", port=pcscd.port_of(OUTSIDE))
    latencies = []
    for _ in range(3):
        assert wait_until_empty("Virtual PCD 00 00")
        started = time.monotonic()
        badge.insert()
        assert next_event(events) == BadgeRead(side="outside", uid="DEADBEEF")
        latencies.append(time.monotonic() - started)
        badge.remove()
    print(f"card-to-post latency: {', '.join(f'{s * 1000:.0f} ms' for s in latencies)}")
    assert max(latencies) < 1.0


def test_the_inside_reader_is_selected_by_name_substring_and_reports_inside(pcscd, events):
    assert wait_until_empty("Virtual PCD 00 01")
    with BadgeReader("PCD 00 01", side="inside", post=events.put, poll_interval=0.1) as reader:
        assert reader.wait_ready(3.0)
        assert reader.reader == "Virtual PCD 00 01"
        VirtualBadge("0102030405060708", port=pcscd.port_of(INSIDE)).tap()
        assert next_event(events) == BadgeRead(side="inside", uid="0102030405060708")


def test_a_card_answering_an_error_is_skipped(pcscd, outside_reader, events):
    assert VirtualBadge(UID, port=pcscd.port_of(OUTSIDE), uid_status=0x6A81).tap()
    assert_quiet(events, 0.3)
    VirtualBadge("DEADBEEF", port=pcscd.port_of(OUTSIDE)).tap()
    assert next_event(events) == BadgeRead(side="outside", uid="DEADBEEF")


def test_a_card_removed_while_it_is_read_is_skipped(pcscd, outside_reader, events):
    assert VirtualBadge(UID, port=pcscd.port_of(OUTSIDE), drop_on_read=True).tap()
    assert_quiet(events, 0.3)
    VirtualBadge("DEADBEEF", port=pcscd.port_of(OUTSIDE)).tap()
    assert next_event(events) == BadgeRead(side="outside", uid="DEADBEEF")


def test_pcscd_going_away_posts_one_fault_then_recovery_and_cards_read_again(pcscd, outside_reader, events):
    with pcscd.unplugged():
        fault = next_event(events)
        assert isinstance(fault, DeviceFault) and fault.device == "badge_reader.outside"
        assert "pcscd" in fault.detail
        assert_quiet(events, 1.0)  # several retries, still one fault
    assert next_event(events) == DeviceRecovered(device="badge_reader.outside")
    VirtualBadge(UID, port=pcscd.port_of(OUTSIDE)).tap()
    assert next_event(events) == BadgeRead(side="outside", uid=UID)


def test_a_reader_missing_from_a_running_pcscd_is_one_fault_until_plugged_back(pcscd, outside_reader, events):
    with pcscd.unplugged():
        assert isinstance(next_event(events), DeviceFault)
        pcscd.start(readers=False)  # the service is back, the reader is not
        assert_quiet(events, 1.0)  # neither recovered nor a second fault
        assert outside_reader.faulted
    assert next_event(events) == DeviceRecovered(device="badge_reader.outside")
    VirtualBadge(UID, port=pcscd.port_of(OUTSIDE)).tap()
    assert next_event(events) == BadgeRead(side="outside", uid=UID)


def test_a_reader_started_without_its_reader_posts_a_fault(pcscd, events):
    with BadgeReader("ACR122U", side="outside", post=events.put, poll_interval=0.1) as reader:
        fault = next_event(events)
        assert fault == DeviceFault(device="badge_reader.outside", detail=fault.detail)
        assert "ACR122U" in fault.detail and "Virtual PCD 00 00" in fault.detail
        assert not reader.wait_ready(0.2)


def test_close_is_prompt(pcscd, events):
    reader = BadgeReader("Virtual PCD 00 00", side="outside", post=events.put, poll_interval=5.0,
                         max_backoff=5.0).start()
    assert reader.wait_ready(3.0)
    started = time.monotonic()
    reader.close()
    assert time.monotonic() - started < CLOSE_BOUND_S


def test_close_is_prompt_while_the_reader_is_missing(pcscd, events):
    reader = BadgeReader("ACR122U", side="outside", post=events.put, poll_interval=5.0, max_backoff=5.0)
    reader.start()
    next_event(events)  # the fault: now it is backing off
    started = time.monotonic()
    reader.close()
    assert time.monotonic() - started < CLOSE_BOUND_S


# ------------------------------------------------- beside another pcscd on the machine


def _serving(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(path)
        except OSError:
            return False
        return True


def _readers_of(socket_path: str) -> str:
    """What a PC/SC client of the pcscd at ``socket_path`` lists (in a fresh process: libpcsclite
    reads PCSCLITE_CSOCK_NAME once per process)."""
    return subprocess.run([sys.executable, "-c", "from smartcard.System import readers; print(readers())"],
                          env=os.environ | {"PCSCLITE_CSOCK_NAME": socket_path}, capture_output=True, text=True,
                          timeout=20).stdout


@pytest.fixture
def decoy_pcscd(pcscd, tmp_path):
    """Another pcscd on this machine, as Debian's own would run: in /run/pcscd, with vpcd's readers.

    Started here unless the machine's /run/pcscd is served already (then that one is the neighbour,
    its card ports unknown: None)."""
    if _serving(SYSTEM_SOCKET):
        yield None
        return
    port = free_port_pair()
    conf = tmp_path / "decoy.conf.d"
    conf.mkdir()
    (conf / "vpcd").write_text(f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:{port}\n'
                               f"LIBPATH {find_vpcd_driver()}\nCHANNELID 0x8C7B\n")
    with open(tmp_path / "decoy.log", "wb") as log:
        proc = subprocess.Popen([find_pcscd(), "--foreground", "--config", str(conf)], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while "Virtual PCD 00 00" not in _readers_of(SYSTEM_SOCKET):
            assert proc.poll() is None, (tmp_path / "decoy.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "the decoy pcscd did not come up"
            time.sleep(0.1)
        yield {"Virtual PCD 00 00": port, "Virtual PCD 00 01": port + 1}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_this_sessions_pcscd_runs_beside_another_and_neither_reads_the_others_badges(pcscd, decoy_pcscd,
                                                                                     outside_reader, events):
    assert _serving(SYSTEM_SOCKET) and pcscd.running
    assert str(pcscd.socket_path) != SYSTEM_SOCKET
    assert "Virtual PCD 00 00" in _readers_of(str(pcscd.socket_path))
    if decoy_pcscd is not None:  # a badge held to the neighbour's reader is not read here
        assert decoy_pcscd["Virtual PCD 00 00"] != pcscd.port_of(OUTSIDE)
        with VirtualBadge("0A0B0C0D", port=decoy_pcscd["Virtual PCD 00 00"]) as badge:
            deadline = time.monotonic() + 3
            while not badge.powered:  # the neighbour's pcscd has it on its reader
                assert time.monotonic() < deadline, "the neighbour's pcscd did not power the badge"
                time.sleep(0.02)
            assert_quiet(events, 1.0)  # two of pcscd's presence polls, and nothing read here
    assert VirtualBadge(UID, port=pcscd.port_of(OUTSIDE)).tap(hold=0.9)
    assert next_event(events) == BadgeRead(side="outside", uid=UID)


def test_a_test_session_started_beside_another_pcscd_skips_nothing(decoy_pcscd, tmp_path):
    assert _serving(SYSTEM_SOCKET)  # the neighbour is there while a whole new session starts its own
    run = subprocess.run([sys.executable, "-m", "pytest", "tests/system/test_badge_reader.py", "-q", "-rs",
                          "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "inner"),
                          "-k", "tapped_badge or inside_reader or going_away"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout and "skipped" not in run.stdout, run.stdout
