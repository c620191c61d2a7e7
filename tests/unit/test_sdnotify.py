"""The sd_notify protocol against a real AF_UNIX datagram socket standing in for systemd's."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from firmware_py.service.sdnotify import Notifier


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def notify_socket(tmp_path):
    """A bound datagram socket, as systemd's; yields (socket, path)."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(1.0)
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting on the socket."""
    out = []
    sock.settimeout(0.05)
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            return out


def test_ready_sends_ready_1_to_the_notify_socket(notify_socket):
    sock, path = notify_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.ready() is True
    assert sock.recv(4096) == b"READY=1"


def test_watchdog_sends_watchdog_1(notify_socket):
    sock, path = notify_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"})
    assert notifier.watchdog() is True
    assert sock.recv(4096) == b"WATCHDOG=1"


def test_stopping_and_status_are_sent(notify_socket):
    sock, path = notify_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    notifier.status("door open\nlock released")
    notifier.stopping()
    assert received(sock) == ["STATUS=door open lock released", "STOPPING=1"]


def test_watchdog_interval_is_half_of_watchdog_usec():
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "/run/nowhere", "WATCHDOG_USEC": "10000000"})
    assert notifier.watchdog_interval == 5.0


def test_watchdog_interval_is_none_without_a_watchdog():
    assert Notifier.from_env({"NOTIFY_SOCKET": "/run/nowhere"}).watchdog_interval is None


def test_watchdog_of_another_pid_is_not_ours():
    env = {"NOTIFY_SOCKET": "/run/nowhere", "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_env(env).watchdog_interval is None


def test_watchdog_of_this_pid_is_ours():
    env = {"NOTIFY_SOCKET": "/run/nowhere", "WATCHDOG_USEC": "8000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_env(env).watchdog_interval == 4.0


def test_pings_from_a_fast_loop_are_throttled_to_a_tenth_of_the_timeout(notify_socket):
    sock, path = notify_socket
    clock = FakeClock()
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"}, monotonic=clock)
    sent = []
    for _ in range(30):  # 30 loop iterations, 0.1 s apart: 3 s
        sent.append(notifier.watchdog())
        clock.t += 0.1
    assert sum(sent) == 3
    assert received(sock) == ["WATCHDOG=1"] * 3


def test_a_busy_loop_keeps_pinging_well_inside_the_watchdog_interval(notify_socket):
    sock, path = notify_socket
    clock = FakeClock()
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"}, monotonic=clock)
    times = []
    for _ in range(2000):  # 2000 iterations, 5 ms apart
        if notifier.watchdog():
            times.append(clock.t)
        clock.t += 0.005
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) <= notifier.watchdog_interval


def test_abstract_socket_address_starting_with_at_is_reached():
    name = f"accessctl-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(1.0)
    try:
        Notifier.from_env({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_without_notify_socket_every_call_is_a_no_op():
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert [notifier.ready(), notifier.watchdog(), notifier.status("x"), notifier.stopping()] == [False] * 4
    assert notifier.watchdog_interval is None


def test_a_vanished_socket_is_logged_once_and_never_raised(tmp_path, caplog):
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.ready() is False
    assert notifier.stopping() is False
    assert len([r for r in caplog.records if "cannot notify systemd" in r.getMessage()]) == 1
