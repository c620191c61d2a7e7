"""Changing station accounts in the store (SQLite file): the last admin, disabling, new passwords,
and an archive whose accounts table predates them."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import pytest

from firmware_py.errors import AccountError
from firmware_py.station.accounts import accounts
from firmware_py.station.archive.open import open_station_store
from tests.fixtures.constants import TZ

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)


@pytest.fixture
def store(tmp_path):
    s = open_station_store(tmp_path / "archive.db")
    accounts.add_account(s, "ada", "admin", "admin password", NOW)
    accounts.add_account(s, "victor", "viewer", "viewer password", NOW)
    yield s
    s.close()


def test_the_only_enabled_admin_can_be_neither_disabled_nor_demoted(store):
    for change in ({"disabled": True}, {"role": "operator"}):
        with pytest.raises(AccountError, match="last admin"):
            accounts.change(store, "ada", **change)
    accounts.change(store, "victor", role="admin")
    accounts.change(store, "ada", disabled=True)  # victor is an admin now
    with pytest.raises(AccountError, match="last admin"):
        accounts.change(store, "victor", role="viewer")


def test_a_disabled_account_cannot_log_in_and_its_sessions_end(store):
    session = accounts.open_session(store, "victor", NOW)
    accounts.change(store, "victor", disabled=True)
    assert accounts.find_session(store, session.token, NOW, 3600) is None
    assert accounts.authenticate(store, "victor", "viewer password") is None
    accounts.change(store, "victor", disabled=False)
    assert accounts.authenticate(store, "victor", "viewer password") == "viewer"


def test_a_new_password_replaces_the_old_and_ends_the_sessions(store):
    session = accounts.open_session(store, "victor", NOW)
    accounts.change(store, "victor", password="a new password")
    assert accounts.find_session(store, session.token, NOW, 3600) is None
    assert accounts.authenticate(store, "victor", "viewer password") is None
    assert accounts.authenticate(store, "victor", "a new password") == "viewer"
    with pytest.raises(AccountError, match="8 to 1024"):
        accounts.change(store, "victor", password="short")


def test_an_unknown_account_or_role_changes_nothing(store):
    with pytest.raises(AccountError, match="no such account"):
        accounts.change(store, "nobody", disabled=True)
    with pytest.raises(AccountError, match="not a role"):
        accounts.change(store, "victor", role="root")


def test_the_last_login_is_kept(store):
    store.note_login("victor", NOW)
    assert {a.name: a.last_login for a in store.account_rows()} == {"ada": None, "victor": NOW.isoformat()}


def test_an_accounts_table_made_before_last_login_and_disabled_is_upgraded(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE accounts (name TEXT PRIMARY KEY, role TEXT NOT NULL CHECK (role IN"
                     " ('viewer', 'operator', 'admin')), password_hash TEXT NOT NULL, created_at TEXT NOT NULL)")
        conn.execute("INSERT INTO accounts VALUES ('olga', 'operator', ?, '2026-11-01T08:00:00+08:00')",
                     (accounts.hash_password("operator password"),))
    store = open_station_store(path)
    try:
        (row,) = store.account_rows()
        assert (row.name, row.role, row.last_login, row.disabled) == ("olga", "operator", None, False)
        assert accounts.authenticate(store, "olga", "operator password") == "operator"
    finally:
        store.close()
