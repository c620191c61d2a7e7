"""The reader guard (GB 50396-2007 5.1.5-1): repeated denials at one reader lock it for a while."""

import pytest

from firmware_py.core.reader_guard import ReaderGuard


@pytest.fixture
def guard():
    return ReaderGuard(max_failures=3, window_s=60, lockout_s=60)


def test_denials_below_the_limit_leave_the_reader_open(guard):
    assert guard.denied("badge_reader.outside", "04****01", 0) is None
    assert guard.denied("badge_reader.outside", "04****02", 1) is None
    assert not guard.locked("badge_reader.outside", 2)


def test_the_third_denial_in_the_window_returns_the_run_and_locks_the_reader(guard):
    guard.denied("r", "a", 0)
    guard.denied("r", "b", 10)
    assert guard.denied("r", "c", 20) == ["a", "b", "c"]
    assert guard.locked("r", 21)


def test_the_lock_ends_after_the_lockout(guard):
    for t in (0, 1, 2):
        guard.denied("r", "x", t)
    assert guard.locked("r", 61)
    assert not guard.locked("r", 62)


def test_denials_older_than_the_window_do_not_count(guard):
    guard.denied("r", "a", 0)
    guard.denied("r", "b", 1)
    assert guard.denied("r", "c", 70) is None
    assert not guard.locked("r", 71)


def test_a_grant_resets_the_count_at_that_reader(guard):
    guard.denied("r", "a", 0)
    guard.denied("r", "b", 1)
    guard.granted("r")
    assert guard.denied("r", "c", 2) is None


def test_each_reader_is_counted_on_its_own(guard):
    guard.denied("outside", "a", 0)
    guard.denied("outside", "b", 1)
    assert guard.denied("inside", "c", 2) is None
    assert not guard.locked("outside", 3) and not guard.locked("inside", 3)
