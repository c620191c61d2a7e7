"""A door's [roster] keys: both or neither, each file checked at start with a message naming it; the
retired ``signed_commands`` switch is read only to say so."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.config.schema import config_warnings, load_config
from firmware_py.errors import ConfigError
from firmware_py.link.roster_keys import door_keys, key_id
from tests.fixtures.constants import EXAMPLE
from tests.fixtures.roster_bundle import SITE_KEY, write_keys


def config_with(tmp_path, roster: str):
    path = tmp_path / "venue.toml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8") + "\n[roster]\n" + roster, encoding="utf-8")
    return load_config(path)


def test_a_door_without_roster_keys_takes_no_bundles():
    assert door_keys(load_config(EXAMPLE)) is None


def test_a_public_key_without_the_site_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"\[roster\] site_key: station_public_key and site_key go together"):
        config_with(tmp_path, 'station_public_key = "keys/roster-signing.pub"\n')


def test_both_keys_are_read_and_the_site_key_fingerprint_is_known(tmp_path):
    write_keys(tmp_path / "keys", Ed25519PrivateKey.generate())
    cfg = config_with(tmp_path, 'station_public_key = "keys/roster-signing.pub"\nsite_key = "keys/site.key"\n')
    assert door_keys(cfg).key_id == key_id(SITE_KEY)


def test_a_missing_key_file_stops_the_door_with_a_message_naming_it(tmp_path):
    write_keys(tmp_path / "keys", Ed25519PrivateKey.generate())
    cfg = config_with(tmp_path, 'station_public_key = "keys/nothing.pub"\nsite_key = "keys/site.key"\n')
    with pytest.raises(ConfigError, match=r"venue.toml: \[roster\]: .*nothing.pub: cannot read the station public key"):
        door_keys(cfg)


def test_the_station_private_key_in_place_of_its_public_key_is_refused(tmp_path):
    write_keys(tmp_path / "keys", Ed25519PrivateKey.generate())
    (tmp_path / "keys" / "roster-signing.key").chmod(0o644)
    cfg = config_with(tmp_path, 'station_public_key = "keys/roster-signing.key"\nsite_key = "keys/site.key"\n')
    with pytest.raises(ConfigError, match="not a PEM public key"):
        door_keys(cfg)


def test_the_retired_signed_commands_true_without_the_station_key_is_refused_saying_what_to_set(tmp_path):
    with pytest.raises(ConfigError, match=r"\[roster\] signed_commands: commands are checked with the station's "
                                          r"public key: set station_public_key and site_key"):
        config_with(tmp_path, "signed_commands = true\n")


@pytest.mark.parametrize("value", ["true", "false"])
def test_the_retired_signed_commands_beside_the_station_key_is_ignored_with_a_warning_to_remove_it(tmp_path, value):
    write_keys(tmp_path / "keys", Ed25519PrivateKey.generate())
    cfg = config_with(tmp_path, 'station_public_key = "keys/roster-signing.pub"\nsite_key = "keys/site.key"\n'
                                f"signed_commands = {value}\n")
    [warning] = config_warnings(cfg)
    assert f"[roster] signed_commands = {value} is no longer read and is ignored" in warning
    assert "runs only commands the station signed for it, always. Remove the line" in warning


def test_the_retired_signed_commands_false_without_keys_is_ignored_with_a_warning(tmp_path):
    [warning] = config_warnings(config_with(tmp_path, "signed_commands = false\n"))
    assert "runs commands from the broker unsigned, as before. Remove the line" in warning


def test_a_door_config_without_the_retired_setting_has_no_note(tmp_path):
    write_keys(tmp_path / "keys", Ed25519PrivateKey.generate())
    cfg = config_with(tmp_path, 'station_public_key = "keys/roster-signing.pub"\nsite_key = "keys/site.key"\n')
    assert cfg.roster.notes == () and config_warnings(cfg) == []


def test_a_local_import_on_a_door_with_the_station_keys_hashes_under_the_site_key_and_says_a_bundle_replaces_it(
        tmp_path, capsys):
    from firmware_py.cli.main import main
    from firmware_py.core import idnumber
    from firmware_py.storage.db import open_db
    from tests.fixtures.roster import EXAMPLE_ROSTER

    write_keys(tmp_path / "keys", Ed25519PrivateKey.generate())
    text = EXAMPLE.read_text(encoding="utf-8").replace("/var/lib/accessctl/", f"{tmp_path}/state/")
    config = tmp_path / "venue.toml"
    config.write_text(text + '\n[roster]\nstation_public_key = "keys/roster-signing.pub"\nsite_key = "keys/site.key"\n',
                      encoding="utf-8")

    assert main(["roster", "import", str(EXAMPLE_ROSTER), "--config", str(config)]) == 0
    assert "the next bundle the station publishes replaces this import" in capsys.readouterr().out
    db = open_db(tmp_path / "state" / "events.db")
    found = db.execute("SELECT person_id FROM persons WHERE id_hash = ?",
                       (idnumber.id_hash(SITE_KEY, "43010219850312123X"),)).fetchone()
    assert found == ("P001",)
    assert not (tmp_path / "state" / "device.key").exists()
