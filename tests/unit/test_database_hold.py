"""One service per database file, whatever path reaches it (a link, a relative path)."""

import os

import pytest

from firmware_py.errors import StoreError
from firmware_py.storage.db import hold_database


def test_a_second_hold_through_a_symbolic_link_to_the_database_is_refused(tmp_path):
    real = tmp_path / "data" / "events.db"
    real.parent.mkdir()
    real.touch()
    link = tmp_path / "elsewhere.db"
    link.symlink_to(real)
    release = hold_database(real)
    try:
        with pytest.raises(StoreError, match=f"another door service is already running on this database "
                                             rf"\(the file {real}\)"):
            hold_database(link)
    finally:
        release()


def test_a_second_hold_through_a_linked_directory_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "data", target_is_directory=True)
    release = hold_database(tmp_path / "alias" / "events.db")
    try:
        with pytest.raises(StoreError, match="already running"):
            hold_database(tmp_path / "data" / "events.db")
    finally:
        release()


def test_a_second_hold_through_a_relative_path_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    release = hold_database(tmp_path / "events.db")
    try:
        with pytest.raises(StoreError, match="already running"):
            hold_database(os.path.join(".", "events.db"))
    finally:
        release()


def test_the_database_is_free_again_once_released(tmp_path):
    link = tmp_path / "link.db"
    link.symlink_to(tmp_path / "events.db")
    hold_database(link)()
    hold_database(tmp_path / "events.db")()
