"""Station accounts, sessions, login throttling and the records that are never deleted, on a real SQLite file."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

import pytest

from firmware_py.errors import AccountError
from firmware_py.station.accounts import accounts, audit
from firmware_py.station.accounts.accounts import role_allows
from firmware_py.station.archive.open import open_station_store
from firmware_py.station.web import alarms
from firmware_py.station.web.throttle import LoginThrottle
from tests.fixtures.constants import TZ

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)


@pytest.fixture
def store(tmp_path):
    s = open_station_store(tmp_path / "archive.db")
    yield s
    s.close()


def test_a_password_is_kept_as_a_salted_scrypt_hash_with_its_parameters(store):
    accounts.add_account(store, "alice", "viewer", "same password", NOW)
    accounts.add_account(store, "bob", "viewer", "same password", NOW)
    hashes = [h for (h,) in store.query("SELECT password_hash FROM accounts ORDER BY name")]
    assert all(h.startswith("scrypt$32768$8$1$") for h in hashes)
    assert hashes[0] != hashes[1]  # salted
    assert not any("same password" in h for h in hashes)


def test_the_right_password_gives_the_accounts_role_and_a_wrong_one_nothing(store):
    accounts.add_account(store, "olga", "operator", "right password", NOW)
    assert accounts.authenticate(store, "olga", "right password") == "operator"
    assert accounts.authenticate(store, "olga", "wrong password") is None
    assert accounts.authenticate(store, "nobody", "right password") is None


def test_an_account_name_is_taken_only_once(store):
    accounts.add_account(store, "olga", "operator", "right password", NOW)
    with pytest.raises(AccountError, match="already exists"):
        accounts.add_account(store, "olga", "admin", "other password", NOW)
    assert accounts.accounts(store) == [("olga", "operator", NOW.isoformat(timespec="seconds"))]


@pytest.mark.parametrize("name, role, password, message", [
    ("olga", "operator", "short", "8 to 1024 characters"),
    ("olga", "root", "long enough", "not a role"),
    ("olga smith", "viewer", "long enough", "not an account name"),
    ("", "viewer", "long enough", "not an account name"),
])
def test_a_bad_name_role_or_short_password_is_refused(store, name, role, password, message):
    with pytest.raises(AccountError, match=message):
        accounts.add_account(store, name, role, password, NOW)
    assert accounts.accounts(store) == []


def test_roles_are_ordered_viewer_then_operator_then_admin():
    assert role_allows("admin", "operator") and role_allows("operator", "operator") and role_allows("viewer", "viewer")
    assert not role_allows("viewer", "operator") and not role_allows("operator", "admin")
    assert not role_allows("root", "viewer")


def test_a_session_is_found_by_its_token_which_the_table_keeps_only_as_a_hash(store):
    accounts.add_account(store, "olga", "operator", "right password", NOW)
    session = accounts.open_session(store, "olga", NOW)
    found = accounts.find_session(store, session.token, NOW + timedelta(minutes=5), 3600)
    assert (found.name, found.role, found.csrf) == ("olga", "operator", session.csrf)
    assert store.one("SELECT count(*) FROM sessions WHERE token_hash=?", (session.token,))[0] == 0
    assert accounts.find_session(store, session.token[:-1] + "x", NOW, 3600) is None


def test_a_session_unused_longer_than_the_idle_limit_ends(store):
    accounts.add_account(store, "olga", "operator", "right password", NOW)
    session = accounts.open_session(store, "olga", NOW)
    assert accounts.find_session(store, session.token, NOW + timedelta(minutes=50), 3600)
    assert accounts.find_session(store, session.token, NOW + timedelta(minutes=111), 3600) is None
    assert accounts.find_session(store, session.token, NOW + timedelta(minutes=112), 3600) is None


def test_a_closed_session_no_longer_logs_in(store):
    accounts.add_account(store, "olga", "operator", "right password", NOW)
    session = accounts.open_session(store, "olga", NOW)
    accounts.close_session(store, session.token)
    assert accounts.find_session(store, session.token, NOW, 3600) is None


class FakeMonotonic:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_five_attempts_for_a_name_make_the_next_wait_sixty_seconds():
    clock = FakeMonotonic()
    throttle = LoginThrottle(monotonic=clock)
    assert [throttle.begin(["user:olga"]) for _ in range(5)] == [0] * 5  # each counted as it starts
    assert throttle.begin(["user:olga", "address:10.0.0.9"]) == 60
    assert throttle.begin(["user:victor"]) == 0
    clock.t += 60.5
    assert throttle.begin(["user:olga"]) == 0


def test_attempts_spread_wider_than_the_window_do_not_lock_out():
    clock = FakeMonotonic()
    throttle = LoginThrottle(monotonic=clock, window_s=300)
    for _ in range(10):
        assert throttle.begin(["user:olga"]) == 0
        clock.t += 100


def test_a_success_clears_the_names_attempts_and_gives_the_address_its_attempt_back():
    clock = FakeMonotonic()
    throttle = LoginThrottle(monotonic=clock)
    for _ in range(4):
        throttle.begin(["user:olga", "address:10.0.0.9"])
    throttle.succeeded("user:olga", "address:10.0.0.9")
    for _ in range(5):  # a name that logged in starts afresh
        assert throttle.begin(["user:olga"]) == 0
    # the address keeps its 3 failed attempts: two more may start, then it waits
    assert [throttle.begin(["address:10.0.0.9"]) for _ in range(3)] == [0, 0, 60]


def test_a_login_that_succeeds_every_time_never_locks_its_address():
    throttle = LoginThrottle(monotonic=FakeMonotonic())
    for _ in range(20):
        assert throttle.begin(["user:olga", "address:10.0.0.9"]) == 0
        throttle.succeeded("user:olga", "address:10.0.0.9")


def test_no_more_passwords_are_checked_at_once_than_the_slots():
    throttle = LoginThrottle(max_checks=2)
    with throttle.password_check() as first, throttle.password_check() as second:
        with throttle.password_check() as third:
            assert (first, second, third) == (True, True, False)
    with throttle.password_check() as again:
        assert again


def test_the_throttle_forgets_stale_names_and_addresses():
    clock = FakeMonotonic()
    throttle = LoginThrottle(monotonic=clock, window_s=300, lockout_s=60)
    for i in range(12_000):
        throttle.begin([f"address:10.{i // 256}.{i % 256}.1"])
    clock.t += 400
    throttle.begin(["address:192.0.2.1"])
    assert len(throttle._attempts) + len(throttle._locked_until) < 100


def test_the_audit_trail_can_be_neither_changed_nor_deleted(store):
    audit.record(store, at=NOW, who="olga", address="127.0.0.1", action="POST /x", detail={"a": 1}, result="303")
    for sql in ("DELETE FROM audit", "UPDATE audit SET who='mallory'"):
        with pytest.raises(sqlite3.IntegrityError, match="never"):
            store.conn.execute(sql)
    entries = [(e.who, e.action, e.detail, e.result) for e in audit.entries(store)]
    assert entries == [("olga", "POST /x", {"a": 1}, "303")]


def test_an_acknowledgement_can_be_neither_changed_nor_deleted(store):
    store.conn.execute("INSERT INTO acknowledgements VALUES ('s', 'd', 1, 1, 'olga', 'now', 'checked')")
    for sql in ("DELETE FROM acknowledgements", "UPDATE acknowledgements SET comment='nothing'"):
        with pytest.raises(sqlite3.IntegrityError, match="never"):
            store.conn.execute(sql)


def test_an_acknowledgement_needs_a_comment(store):
    with pytest.raises(alarms.AlarmError, match="comment"):
        alarms.acknowledge(store, "s", "d", 1, 1, "olga", "   ", NOW)
