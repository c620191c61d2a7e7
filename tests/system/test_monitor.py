"""The supervisor's monitor against a real Mosquitto: archive, de-dup, gaps and replay, status,
integrity warnings, the time beacon, the register export and the command line.

The door's publisher is someone else's module, so the tests play the door themselves: they
log in with the door's own account and publish well-formed, hash-chained events.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from firmware_py.cli.main import main
from firmware_py.core.events import GENESIS_HASH, event_hash
from firmware_py.errors import MonitorError
from firmware_py.link.broker import BrokerSettings
from firmware_py.station.ingest.ingest import Ingest
from simulator.lab_broker import REPO, SITE, door_username

DOOR = "scan-room"
DOOR_ACCOUNT = door_username(DOOR)
MASKED = "430102********123X"


def make_events(seqs, *, prev=GENESIS_HASH, day="2026-11-23", hour=9, type_="access_granted"):
    """Hash-chained events of the scan-room door with the given seqs (consecutive)."""
    events = []
    for seq in seqs:
        e = {"seq": seq, "ts": f"{day}T{hour:02d}:{seq // 60 % 60:02d}:{seq % 60:02d}.000+08:00", "site": SITE,
             "door": DOOR, "category": "access", "type": type_, "direction": "in",
             "person": {"person_id": "P001", "name": "测试员甲", "role": "staff"},
             "credential": {"kind": "resident_id", "masked": MASKED}, "reason": None, "detail": {},
             "prev_hash": prev}
        e["hash"] = event_hash(e)
        prev = e["hash"]
        events.append(e)
    return events


def publish(door_client, broker, *events):
    for e in events:
        rc = door_client.publish(broker.topic(DOOR, "events", e["category"], e["type"]),
                                 json.dumps(e, ensure_ascii=False))
        assert not rc.is_failure, rc


def supervisor_settings(broker) -> BrokerSettings:
    s = broker.supervisor
    return BrokerSettings(url=broker.url, username=s.username, password=s.password, ca_file=broker.ca_file,
                          cert_file=s.cert_file, key_file=s.key_file, client_id=f"monitor-test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def start_monitor(mosquitto_broker, tmp_path):
    """Start an Ingest on the test broker (door scope by default); its lines collect in ``.lines``."""
    monitors = []

    def start(**kwargs):
        lines = []
        kwargs.setdefault("site", SITE)
        kwargs.setdefault("door", DOOR)
        kwargs.setdefault("beacon_interval_s", None)
        kwargs.setdefault("replay_interval_s", 0.3)
        m = Ingest(supervisor_settings(mosquitto_broker), tmp_path / "archive.db", out=lines.append, **kwargs)
        m.lines = lines
        monitors.append(m)
        return m.start()

    yield start
    for m in monitors:
        m.close()


@pytest.fixture
def door(mosquitto_broker):
    """The scan-room door's MQTT account, listening on its cmd topic."""
    client = mosquitto_broker.connect(DOOR_ACCOUNT)
    client.subscribe(mosquitto_broker.topic(DOOR, "cmd"))
    return client


def wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ---------------------------------------------------------------- archive and de-dup


def test_events_are_archived_once_and_a_duplicate_is_counted(start_monitor, door, mosquitto_broker):
    m = start_monitor()
    events = make_events(range(1, 4))
    publish(door, mosquitto_broker, *events, events[1])
    assert m.wait_until(lambda: m.archive.duplicates(SITE, DOOR) == 1)
    assert m.events(SITE, DOOR) == events
    assert m.last_contiguous(SITE, DOOR) == 3
    assert m.gaps() == [] and m.anomalies() == []
    assert sum("测试员甲" in line for line in m.lines) == 3  # shown once each, the duplicate not


def test_each_event_is_shown_as_one_readable_line_with_labels(start_monitor, door, mosquitto_broker):
    m = start_monitor(site=SITE, door=None)
    publish(door, mosquitto_broker, *make_events([1]))
    assert m.wait_for_seq(SITE, DOOR, 1)
    line = next(line for line in m.lines if "#1" in line)
    assert line.startswith(f"{SITE}/{DOOR}  09:00:01 #1")
    assert "准许通行 granted" in line and "进 in" in line and MASKED in line


# ---------------------------------------------------------------- gaps and replay


def test_a_gap_makes_the_monitor_ask_the_door_for_a_replay(start_monitor, door, mosquitto_broker):
    m = start_monitor()
    events = make_events(range(1, 5))
    publish(door, mosquitto_broker, events[0], events[1], events[3])
    (cmd,) = door.wait_for_messages(1, mosquitto_broker.topic(DOOR, "cmd"))
    request = json.loads(cmd.payload)
    assert request["action"] == "replay" and request["from_seq"] == 3 and request["id"]
    assert [(g.first_missing, g.last_missing, g.open) for g in m.gaps(SITE, DOOR)] == [(3, 3, True)]


def test_a_replay_is_not_requested_again_while_the_gap_is_young(start_monitor, door, mosquitto_broker):
    m = start_monitor(replay_interval_s=30)
    events = make_events(range(1, 7))
    publish(door, mosquitto_broker, events[0], events[2], events[3], events[5])
    assert m.wait_for_seq(SITE, DOOR, 6)
    time.sleep(0.3)
    assert len(door.received(mosquitto_broker.topic(DOOR, "cmd"))) == 1


def test_the_gap_closes_when_the_replayed_events_arrive(start_monitor, door, mosquitto_broker):
    m = start_monitor()
    events = make_events(range(1, 6))
    publish(door, mosquitto_broker, events[0], events[3], events[4])
    door.wait_for_messages(1, mosquitto_broker.topic(DOOR, "cmd"))
    publish(door, mosquitto_broker, *events[1:])  # the door replays from 2: 4 and 5 again
    assert m.wait_until(lambda: m.archive.duplicates(SITE, DOOR) == 2)
    assert m.last_contiguous(SITE, DOOR) == 5
    assert [g.open for g in m.gaps(SITE, DOOR)] == [False]
    assert any("gap #2–#3 closed" in line for line in m.lines)
    assert m.anomalies() == []


def test_a_tail_announced_by_the_status_but_never_received_is_requested(start_monitor, door, mosquitto_broker):
    status = {"online": True, "door": "closed", "lock": "locked", "lockdown": False, "occupancy": 0,
              "last_seq": 3, "queued": 0, "version": "test"}
    door.publish(mosquitto_broker.topic(DOOR, "status"), json.dumps(status), retain=True)
    m = start_monitor()
    (cmd,) = door.wait_for_messages(1, mosquitto_broker.topic(DOOR, "cmd"))
    assert json.loads(cmd.payload)["from_seq"] == 1
    assert [(g.first_missing, g.last_missing) for g in m.gaps(SITE, DOOR)] == [(1, 3)]


# ---------------------------------------------------------------- status


def test_retained_status_is_shown_and_shown_again_only_when_it_changes(start_monitor, door, mosquitto_broker):
    topic = mosquitto_broker.topic(DOOR, "status")
    status = {"online": True, "door": "closed", "lock": "locked", "lockdown": False, "occupancy": 0,
              "last_seq": 0, "queued": 0, "version": "test"}
    door.publish(topic, json.dumps(status), retain=True)
    m = start_monitor()
    assert m.wait_until(lambda: m.status(SITE, DOOR) == status)
    door.publish(topic, json.dumps({**status, "last_seq": 0, "queued": 0}), retain=True)  # unchanged
    door.publish(topic, json.dumps({**status, "lockdown": True}), retain=True)
    door.publish(topic, json.dumps({**status, "lockdown": True, "online": False}), retain=True)
    assert m.wait_until(lambda: (m.status(SITE, DOOR) or {}).get("online") is False)
    lines = [line for line in m.lines if line.startswith(f"{SITE}/{DOOR} ") and "lock " in line]
    assert len(lines) == 3
    assert "在线 online" in lines[0] and "门 door closed" in lines[0] and "锁 lock locked" in lines[0]
    assert "封锁 LOCKDOWN" in lines[1]
    assert "离线 OFFLINE" in lines[2]


# ---------------------------------------------------------------- integrity


def test_an_event_with_a_bad_hash_is_flagged(start_monitor, door, mosquitto_broker):
    m = start_monitor()
    events = make_events(range(1, 3))
    events[1]["reason"] = "anti_passback"  # changed after hashing
    publish(door, mosquitto_broker, *events)
    assert m.wait_until(lambda: any("INTEGRITY WARNING" in line and "#2" in line for line in m.lines))
    assert [(a.kind, a.seq) for a in m.anomalies(SITE, DOOR)] == [("bad_hash", 2)]


def test_an_event_whose_prev_hash_does_not_link_to_the_archive_is_flagged(start_monitor, door, mosquitto_broker):
    m = start_monitor()
    first = make_events([1])
    second = make_events([2], prev="f" * 64)  # its own hash is right, its link is not
    publish(door, mosquitto_broker, *first, *second)
    assert m.wait_until(lambda: m.anomalies(SITE, DOOR, "broken_link"))
    assert [a.seq for a in m.anomalies(SITE, DOOR)] == [2]


def test_a_second_copy_that_differs_from_the_archived_one_is_flagged(start_monitor, door, mosquitto_broker):
    m = start_monitor()
    original = make_events([1])
    forged = make_events([1], type_="access_denied")  # same seq, a different (well-hashed) event
    publish(door, mosquitto_broker, *original, *forged)
    assert m.wait_until(lambda: any("INTEGRITY WARNING" in line for line in m.lines))
    assert [(a.kind, a.seq) for a in m.anomalies(SITE, DOOR)] == [("conflicting_copy", 1)]
    assert m.events(SITE, DOOR) == original


# ---------------------------------------------------------------- time beacon


def test_the_time_beacon_is_retained_and_a_door_receives_it(start_monitor, mosquitto_broker):
    topic = mosquitto_broker.topic(None, "time")
    watcher = mosquitto_broker.connect("supervisor")
    watcher.subscribe(topic)
    t0 = datetime.now(UTC)
    start_monitor(beacon_interval_s=60)
    watcher.wait_for_messages(1, topic)
    # the door subscribes after the beacon went out: only a retained message reaches it
    door = mosquitto_broker.connect(DOOR_ACCOUNT)
    door.subscribe(topic)
    (msg,) = door.wait_for_messages(1, topic)
    assert msg.retain
    ts = datetime.fromisoformat(json.loads(msg.payload)["ts"])
    assert ts.utcoffset() is not None
    assert abs(ts - t0) < timedelta(seconds=5)


def test_the_beacon_repeats_every_interval(start_monitor, door, mosquitto_broker):
    topic = mosquitto_broker.topic(None, "time")
    door.subscribe(topic)
    start_monitor(beacon_interval_s=0.3)
    msgs = door.wait_for_messages(3, topic, timeout=3)
    stamps = [datetime.fromisoformat(json.loads(m.payload)["ts"]) for m in msgs]
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0]


def test_watching_all_sites_beacons_to_each_site_it_has_seen(start_monitor, door, mosquitto_broker):
    topic = mosquitto_broker.topic(None, "time")
    door.subscribe(topic)
    m = start_monitor(site=None, door=None, beacon_interval_s=60)
    time.sleep(0.3)
    assert door.received(topic) == []  # no site seen yet
    publish(door, mosquitto_broker, *make_events([1]))
    door.wait_for_messages(1, topic)
    assert m.beacons_sent == 1


# ---------------------------------------------------------------- an ordinary MQTT client


def test_mosquitto_sub_sees_the_payload_bytes_the_monitor_archived(start_monitor, door, mosquitto_broker):
    b, s = mosquitto_broker, mosquitto_broker.supervisor
    sub = ["mosquitto_sub", "-h", b.host, "-p", str(b.port), "--cafile", str(b.ca_file), "--cert", str(s.cert_file),
           "--key", str(s.key_file), "-u", s.username, "-P", s.password, "-q", "1", "-c", "-i", "test-sub",
           "-t", b.topic(DOOR, "events", "#")]
    subprocess.run(sub + ["-E"], check=True, timeout=10)  # make the persistent session, then leave
    m = start_monitor()
    publish(door, b, *make_events([1]))
    assert m.wait_for_seq(SITE, DOOR, 1)
    got = subprocess.run(sub + ["-C", "1", "-N", "-W", "5"], check=True, timeout=10, capture_output=True).stdout
    assert got == m.archive.payload(SITE, DOOR, 1)


# ---------------------------------------------------------------- register export


def test_export_writes_that_days_register_with_masked_credentials_only(start_monitor, door, mosquitto_broker,
                                                                        tmp_path):
    m = start_monitor()
    late = make_events(range(1, 3), day="2026-11-23", hour=23)
    early = make_events(range(3, 5), prev=late[-1]["hash"], day="2026-11-24", hour=0)
    publish(door, mosquitto_broker, *late, *early)
    assert m.wait_for_seq(SITE, DOOR, 4, contiguous=True)
    out = tmp_path / "register.csv"
    rc = main(["monitor", "export", "--date", "2026-11-23", "--archive", str(tmp_path / "archive.db"),
               "--site", SITE, "--door", DOOR, "--output", str(out)])
    assert rc == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["seq"] for r in rows] == ["1", "2"]
    assert {r["credential"] for r in rows} == {MASKED}
    assert not re.search(r"\d{17}[\dX]", out.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- the command line


def monitor_config(tmp_path, broker) -> str:
    """The example venue configuration with an [mqtt] section for the supervisor account."""
    text = (REPO / "config" / "venue.example.toml").read_text(encoding="utf-8")
    head, _, tail = text.partition("\n[mqtt]\n")
    rest = tail[tail.find("\n["):] if "\n[" in tail else ""
    s = broker.supervisor
    mqtt = (f'\n[mqtt]\nbroker = "mqtts://broker.archive.lan:8883"\nusername = "{s.username}"\n'
            f'password_file = "{s.password_file}"\nca_file = "{broker.ca_file}"\n'
            f'cert_file = "{s.cert_file}"\nkey_file = "{s.key_file}"\n')
    path = tmp_path / "supervisor.toml"
    path.write_text(head + mqtt + rest, encoding="utf-8")
    return str(path)


def test_the_command_takes_credentials_from_the_config_archives_and_stops_cleanly(door, mosquitto_broker, tmp_path):
    archive = tmp_path / "cli-archive.db"
    config = monitor_config(tmp_path, mosquitto_broker)
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_py.cli.main", "monitor", "--config", config,
         "--broker", mosquitto_broker.url, "--site", SITE, "--door", DOOR, "--archive", str(archive),
         "--client-id", "cli-test", "--no-beacon"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        assert "connected to" in lines.get(timeout=10)  # shown once subscribed
        publish(door, mosquitto_broker, *make_events([1]))
        assert "#1" in lines.get(timeout=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "archived 1 events" in err


def test_a_refused_login_stops_the_monitor_with_a_clear_error(mosquitto_broker, tmp_path):
    nameless = mosquitto_broker.files.nameless  # the certificate is the login: one naming no account
    settings = replace(supervisor_settings(mosquitto_broker), cert_file=nameless.cert_file, key_file=nameless.key_file)
    with pytest.raises(MonitorError, match="refused the station"):
        Ingest(settings, tmp_path / "archive.db", beacon_interval_s=None).start(timeout=5)


# ---------------------------------------------------------------- hostile text from the broker

HOSTILE_NAME = "赵一\x1b[2J\x1b[1;32m\n09:00:02 #2    准许通行 granted  进 in  P001\u202e"


def test_a_name_with_escapes_and_newlines_is_shown_on_one_line_without_terminal_codes(start_monitor, door,
                                                                                       mosquitto_broker):
    m = start_monitor()
    (event,) = make_events([1])
    event["person"]["name"] = HOSTILE_NAME
    event["hash"] = event_hash({k: v for k, v in event.items() if k != "hash"})
    publish(door, mosquitto_broker, event)
    occupancy = {"count": 1, "inside": [{"person_id": "P001", "name": "\x1b]0;pwned\x07甲", "role": "staff"}]}
    door.publish(mosquitto_broker.topic(DOOR, "occupancy"), json.dumps(occupancy), retain=True)
    assert m.wait_until(lambda: any("pwned" in line for line in m.lines))
    assert m.wait_for_seq(SITE, DOOR, 1)
    shown = [line for line in m.lines if "赵一" in line or "pwned" in line]
    assert len(shown) == 2
    for line in shown:
        assert not re.search("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", line), repr(line)
    assert "\\x1b[2J" in shown[0] and "\\n09:00:02" in shown[0]  # visible, not obeyed


def archive_directly(tmp_path, events):
    """An archive holding ``events`` as the monitor stores them (no broker needed for the export)."""
    from firmware_py.station.archive.sqlite import Archive

    archive = Archive(tmp_path / "archive.db")
    for e in events:
        archive.store_event(SITE, DOOR, f"accessctl/{SITE}/{DOOR}/events/{e['category']}/{e['type']}",
                            json.dumps(e, ensure_ascii=False).encode(), e, "2026-11-23T10:00:00.000+08:00")
    return archive


def rechain(events):
    """Hash and chain ``events`` again after a test edited them."""
    prev = GENESIS_HASH
    for e in events:
        e["prev_hash"] = prev
        e["hash"] = prev = event_hash({k: v for k, v in e.items() if k != "hash"})
    return events


def exported(archive, **scope):
    import io
    from datetime import date

    from firmware_py.station.archive.sqlite import export_register

    out = io.StringIO()
    export_register(archive, date(2026, 11, 23), out, **scope)
    return list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))


def test_monitor_export_neutralises_cells_a_spreadsheet_would_run_as_formulas(tmp_path):
    events = make_events(range(1, 3))
    events[0]["person"]["name"] = '=HYPERLINK("http://evil.example","x")'
    events[1]["credential"]["masked"] = "=CMD|'********'!A0"
    archive = archive_directly(tmp_path, rechain(events))
    for scope in ({"site": SITE, "door": DOOR}, {}):
        rows = exported(archive, **scope)
        assert rows[0]["name"] == "'=HYPERLINK(\"http://evil.example\",\"x\")"
        assert rows[1]["credential"] == "'=CMD|'********'!A0"
    archive.close()


# ---------------------------------------------------------------- evidence: conflicting copies, replay bounds, epochs


def forged(seq, prev, **changes):
    """A well-hashed event for ``seq`` that is not the door's (someone with a publishing account made it)."""
    (e,) = make_events([seq], prev=prev)
    e.update({"type": "access_denied", "reason": "revoked", **changes})
    e["hash"] = event_hash({k: v for k, v in e.items() if k != "hash"})
    return e


def test_a_forged_copy_published_first_loses_to_the_genuine_copy_the_chain_links_to(start_monitor, door,
                                                                                      mosquitto_broker):
    m = start_monitor()
    genuine = make_events(range(1, 4))
    fake = forged(2, genuine[0]["hash"])  # links to #1 as well: only #3 tells them apart
    publish(door, mosquitto_broker, genuine[0], fake, genuine[1], genuine[2])
    assert m.wait_for_seq(SITE, DOOR, 3)
    assert m.wait_until(lambda: m.anomalies(SITE, DOOR, "copy_replaced"))
    assert m.events(SITE, DOOR) == genuine
    (kept,) = m.archive.conflicts(SITE, DOOR)
    assert (kept.seq, kept.hash, json.loads(kept.payload)) == (2, fake["hash"], fake)
    assert m.wait_until(lambda: any("INTEGRITY WARNING" in line and "#2" in line for line in m.lines))


def test_a_copy_with_a_bad_hash_published_first_is_replaced_by_the_good_one_at_once(start_monitor, door,
                                                                                     mosquitto_broker):
    m = start_monitor()
    genuine = make_events(range(1, 3))
    bad = dict(genuine[1], reason="revoked")  # altered after hashing
    publish(door, mosquitto_broker, genuine[0], bad, genuine[1])
    assert m.wait_until(lambda: m.anomalies(SITE, DOOR, "copy_replaced"))
    assert m.events(SITE, DOOR) == genuine
    assert [c.hash_ok for c in m.archive.conflicts(SITE, DOOR)] == [False]


def test_conflicting_copies_never_enter_the_events_table_and_are_kept_once(start_monitor, door, mosquitto_broker):
    m = start_monitor()
    genuine = make_events(range(1, 3))
    fake = forged(2, genuine[0]["hash"])
    publish(door, mosquitto_broker, *genuine, fake, fake)
    assert m.wait_until(lambda: m.archive.duplicates(SITE, DOOR) == 1)
    assert m.archive.count(SITE, DOOR) == 2 and m.events(SITE, DOOR) == genuine
    assert [c.seq for c in m.archive.conflicts(SITE, DOOR)] == [2]
    assert [a.kind for a in m.anomalies(SITE, DOOR)] == ["conflicting_copy"]


def test_replay_requests_for_a_forged_far_future_seq_back_off_and_give_up(start_monitor, door, mosquitto_broker):
    m = start_monitor(replay_interval_s=0.05, max_replay_requests=3)
    (first,) = make_events([1])
    publish(door, mosquitto_broker, first, forged(1_000_000, "e" * 64))
    cmd_topic = mosquitto_broker.topic(DOOR, "cmd")
    assert m.wait_until(lambda: any("gave up asking for #2–#999999" in line for line in m.lines), timeout=10)
    time.sleep(1.0)  # many replay intervals: nothing more is asked
    assert len(door.received(cmd_topic)) == 3
    (gap,) = m.gaps(SITE, DOOR)
    assert gap.replay_requests == 3 and gap.given_up_at and gap.open
    assert m.gaps(SITE, DOOR, open_only=True) == []
    sent = [r["at"] for r in m.replay_requests]
    waits = [(datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() for a, b in zip(sent, sent[1:])]
    assert waits[1] >= 0.1 - 0.02  # the third request waited twice the interval


def test_after_a_database_reset_the_doors_new_chain_is_archived_as_a_new_epoch(start_monitor, door, mosquitto_broker):
    m = start_monitor()
    before = make_events(range(1, 4))
    after = make_events(range(1, 3), hour=11)  # seq 1 again, genesis-linked, later
    publish(door, mosquitto_broker, *before, *after)
    assert m.wait_until(lambda: m.archive.count(SITE, DOOR) == 5)
    assert [e.epoch for e in m.archive.epochs(SITE, DOOR)] == [1, 2]
    assert m.events(SITE, DOOR) == after and m.events(SITE, DOOR, epoch=1) == before
    assert m.archive.conflicts(SITE, DOOR) == [] and m.last_contiguous(SITE, DOOR) == 2
    assert [a.kind for a in m.anomalies(SITE, DOOR)] == ["new_epoch"]
    assert m.wait_until(lambda: any("new hash chain (epoch 2)" in line for line in m.lines))


def test_a_forged_seq_1_does_not_divert_the_doors_real_chain(start_monitor, door, mosquitto_broker):
    m = start_monitor()
    genuine = make_events(range(1, 5))
    fake = make_events([1], hour=12, type_="access_denied")
    publish(door, mosquitto_broker, *genuine[:3], *fake, genuine[3])
    assert m.wait_until(lambda: m.anomalies(SITE, DOOR, "epoch_resumed"))
    assert m.archive.door_state(SITE, DOOR).epoch == 1
    assert m.events(SITE, DOOR) == genuine and m.events(SITE, DOOR, epoch=2) == fake


def test_the_status_head_is_kept_and_a_head_that_goes_back_raises_an_alarm(start_monitor, door, mosquitto_broker):
    m = start_monitor()
    events = make_events(range(1, 4))
    publish(door, mosquitto_broker, *events)
    assert m.wait_for_seq(SITE, DOOR, 3)
    status = {"online": True, "door": "closed", "lock": "locked", "lockdown": False, "occupancy": 0,
              "last_seq": 3, "last_hash": events[2]["hash"], "queued": 0, "version": "test"}
    topic = mosquitto_broker.topic(DOOR, "status")
    door.publish(topic, json.dumps(status), retain=True)
    assert m.wait_until(lambda: m.status(SITE, DOOR) == status)
    state = m.archive.door_state(SITE, DOOR)
    assert (state.head_seq, state.head_hash) == (3, events[2]["hash"])
    door.publish(topic, json.dumps({**status, "last_seq": 2, "last_hash": events[1]["hash"]}), retain=True)
    assert m.wait_until(lambda: any("published up to #3" in line and "INTEGRITY WARNING" in line for line in m.lines))
    assert [a.kind for a in m.anomalies(SITE, DOOR)] == ["head_regressed"]
    assert m.archive.door_state(SITE, DOOR).head_seq == 3


def test_monitor_export_marks_each_rows_verification_status(tmp_path):
    events = rechain(make_events(range(1, 6)))
    events[1]["reason"] = "revoked"  # #2 altered after hashing
    unlinked = forged(9, "d" * 64)
    archive = archive_directly(tmp_path, [*events[:3], events[4], unlinked, forged(3, events[1]["hash"])])
    rows = exported(archive, site=SITE, door=DOOR)
    assert [(r["seq"], r["verification"]) for r in rows] == [
        ("1", "verified"), ("2", "bad_hash"), ("3", "conflicting_copies"), ("5", "unlinked"), ("9", "unlinked")]
    assert {r["epoch"] for r in rows} == {"1"}
    archive.close()


def test_an_archive_written_by_the_previous_monitor_opens_with_its_events_in_epoch_1(tmp_path):
    import sqlite3

    from firmware_py.station.archive.sqlite import Archive

    # kept as a file: a shallow clone has no history to read the released schema from
    ddl = (REPO / "tests" / "fixtures" / "data" / "archive_schema_v1.sql").read_text(encoding="utf-8")
    (event,) = make_events([1])
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.executescript(ddl)
        db.execute("INSERT INTO events VALUES (?, ?, 1, ?, '2026-11-23', 'access', 'access_granted', ?, ?, 1, 't', ?,"
                   " 'now')", (SITE, DOOR, event["ts"], event["hash"], event["prev_hash"], json.dumps(event).encode()))
        db.execute("INSERT INTO doors (site, door, baseline, contiguous, expected) VALUES (?, ?, 0, 1, 1)",
                   (SITE, DOOR))
    archive = Archive(tmp_path / "old.db")
    assert archive.events(SITE, DOOR) == [event]
    state = archive.door_state(SITE, DOOR)
    assert (state.epoch, state.contiguous, state.head_seq, state.head_hash) == (1, 1, 1, event["hash"])
    (nxt,) = make_events([2], prev=event["hash"])
    archive.store_event(SITE, DOOR, "t", json.dumps(nxt).encode(), nxt, "now")
    assert archive.last_contiguous(SITE, DOOR) == 2
    archive.close()
