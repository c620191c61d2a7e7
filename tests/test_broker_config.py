"""The venue broker's configuration (deploy/mosquitto) against a real Mosquitto.

Refusals are checked on MQTT 5, where the broker says so: a refused publish gets a
PUBACK with "Not authorized". A message that must *not* arrive is checked by sending
an allowed marker message after it from the same client: once the marker is in,
anything published before it would have been delivered already.
"""

import ssl
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.mosquitto import DEPLOY, SITE, ConnectRefused

NOT_AUTHORIZED = 135
SCAN_ROOM = f"door-{SITE}-scan-room"
VAULT = f"door-{SITE}-vault"


def make_certs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(DEPLOY / "make-certs.sh"), *args], check=True,
                          capture_output=True, text=True)


# ---------------------------------------------------------------- who may connect


def test_anonymous_client_is_refused(mosquitto_broker):
    with pytest.raises(ConnectRefused) as refused:
        mosquitto_broker.connect(None)
    assert refused.value.reason_code == NOT_AUTHORIZED


def test_wrong_password_is_refused(mosquitto_broker):
    with pytest.raises(ConnectRefused) as refused:
        mosquitto_broker.connect(SCAN_ROOM, password="not-the-password")
    # Mosquitto 2.0 answers a bad password with "Not authorized" rather than 134.
    assert refused.value.reason_code.is_failure
    assert refused.value.reason_code.getName() in ("Not authorized", "Bad user name or password")


def test_client_without_a_certificate_is_refused(mosquitto_broker):
    with pytest.raises((ConnectRefused, ssl.SSLError)):
        mosquitto_broker.connect(SCAN_ROOM, client_cert=False)


def test_tls_with_another_sites_ca_fails(mosquitto_broker, tmp_path):
    make_certs("--site", "other-site", "--server-name", "localhost", "--dir", str(tmp_path))
    with pytest.raises(ssl.SSLCertVerificationError):
        mosquitto_broker.connect(SCAN_ROOM, ca_file=tmp_path / "ca.crt")


# ---------------------------------------------------------------- doors write their own topics only


def test_door_event_reaches_the_supervisor(mosquitto_broker):
    b = mosquitto_broker
    supervisor = b.connect()
    supervisor.subscribe(f"{b.prefix}/#")
    door = b.connect(SCAN_ROOM)
    topic = b.topic("scan-room", "events", "access", "passage")

    assert not door.publish(topic, b'{"seq": 1}').is_failure
    [msg] = supervisor.wait_for_messages(1, topic)
    assert msg.payload == b'{"seq": 1}'


@pytest.mark.parametrize("door, parts", [
    ("vault", ("events", "alarm", "door_forced")),
    ("vault", ("status",)),
    ("vault", ("occupancy",)),
    ("vault", ("cmd", "result")),
    ("vault", ("cmd",)),
    ("scan-room", ("cmd",)),  # a door cannot command itself either
    (None, ("time",)),        # nor set the site's time beacon
])
def test_door_publish_outside_its_own_topics_is_not_authorized(mosquitto_broker, door, parts):
    b = mosquitto_broker
    supervisor = b.connect()
    supervisor.subscribe(f"{b.prefix}/#")
    scan_room = b.connect(SCAN_ROOM)
    forbidden = b.topic(door, *parts)
    marker = b.topic("scan-room", "events", "system", "link_up")

    assert scan_room.publish(forbidden, b"forged", retain=parts == ("status",)) == NOT_AUTHORIZED
    scan_room.publish(marker, b"marker")
    supervisor.wait_for_messages(1, marker)
    assert supervisor.received(forbidden) == []


def test_door_does_not_receive_another_doors_commands(mosquitto_broker):
    """Mosquitto 2.0's acl_file grants every SUBSCRIBE; the read rules stop delivery."""
    b = mosquitto_broker
    scan_room = b.connect(SCAN_ROOM)
    scan_room.subscribe(b.topic("vault", "cmd"))
    scan_room.subscribe(b.topic("scan-room", "cmd"))
    supervisor = b.connect()

    supervisor.publish(b.topic("vault", "cmd"), b'{"id": "c1", "action": "lockdown"}')
    supervisor.publish(b.topic("scan-room", "cmd"), b'{"id": "c2", "action": "status"}')
    scan_room.wait_for_messages(1, b.topic("scan-room", "cmd"))
    assert scan_room.received(b.topic("vault", "cmd")) == []


def test_supervisor_command_reaches_the_door(mosquitto_broker):
    b = mosquitto_broker
    vault = b.connect(VAULT)
    vault.subscribe(b.topic("vault", "cmd"))
    supervisor = b.connect()

    assert not supervisor.publish(b.topic("vault", "cmd"), b'{"id": "c1", "action": "status"}').is_failure
    [msg] = vault.wait_for_messages(1, b.topic("vault", "cmd"))
    assert msg.payload == b'{"id": "c1", "action": "status"}'


def test_door_reads_the_retained_site_time_beacon(mosquitto_broker):
    b = mosquitto_broker
    supervisor = b.connect()
    assert not supervisor.publish(b.topic(None, "time"), b'{"ts": "2026-11-23T08:00:00+08:00"}', retain=True).is_failure

    door = b.connect(SCAN_ROOM)
    door.subscribe(b.topic(None, "time"))
    [msg] = door.wait_for_messages(1)
    assert msg.retain and msg.payload == b'{"ts": "2026-11-23T08:00:00+08:00"}'


# ---------------------------------------------------------------- persistence


def test_retained_status_survives_a_broker_restart(mosquitto_broker):
    b = mosquitto_broker
    door = b.connect(SCAN_ROOM)
    status = b.topic("scan-room", "status")
    assert not door.publish(status, b'{"online": true, "last_seq": 7}', retain=True).is_failure
    door.disconnect()

    b.stop()
    b.start()
    supervisor = b.connect()
    supervisor.subscribe(status)
    [msg] = supervisor.wait_for_messages(1, status)
    assert msg.retain and msg.payload == b'{"online": true, "last_seq": 7}'


# ---------------------------------------------------------------- the shipped files and scripts


def test_production_config_has_one_tls_listener_and_no_anonymous_access():
    options = [line.split(None, 1) for line in (DEPLOY / "mosquitto.conf").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    values = {}
    for key, value in options:
        values.setdefault(key, []).append(value.strip())
    assert values["listener"] == ["8883"]
    assert values["allow_anonymous"] == ["false"]
    assert values["tls_version"] == ["tlsv1.2"]
    assert values["require_certificate"] == ["true"]
    assert values["persistence"] == ["true"]
    assert "port" not in values and "bind_address" not in values


def test_make_certs_run_twice_keeps_existing_keys_and_certificates(tmp_path):
    args = ("--site", SITE, "--server-name", "broker.archive.lan", "--ip", "192.168.50.2",
            "--door", "scan-room", "--supervisor", "supervisor", "--dir", str(tmp_path))
    make_certs(*args)
    first = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    make_certs(*args)
    second = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    assert second == first
    assert {n for n in first if n.endswith(".key")} == {
        "ca.key", "server.key", f"{SCAN_ROOM}.key", "supervisor.key"}
    assert all((tmp_path / n).stat().st_mode & 0o777 == 0o600 for n in first if n.endswith(".key"))


def test_make_certs_adds_a_door_without_touching_the_others(tmp_path):
    base = ("--site", SITE, "--server-name", "localhost", "--dir", str(tmp_path))
    make_certs(*base, "--door", "scan-room")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    make_certs(*base, "--door", "scan-room", "--door", "vault")
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    assert {n: after[n] for n in before} == before
    assert set(after) - set(before) == {f"{VAULT}.key", f"{VAULT}.crt"}


def test_add_account_twice_keeps_one_acl_block(tmp_path):
    acl = tmp_path / "acl"
    acl.write_text((DEPLOY / "acl").read_text())
    for password in ("first-password-1", "second-password-2"):
        subprocess.run(["bash", str(DEPLOY / "add-account.sh"), "--passwd", str(tmp_path / "passwd"),
                        "--acl", str(acl), "door", SITE, "vault"],
                       input=password, check=True, capture_output=True, text=True)

    assert acl.read_text().count(f"user {VAULT}\n") == 1
    assert (tmp_path / "passwd").read_text().count(f"{VAULT}:") == 1
