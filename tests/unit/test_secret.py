"""The device secret file: created 0600 once, refused when unsafe, never silently replaced."""

import os
import stat

import pytest

from firmware_py.errors import AccessCtlError, SecretError
from firmware_py.storage.secret import load_or_create_secret


def test_the_secret_is_created_with_mode_0600_in_a_new_directory(tmp_path):
    path = tmp_path / "var" / "lib" / "accessctl" / "device.key"
    secret = load_or_create_secret(path)
    assert len(secret) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == secret


def test_the_secret_is_created_0600_even_with_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        load_or_create_secret(tmp_path / "device.key")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "device.key").stat().st_mode) == 0o600


def test_the_secret_is_reused_on_the_next_start(tmp_path):
    first = load_or_create_secret(tmp_path / "device.key")
    assert load_or_create_secret(tmp_path / "device.key") == first


def test_two_devices_get_different_secrets(tmp_path):
    assert load_or_create_secret(tmp_path / "a.key") != load_or_create_secret(tmp_path / "b.key")


def test_a_secret_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "device.key"
    load_or_create_secret(path)
    path.chmod(0o644)
    with pytest.raises(SecretError, match="mode 0644.*chmod 600"):
        load_or_create_secret(path)


def test_a_secret_of_the_wrong_size_is_refused_not_replaced(tmp_path):
    path = tmp_path / "device.key"
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(SecretError, match="5 bytes, not 32"):
        load_or_create_secret(path)
    assert path.read_bytes() == b"short"


def test_a_secret_error_is_shown_to_the_user_as_a_store_problem():
    assert issubclass(SecretError, AccessCtlError)


def test_no_temporary_file_is_left_next_to_the_secret(tmp_path):
    load_or_create_secret(tmp_path / "device.key")
    assert [p.name for p in tmp_path.iterdir()] == ["device.key"]


