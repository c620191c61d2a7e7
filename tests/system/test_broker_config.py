"""The venue broker's configuration (deploy/mosquitto) against a real Mosquitto.

Refusals are checked on MQTT 5, where the broker says so: a refused publish gets a
PUBACK with "Not authorized". A message that must *not* arrive is checked by sending
an allowed marker message after it from the same client: once the marker is in,
anything published before it would have been delivered already.
"""

import json
import queue
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from firmware_py.link.door_link import MqttLink
from simulator.crash.link_child import account_config, store_events
from simulator.lab_broker import DEPLOY, SITE, SUPERVISOR, ConnectRefused, door_username
from tests.fixtures.constants import REPO

NOT_AUTHORIZED = 135
SCAN_ROOM = door_username("scan-room")
VAULT = door_username("vault")
MAX_PACKET_SIZE = 4 * 1024 * 1024 + 64 * 1024  # mosquitto.conf max_packet_size
ROSTER_PAYLOAD_MAX = 4 * 1024 * 1024  # what it is sized for (a roster bundle)


def make_certs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(DEPLOY / "make-certs.sh"), *args], check=True,
                          capture_output=True, text=True)


def add_account(acl: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(DEPLOY / "add-account.sh"), "--acl", str(acl), *args], check=check,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def acl_blocks(acl: Path) -> dict[str, list[str]]:
    """username -> its rule lines, as Mosquitto reads the file."""
    blocks: dict[str, list[str]] = {}
    user = None
    for line in acl.read_text().splitlines():
        if line.startswith("user "):
            user = line.split(None, 1)[1]
            blocks.setdefault(user, [])
        elif line.startswith("topic ") and user is not None:
            blocks[user].append(line)
    return blocks


def count_drops(client) -> list:
    """Record every disconnection ``client`` suffers from now on (paho reconnects by itself)."""
    drops: list = []
    recorder = client.paho.on_disconnect

    def on_disconnect(c, userdata, flags, reason_code, properties):
        drops.append(reason_code)
        recorder(c, userdata, flags, reason_code, properties)
    client.paho.on_disconnect = on_disconnect
    return drops


def vm_hwm_kb(pid: int) -> int:
    """Peak resident set of process ``pid`` (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


# ---------------------------------------------------------------- who may connect: the certificate is the account


def test_a_certificate_without_a_username_logs_in_as_the_account_it_names(mosquitto_broker):
    b = mosquitto_broker
    client = b.connect(None, certificate=b.door("scan-room"))
    supervisor = b.connect()
    supervisor.subscribe(b.topic("scan-room", "events", "#"))

    assert client.publish(b.topic("vault", "cmd"), b"{}") == NOT_AUTHORIZED
    assert not client.publish(b.topic("scan-room", "events", "system", "link_up"), b"door").is_failure
    supervisor.wait_for_messages(1)


def test_a_client_certificate_from_another_ca_is_refused(mosquitto_broker, tmp_path):
    make_certs("--site", SITE, "--server-name", "localhost", "--door", "scan-room", "--dir", str(tmp_path))
    foreign = mosquitto_broker.door("scan-room").__class__(
        SCAN_ROOM, "", tmp_path / "none", tmp_path / f"{SCAN_ROOM}.crt", tmp_path / f"{SCAN_ROOM}.key")
    with pytest.raises((ConnectRefused, ssl.SSLError, OSError)):
        mosquitto_broker.connect(SCAN_ROOM, certificate=foreign)


def test_a_doors_certificate_with_the_supervisors_name_and_password_acts_only_as_that_door(mosquitto_broker):
    b = mosquitto_broker
    supervisor_account = b.supervisor
    impostor = b.connect(SUPERVISOR, client_id="impostor", password=supervisor_account.password,
                         certificate=b.door("scan-room"))
    vault = b.connect(VAULT)
    vault.subscribe(b.topic("vault", "cmd"))
    watcher = b.connect()
    watcher.subscribe(b.topic("scan-room", "events", "#"))

    assert impostor.publish(b.topic("vault", "cmd"), b'{"id": "x", "action": "release_lockdown"}') == NOT_AUTHORIZED
    assert impostor.publish(b.topic(None, "time"), b'{"ts": "2030-01-01T00:00:00+08:00"}') == NOT_AUTHORIZED
    impostor.publish(b.topic("scan-room", "events", "system", "link_up"), b"marker")
    watcher.wait_for_messages(1)
    assert vault.received() == []


def test_client_without_a_certificate_is_refused(mosquitto_broker):
    with pytest.raises((ConnectRefused, ssl.SSLError)):
        mosquitto_broker.connect(SCAN_ROOM, client_cert=False)


def test_tls_with_another_sites_ca_fails(mosquitto_broker, tmp_path):
    make_certs("--site", "other-site", "--server-name", "localhost", "--dir", str(tmp_path))
    with pytest.raises(ssl.SSLCertVerificationError):
        mosquitto_broker.connect(SCAN_ROOM, ca_file=tmp_path / "ca.crt")


# ---------------------------------------------------------------- revocation


def test_a_revoked_certificate_is_refused_after_the_new_crl_is_installed(mosquitto_broker):
    b = mosquitto_broker
    spare = f"spare-{uuid.uuid4().hex[:8]}"
    certs = b.files.certs_dir
    make_certs("--site", SITE, "--server-name", "localhost", "--ip", "127.0.0.1", "--door", spare,
               "--dir", str(certs))
    name = door_username(spare)
    account = b.door("scan-room").__class__(name, "", certs / "none", certs / f"{name}.crt", certs / f"{name}.key")
    b.connect(None, certificate=account).disconnect()  # valid until revoked

    make_certs("--dir", str(certs), "--revoke", door_username(spare))
    b.install_crl(certs / "crl.pem")

    assert not account.cert_file.exists()  # moved aside with its key: a new --door makes a new key
    revoked = account.__class__(account.username, "", certs / "none",
                                *sorted((certs / "revoked").glob(f"{door_username(spare)}-*.crt"))[:1],
                                *sorted((certs / "revoked").glob(f"{door_username(spare)}-*.key"))[:1])
    with pytest.raises((ConnectRefused, ssl.SSLError, OSError)):
        b.connect(None, certificate=revoked)
    b.connect(SCAN_ROOM)  # the others still log in


# ---------------------------------------------------------------- one connection per account


@pytest.mark.parametrize("victim, intruder, client_id", [
    (SCAN_ROOM, VAULT, "accessctl-hn-archive-1-scan-room"),       # a door's default client id
    (SUPERVISOR, SCAN_ROOM, "accessctl-monitor-supervisor-desk"),  # a monitor named by --client-id
])
def test_another_account_connecting_with_a_client_id_does_not_kick_its_owner(mosquitto_broker, victim, intruder,
                                                                             client_id):
    b = mosquitto_broker
    owner = b.connect(victim, client_id=client_id)
    drops = count_drops(owner)
    owner.subscribe(b.topic(None, "time"))

    b.connect(intruder, client_id=client_id)
    b.connect().publish(b.topic(None, "time"), b'{"ts": "2026-11-23T08:00:00+08:00"}')

    owner.wait_for_messages(1)
    assert drops == [] and owner.disconnected is None


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


@pytest.mark.parametrize("parts", [
    ("events", "forged", "x"),                       # not one of the three categories
    ("events", "access", "passage", "a", "b", "c"),  # deeper than category/type
    ("events", "access"),
    ("events",),
])
def test_door_events_outside_category_and_type_are_not_authorized_retained_or_not(mosquitto_broker, parts):
    b = mosquitto_broker
    scan_room = b.connect(SCAN_ROOM)
    for retain in (False, True):
        assert scan_room.publish(b.topic("scan-room", *parts), b"junk", retain=retain) == NOT_AUTHORIZED


def test_the_door_link_never_leaves_a_retained_event_on_the_broker(mosquitto_broker, tmp_path):
    """Mosquitto 2.0 cannot forbid retain per topic: the door must not retain, subscribers must ignore it."""
    b = mosquitto_broker
    supervisor = b.connect()
    supervisor.subscribe(b.topic("scan-room", "events", "#"))
    link = MqttLink(account_config(b, b.door("scan-room"), tmp_path / "events.db"), post=queue.Queue().put,
                    backoff=(0.1, 0.5))
    store_events(link.cfg, 20)
    link.start()
    try:
        link.publish_status({"door": "closed", "lock": "locked", "lockdown": False, "occupancy": 0, "version": "t"})
        supervisor.wait_for_messages(20, timeout=15)
        late = b.connect()
        late.subscribe(b.topic("scan-room", "events", "#"))
        late.subscribe(b.topic("scan-room", "status"))  # its retained copy comes after any retained event
        late.wait_for_messages(1, b.topic("scan-room", "status"))
        assert late.received(b.topic("scan-room", "events", "#")) == []
    finally:
        link.close()


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
    add_account(acl, "door", SITE, "vault")
    add_account(acl, "door", SITE, "vault")

    assert acl.read_text().count(f"user {VAULT}\n") == 1


def test_add_account_gives_look_alike_doors_of_two_sites_their_own_accounts(tmp_path):
    acl = tmp_path / "acl"
    add_account(acl, "door", "hn-archive", "1-scan-room")
    add_account(acl, "door", "hn-archive-1", "scan-room")

    blocks = acl_blocks(acl)
    assert "topic read accessctl/hn-archive/time" in blocks["door.hn-archive.1-scan-room"]
    assert "topic read accessctl/hn-archive-1/time" in blocks["door.hn-archive-1.scan-room"]
    assert "topic read accessctl/hn-archive/roster" in blocks["door.hn-archive.1-scan-room"]
    assert all("hn-archive/1-scan-room/" in r or r.endswith(("/time", "/roster", "/roster/chunks/+"))
               for r in blocks["door.hn-archive.1-scan-room"])


def test_add_account_refuses_to_change_an_existing_accounts_rights(tmp_path):
    acl = tmp_path / "acl"
    add_account(acl, "door", SITE, "vault")
    before = acl.read_text()

    other = add_account(acl, "--prefix", "elsewhere", "door", SITE, "vault", check=False)
    assert other.returncode != 0 and "different block" in other.stderr
    assert acl.read_text() == before


def test_make_certs_gives_look_alike_doors_of_two_sites_their_own_keys(tmp_path):
    make_certs("--site", "hn-archive", "--server-name", "localhost", "--door", "1-scan-room", "--dir", str(tmp_path))
    make_certs("--site", "hn-archive-1", "--server-name", "localhost", "--door", "scan-room", "--dir", str(tmp_path))

    first, second = "door.hn-archive.1-scan-room", "door.hn-archive-1.scan-room"
    assert (tmp_path / f"{first}.key").read_bytes() != (tmp_path / f"{second}.key").read_bytes()
    subjects = [subprocess.run(["openssl", "x509", "-in", str(tmp_path / f"{name}.crt"), "-noout", "-subject"],
                               check=True, capture_output=True, text=True).stdout for name in (first, second)]
    assert "CN = door.hn-archive.1-scan-room" in subjects[0] and "CN = door.hn-archive-1.scan-room" in subjects[1]


def test_make_certs_refuses_a_door_whose_account_does_not_fit_a_certificate(tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as refused:
        make_certs("--site", "s" * 40, "--server-name", "localhost", "--door", "d" * 40, "--dir", str(tmp_path))
    assert "CN holds 64" in refused.value.stderr


# ---------------------------------------------------------------- message size


def test_a_command_just_over_the_packet_limit_disconnects_its_sender_and_never_reaches_the_door(mosquitto_broker):
    b = mosquitto_broker
    door = b.connect(SCAN_ROOM)
    door.subscribe(b.topic("scan-room", "cmd"))
    sender = b.connect()

    info = sender.paho.publish(b.topic("scan-room", "cmd"), b"x" * MAX_PACKET_SIZE, qos=1)
    sender._wait(lambda: sender.disconnected is not None or info.is_published(), 30, "the broker's answer")
    sender.disconnect()  # paho would reconnect and send it again
    assert not info.is_published()
    b.connect().publish(b.topic("scan-room", "cmd"), b'{"id": "after", "action": "status"}')
    [msg] = door.wait_for_messages(1)
    assert msg.payload == b'{"id": "after", "action": "status"}'


def test_a_roster_sized_message_under_the_limit_still_passes(mosquitto_broker):
    b = mosquitto_broker
    door = b.connect(SCAN_ROOM)
    door.subscribe(b.topic("scan-room", "cmd"))
    supervisor = b.connect()

    assert not supervisor.publish(b.topic("scan-room", "cmd"), b"r" * ROSTER_PAYLOAD_MAX, timeout=15).is_failure
    [msg] = door.wait_for_messages(1, timeout=15)
    assert len(msg.payload) == ROSTER_PAYLOAD_MAX


def test_a_huge_command_disconnects_its_sender_and_neither_broker_nor_door_grows(mosquitto_broker, tmp_path):
    b = mosquitto_broker
    account = b.door("scan-room")
    args = {"database": str(tmp_path / "events.db"), "broker": b.url, "ca_file": str(b.ca_file),
            "username": account.username, "password_file": str(account.password_file),
            "cert_file": str(account.cert_file), "key_file": str(account.key_file), "count": 0}
    door = subprocess.Popen([sys.executable, "-m", "simulator.crash.link_child", json.dumps(args)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert door.stdout.readline().strip() == "stored" and door.stdout.readline().strip() == "started"
        watcher = b.connect()
        watcher.subscribe(b.topic("scan-room", "status"))
        watcher.wait_for_messages(1)  # the door is connected and subscribed
        watcher.subscribe(b.topic("scan-room", "cmd"))
        door_before, broker_before = vm_hwm_kb(door.pid), vm_hwm_kb(b._proc.pid)

        huge = 64 * 1024 * 1024
        sender = b.connect()
        info = sender.paho.publish(b.topic("scan-room", "cmd"), b"{" + b" " * huge + b"}", qos=1)
        sender._wait(lambda: sender.disconnected is not None or info.is_published(), 60, "the broker's answer")
        sender.disconnect()  # paho would reconnect and send it again
        assert not info.is_published()

        b.connect().publish(b.topic("scan-room", "cmd"), b'{"id": "after", "action": "status"}')
        watcher.wait_for_messages(1, b.topic("scan-room", "cmd"))
        deadline = time.monotonic() + 3  # what the broker forwarded reaches the door within this
        while time.monotonic() < deadline and vm_hwm_kb(door.pid) - door_before < 16 * 1024:
            time.sleep(0.05)
        assert [len(m.payload) for m in watcher.received(b.topic("scan-room", "cmd"))] == [35]
        assert vm_hwm_kb(door.pid) - door_before < 16 * 1024
        assert vm_hwm_kb(b._proc.pid) - broker_before < 16 * 1024
    finally:
        door.kill()
        door.wait()
