"""When the ingest asks a door for a replay (firmware_py/station/ingest/replay.py): one back-off for
the SQLite and the PostgreSQL ingest alike."""

from __future__ import annotations

import json

from firmware_py.station.ingest.replay import Replay, replay_decision, replay_request, sent_ahead

NEVER = -1e9


def decide(**kw) -> Replay:
    args = {"sent": 0, "now": 100.0, "last_request_at": NEVER, "advanced_at": NEVER, "interval_s": 5.0,
            "max_requests": 5}
    return replay_decision(**{**args, **kw})


def test_a_hole_nobody_asked_for_is_asked_for():
    assert decide() is Replay.ASK


def test_no_second_request_within_one_interval_of_the_first():
    assert decide(sent=1, last_request_at=96.0) is Replay.WAIT
    assert decide(sent=1, last_request_at=95.0) is Replay.ASK


def test_the_wait_doubles_from_the_third_request_on():
    assert decide(sent=2, last_request_at=91.0) is Replay.WAIT  # 2 intervals
    assert decide(sent=3, last_request_at=81.0) is Replay.WAIT  # 4 intervals
    assert decide(sent=3, last_request_at=80.0) is Replay.ASK


def test_no_request_while_the_doors_sequence_is_still_growing():
    assert decide(advanced_at=98.0) is Replay.WAIT


def test_a_hole_just_found_is_asked_for_even_while_the_sequence_grows():
    assert decide(advanced_at=98.0, first=True) is Replay.ASK


def test_no_request_while_the_door_cannot_answer_or_a_backlog_arrives():
    assert decide(held=True) is Replay.WAIT


def test_after_the_last_unanswered_request_the_ingest_gives_up():
    assert decide(sent=5, last_request_at=0.0) is Replay.GIVE_UP


def test_a_duress_above_a_hole_was_sent_ahead_of_the_doors_backlog():
    assert sent_ahead({"seq": 301, "type": "duress"}, contiguous=100)


def test_a_duress_next_in_sequence_or_any_other_event_above_a_hole_was_not_sent_ahead():
    assert not sent_ahead({"seq": 101, "type": "duress"}, contiguous=100)
    assert not sent_ahead({"seq": 301, "type": "door_forced"}, contiguous=100)
    assert not sent_ahead({"seq": 301, "type": "access_granted"}, contiguous=100)


def test_a_replay_request_is_the_command_doors_understand_with_a_fresh_id():
    first_id, payload = replay_request(7, "station", site="hn-archive-1", door="scan-room")
    assert json.loads(payload) == {"id": first_id, "action": "replay", "from_seq": 7}
    assert first_id.startswith("station-")
    assert replay_request(7, "station", site="hn-archive-1", door="scan-room")[0] != first_id


def test_a_replay_request_from_a_station_with_its_key_is_run_by_a_door_that_runs_only_signed_ones():
    from datetime import datetime

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from firmware_py.link.signed_commands import open_command

    key = Ed25519PrivateKey.generate()
    request_id, payload = replay_request(7, "station", site="hn-archive-1", door="scan-room", key=key)
    opened = open_command(payload, key.public_key(), site="hn-archive-1", door="scan-room",
                          now=datetime.now().astimezone())
    assert opened.error is None and opened.action == "replay" and opened.id == request_id
    assert "signed for door" in open_command(payload, key.public_key(), site="hn-archive-1", door="vault",
                                             now=datetime.now().astimezone()).error
