"""`accessctl station roster keygen` (firmware_py/station/roster/keys.py): the site's keys, never overwritten."""

from __future__ import annotations

import stat

import pytest

from firmware_py.cli.main import main
from firmware_py.errors import ConfigError
from firmware_py.link.roster_keys import key_id, load_public_key, load_signing_key, load_site_key, public_key_id
from firmware_py.station.roster.keys import make_keys


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keygen_makes_a_signing_pair_and_a_site_key_that_the_door_loaders_accept(tmp_path, capsys):
    assert main(["station", "roster", "keygen", "--dir", str(tmp_path / "keys")]) == 0
    keys = tmp_path / "keys"
    private, public = load_signing_key(keys / "roster-signing.key"), load_public_key(keys / "roster-signing.pub")
    public.verify(private.sign(b"lockdown"), b"lockdown")  # the pair belongs together
    site = load_site_key(keys / "site-roster.key")
    assert (mode(keys / "roster-signing.key"), mode(keys / "roster-signing.pub"),
            mode(keys / "site-roster.key")) == (0o600, 0o644, 0o600)
    out = capsys.readouterr().out
    assert f"station public key fingerprint {public_key_id(public)}" in out
    assert f"site roster key id {key_id(site)}" in out


def test_keygen_never_overwrites_a_key_and_writes_nothing_when_one_is_there(tmp_path):
    first = make_keys(tmp_path)
    before = first.site_key.read_bytes()
    (tmp_path / "roster-signing.key").unlink()
    (tmp_path / "roster-signing.pub").unlink()
    with pytest.raises(ConfigError, match=r"site-roster.key exists: keygen never overwrites a key. To rotate"):
        make_keys(tmp_path)
    assert first.site_key.read_bytes() == before
    assert not (tmp_path / "roster-signing.key").exists()


def test_keygen_only_site_makes_just_the_site_key_beside_the_old_signing_pair(tmp_path):
    old = make_keys(tmp_path / "2026")
    new = make_keys(tmp_path / "2027", kinds=("site",))
    assert new.written == (tmp_path / "2027" / "site-roster.key",) and new.public_key_id is None
    assert new.site_key_id != old.site_key_id
