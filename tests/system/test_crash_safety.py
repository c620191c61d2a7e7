"""Crash safety: the controller SIGKILLed at random points loses no event and never leaves a release unrecorded.

A child process (simulator/crash/door_child.py) runs the real controller on simulated
hardware with its MQTT link to a real Mosquitto and plays a random door day;
the campaign (simulator/crash/campaign.py) kills it at random moments, restarts
it on the same database and checks what is on disk after every kill. The
bound here is CRASH_KILLS (default 10, about 20 s); the long mode is
``python -m simulator.crash.campaign --kills 1000``.
"""

import json
import os
import sqlite3

import pytest

from simulator.crash.campaign import Campaign, run_campaign
from simulator.lab_broker import MosquittoBroker

KILLS = int(os.environ.get("CRASH_KILLS", "10"))
SEED = int(os.environ.get("CRASH_SEED", "20261123"))


@pytest.fixture(scope="module")
def broker(mosquitto_files, tmp_path_factory):
    b = MosquittoBroker(mosquitto_files, tmp_path_factory.mktemp("crash-broker"))
    b.start()
    yield b
    b.close_clients()
    b.stop(kill=True)


@pytest.fixture(scope="module")
def campaign(broker, tmp_path_factory):
    result = run_campaign(broker, tmp_path_factory.mktemp("crash-door"), kills=KILLS, seed=SEED)
    print(f"crash campaign: {result.summary()}")
    return result


def test_the_campaign_killed_the_controller_as_often_as_asked_and_released_the_lock_both_ways(campaign):
    assert campaign.kills == KILLS, campaign.failed("child")
    assert campaign.releases.get("_grant", 0) > 0 and campaign.releases.get("_on_exit_button", 0) > 0, campaign.releases


def test_no_child_controller_died_on_its_own(campaign):
    assert campaign.failed("child") == []


def test_the_log_verifies_after_every_kill(campaign):
    assert campaign.failed("verify") == []


def test_seq_has_no_gaps_after_any_kill(campaign):
    assert campaign.failed("gaps") == []


def test_every_journaled_lock_release_has_its_stored_event(campaign):
    assert campaign.failed("release") == []


def test_the_lock_is_secure_before_and_after_every_restart(campaign):
    assert campaign.failed("lock") == []


def test_the_supervisor_sees_every_seq_once_the_last_controller_flushed(campaign):
    assert campaign.failed("subscriber") == []
    assert campaign.received == campaign.events


# ---------------------------------------------------------------- kills placed exactly after the relay moved


@pytest.fixture
def fresh(broker, tmp_path):
    c = Campaign(broker, tmp_path / "door", seed=SEED)
    c.prepare()
    yield c
    c.close()


def test_a_kill_right_after_a_grant_released_the_lock_finds_the_grant_stored(fresh):
    child = fresh.run_child(script=["badge_in"], die_after_release="_grant", steps=0)
    fresh.check()
    assert child.returncode == -9 and fresh.result.releases == {"_grant": 1}
    assert fresh.failures() == []


def test_a_kill_right_after_the_exit_button_released_the_lock_finds_the_exit_stored(fresh):
    child = fresh.run_child(script=["exit"], die_after_release="_on_exit_button", steps=0)
    fresh.check()
    assert child.returncode == -9 and fresh.result.releases == {"_on_exit_button": 1}
    assert fresh.failures() == []


def test_a_controller_killed_with_the_lock_released_starts_again_with_it_secure(fresh):
    fresh.run_child(script=["badge_in"], die_after_release="_grant", steps=0)
    fresh.kill_once(while_starting=False)
    assert fresh.result.kills == 1 and fresh.failures() == []


def test_a_passage_cut_off_by_a_kill_with_the_door_open_is_recorded_at_the_next_start(fresh):
    """kill -9 (a power cut) while P001 stands in the open doorway: nothing runs at the end; the next
    start records the passage, so P001 is inside and may leave by badge (not refused as anti-passback)."""
    child = fresh.run_child(script=["badge_in", "open", "die"], steps=0)
    assert child.returncode == -9
    assert [t for _, t, _ in fresh.stored()][-1] == "access_granted"  # the passage died with the process
    fresh.run_child(steps=0)  # the service starts again, and stops
    with sqlite3.connect(fresh.database) as conn:
        rows = conn.execute("SELECT body FROM events WHERE type = 'passage'").fetchall()
        occupancy = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'occupancy'").fetchone()[0])
    (passage,) = [json.loads(body) for (body,) in rows]
    assert (passage["direction"], passage["person"]["person_id"]) == ("in", "P001")
    assert passage["detail"]["at_restart"] is True
    assert list(occupancy) == ["P001"]
    fresh.check()
    assert fresh.failures() == []
