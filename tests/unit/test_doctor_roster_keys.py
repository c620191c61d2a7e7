"""`accessctl doctor`'s roster key checks (firmware_py/doctor/roster_keys.py) on key files in a temporary
directory and a real SQLite file; the broker's retained manifest is handed in (tests/system/test_doctor_roster.py
reads it from a real Mosquitto)."""

from __future__ import annotations

import os
from datetime import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.config.schema import load_config
from firmware_py.core.clock import SimulatedClock
from firmware_py.doctor.probes import Probes
from firmware_py.doctor.report import FAIL, PASS, WARN, diagnose
from firmware_py.doctor.roster_keys import check_roster_bundle, check_roster_keys
from firmware_py.link.roster_keys import key_id, public_key_id
from firmware_py.storage import roster_bundle as applying
from firmware_py.storage.db import open_db, set_meta
from firmware_py.storage.eventstore import EventStore
from tests.fixtures.constants import EXAMPLE, TZ
from tests.fixtures.roster_bundle import SITE_KEY, person, signed, write_keys

KEY = Ed25519PrivateKey.generate()
KEYS = 'station_public_key = "keys/roster-signing.pub"\nsite_key = "keys/site.key"\n'
NOW = datetime(2026, 11, 23, 9, tzinfo=TZ)


def door_config(tmp_path, roster: str | None = KEYS, key=KEY):
    """The example door's config in ``tmp_path`` (its state there too), with these ``[roster]`` lines."""
    if key is not None:
        write_keys(tmp_path / "keys", key)
    text = EXAMPLE.read_text(encoding="utf-8").replace("/var/lib/accessctl/", f"{tmp_path}/state/")
    text = text.replace('password_file = "/etc/accessctl/mqtt.password"\n', "")  # the broker is handed in
    path = tmp_path / "venue.toml"
    path.write_text(text + (f"\n[roster]\n{roster}" if roster is not None else ""), encoding="utf-8")
    return load_config(path)


def probes(retained: bytes | None = None, *, running: bool = False) -> Probes:
    return Probes(service_user=None, retained_message=lambda settings, topic, *, timeout: retained,
                  door_service_pid=lambda database: 4242 if running else None)


def lines(results, status=None):
    return [r for r in results if status is None or r.status == status]


# ---------------------------------------------------------------- the key files


def test_a_door_without_roster_keys_passes_saying_commands_run_unsigned(tmp_path):
    [result] = check_roster_keys(probes(), door_config(tmp_path, roster=None, key=None))
    assert result.status == PASS and "commands from the broker run unsigned" in result.message


def test_keys_installed_beside_the_config_but_not_named_in_it_are_a_warning_saying_what_to_add(tmp_path):
    cfg = door_config(tmp_path, roster=None, key=None)
    (tmp_path / "roster-signing.pub").write_text("-----BEGIN PUBLIC KEY-----\n")
    [result] = check_roster_keys(probes(), cfg)
    assert result.status == WARN and "has no [roster] naming them" in result.message
    assert f'station_public_key = "{tmp_path / "roster-signing.pub"}"' in result.action


def test_good_keys_pass_with_the_fingerprints_the_station_printed(tmp_path):
    public, site = check_roster_keys(probes(), door_config(tmp_path))
    assert (public.status, site.status) == (PASS, PASS)
    assert f"fingerprint {public_key_id(KEY.public_key())}" in public.message
    assert f"key id {key_id(SITE_KEY)}" in site.message and "mode 0600" in site.message


def test_a_missing_public_key_fails_saying_how_to_install_it(tmp_path):
    cfg = door_config(tmp_path)
    (tmp_path / "keys" / "roster-signing.pub").unlink()
    public, _ = check_roster_keys(probes(), cfg)
    assert public.status == FAIL and "does not exist: the door would not start" in public.message
    assert "deploy/install.sh --station-public-key FILE" in public.action


def test_the_station_private_key_in_place_of_the_public_key_fails_and_says_to_destroy_it_and_rotate(tmp_path):
    cfg = door_config(tmp_path, roster=KEYS.replace("roster-signing.pub", "roster-signing.key"))
    public, _ = check_roster_keys(probes(), cfg)
    assert public.status == FAIL and "is the station's PRIVATE signing key" in public.message
    assert public.action.startswith(f"shred -u {tmp_path / 'keys' / 'roster-signing.key'} now")


def test_a_public_key_file_that_is_not_a_pem_key_fails(tmp_path):
    cfg = door_config(tmp_path)
    (tmp_path / "keys" / "roster-signing.pub").write_text("hello\n")
    public, _ = check_roster_keys(probes(), cfg)
    assert public.status == FAIL and "not a PEM public key" in public.message


def test_a_public_key_others_may_replace_fails(tmp_path):
    cfg = door_config(tmp_path)
    (tmp_path / "keys" / "roster-signing.pub").chmod(0o666)
    public, _ = check_roster_keys(probes(), cfg)
    assert public.status == FAIL and "others may replace the key the door trusts" in public.message


def test_a_world_readable_site_key_fails_and_says_to_make_it_private_and_consider_it_leaked(tmp_path):
    cfg = door_config(tmp_path)
    (tmp_path / "keys" / "site.key").chmod(0o644)
    _, site = check_roster_keys(probes(), cfg)
    assert site.status == FAIL and "has mode 0644: everyone may read the site roster key" in site.message
    assert "chmod 600" in site.action and "rotate" in site.action


def test_a_site_key_of_the_wrong_size_fails(tmp_path):
    cfg = door_config(tmp_path)
    (tmp_path / "keys" / "site.key").write_bytes(b"0123456789abcdef")
    _, site = check_roster_keys(probes(), cfg)
    assert site.status == FAIL and "is 16 bytes, not 32" in site.message


def test_a_site_key_the_service_user_cannot_read_fails(tmp_path):
    cfg = door_config(tmp_path)
    path = tmp_path / "keys" / "site.key"
    if os.geteuid() == 0:  # root reads anything: ask for the service user's view, as on the Pi
        check, expected = Probes(service_user="nobody"), "the service user nobody cannot"
    else:
        path.chmod(0o000)
        check, expected = probes(), "cannot read the site roster key"
    _, site = check_roster_keys(check, cfg)
    assert site.status == FAIL and expected in site.message


def test_the_retired_signed_commands_line_is_a_config_warning_of_the_doctor(tmp_path):
    cfg = door_config(tmp_path, roster=KEYS + "signed_commands = true\n")
    results = diagnose(cfg.path, probes=probes())
    [note] = [r for r in results if r.check == "config" and r.status == WARN]
    assert "signed_commands = true is no longer read and is ignored" in note.message


# ---------------------------------------------------------------- the key against the door's bundle


@pytest.fixture
def applied_door(tmp_path):
    """A door with the keys whose database has applied the station's version 5."""
    cfg = door_config(tmp_path)
    bundle = signed(tmp_path, [person(1)], key=KEY, version=5)
    from tests.fixtures.roster_bundle import assembled

    manifest, _ = assembled(bundle, KEY.public_key())
    cfg.storage.database.parent.mkdir(parents=True, exist_ok=True)
    db = open_db(cfg.storage.database)
    set_meta(db, applying.APPLIED, {"version": 5, "sha256": manifest.sha256, "applied_at": NOW.isoformat()})
    db.conn.close()
    return cfg, bundle


def test_the_applied_bundle_retained_at_the_broker_verifies_with_the_key(applied_door):
    cfg, bundle = applied_door
    [result] = check_roster_bundle(probes(bundle.manifest), cfg)
    assert result.status == PASS
    assert result.message.startswith("the applied roster version 5 verifies with the station's public key")


def test_a_bundle_signed_by_another_key_at_the_broker_fails_as_the_door_would_reject_it(applied_door, tmp_path):
    cfg, _ = applied_door
    rotated = signed(tmp_path, [person(1)], key=Ed25519PrivateKey.generate(), version=6)
    [result] = check_roster_bundle(probes(rotated.manifest), cfg)
    assert result.status == FAIL and "does not verify with [roster] station_public_key" in result.message
    assert "rejects it (bad_signature) and keeps its roster (version 5)" in result.message
    assert "install the station's current roster-signing.pub" in result.action


def test_a_bundle_hashed_under_another_site_key_fails_as_other_key(applied_door, tmp_path):
    cfg, _ = applied_door
    other = signed(tmp_path, [person(1)], key=KEY, version=6, site_key=bytes(range(1, 33)))
    [result] = check_roster_bundle(probes(other.manifest), cfg)
    assert result.status == FAIL and "the door rejects it (other_key)" in result.message


def test_no_roster_at_the_broker_is_a_warning(applied_door):
    cfg, _ = applied_door
    [result] = check_roster_bundle(probes(None), cfg)
    assert result.status == WARN and "the broker holds no roster for site" in result.message


def test_while_the_door_runs_its_latest_bad_signature_rejection_is_a_failure(applied_door):
    cfg, _ = applied_door
    db = open_db(cfg.storage.database)
    store = EventStore(db, site="hn-archive-1", door="scan-room", clock=SimulatedClock(NOW))
    store.append("system", "roster_rejected", detail={"reason": "bad_signature", "message": "the manifest's "
                                                      "signature does not verify with the station's public key"})
    db.conn.close()
    [result] = check_roster_bundle(probes(running=True), cfg)
    assert result.status == FAIL and "latest roster event is roster_rejected (bad_signature)" in result.message
    assert "it keeps version 5" in result.message
