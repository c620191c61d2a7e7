"""`accessctl-sim fleet --roster-keys DIR`: every simulated door gets the station's roster keys as its [roster]."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.config.schema import load_config
from firmware_py.link.roster_keys import door_keys, key_id
from simulator.fleet import BASE_CONFIG
from simulator.fleet_door import door_config
from tests.fixtures.roster_bundle import SITE_KEY, write_keys


def fleet_door(tmp_path: Path, roster_keys: Path | None):
    return door_config(load_config(BASE_CONFIG), 7, db_dir=tmp_path / "doors", broker="mqtt://127.0.0.1:1883",
                       protocol=5, roster_keys=roster_keys)


def test_a_fleet_door_given_roster_keys_reads_the_files_commissioning_names(tmp_path):
    key = Ed25519PrivateKey.generate()
    keys = tmp_path / "keys"
    _, public, site = write_keys(keys, key)
    (keys / "site.key").rename(keys / "site-roster.key")  # the commissioning guide's name for it

    cfg = fleet_door(tmp_path, keys)

    assert (cfg.roster.station_public_key, cfg.roster.site_key) == (public, keys / "site-roster.key")
    loaded = door_keys(cfg)
    assert loaded.key_id == key_id(SITE_KEY)
    assert loaded.public_key.public_bytes_raw() == key.public_key().public_bytes_raw()


def test_a_fleet_door_without_roster_keys_takes_no_station_roster(tmp_path):
    assert door_keys(fleet_door(tmp_path, None)) is None
