"""The chain rules both archives share (firmware_py/station/archive/chain.py): which of two copies of
one seq stays in ``events``, and how a break in a door's chain is worded."""

from __future__ import annotations

from firmware_py.core.events import GENESIS_HASH
from firmware_py.station.archive.chain import copy_score, link_problem

A, B, C = "a" * 64, "b" * 64, "c" * 64


def score(h=B, prev=A, ok=True, before=A, after_prev=None, announced=None, seq=2):
    return copy_score(seq, h, prev, ok, before=before, after_prev=after_prev, announced=announced)


def test_a_copy_whose_own_hash_is_wrong_counts_for_nothing_whatever_links_it():
    assert score(ok=False, after_prev=B, announced=B) == 0


def test_a_copy_linked_both_ways_beats_one_linked_only_to_its_predecessor():
    assert score(after_prev=B) > score(h=C, after_prev=B)


def test_the_doors_status_naming_a_copy_breaks_a_tie():
    assert score(announced=B) > score(h=C, announced=B)


def test_seq_1_links_to_the_genesis_hash():
    assert score(seq=1, prev=GENESIS_HASH, before=None) == score(seq=1, prev=A, before=None) + 2


def test_an_intact_link_is_no_problem():
    assert link_problem(2, True, A, A) is None


def test_an_altered_event_breaks_the_chain_at_its_seq():
    assert link_problem(5, False, A, A) == "#5: its hash is not the SHA-256 of the event (altered)"


def test_a_prev_hash_that_is_not_the_predecessors_breaks_the_chain():
    assert link_problem(5, True, B, A) == "#5: prev_hash does not match #4"
    assert link_problem(1, True, B, GENESIS_HASH) == "#1: prev_hash is not the genesis hash"


def test_without_the_predecessor_the_link_is_not_checked():
    assert link_problem(9, True, B, None) is None


def _chained(door: str, n: int, *, forge: int | None = None) -> tuple[list[dict], dict | None]:
    """``n`` linked events of ``door``, and a forged, well-hashed copy of #``forge`` linked to its predecessor."""
    from firmware_py.core.events import event_hash

    events, forged, prev = [], None, GENESIS_HASH
    for seq in range(1, n + 1):
        e = {"seq": seq, "ts": f"2026-11-23T09:00:{seq:02d}.000+08:00", "site": "hn-archive-1", "door": door,
             "category": "access", "type": "passage", "direction": "in", "person": None, "credential": None,
             "reason": None, "detail": {}, "prev_hash": prev}
        if seq == forge:
            forged = {**e, "type": "exit_button"}
            forged["hash"] = event_hash(forged)
        e["hash"] = prev = event_hash(e)
        events.append(e)
    return events, forged


def test_the_pages_chain_check_follows_a_copy_that_replaced_the_archived_one(tmp_path):
    import json

    from firmware_py.station.archive.sqlite import Archive
    from firmware_py.station.archive.store_sqlite import SqliteStationStore

    archive = Archive(tmp_path / "archive.db")
    store = SqliteStationStore.open(tmp_path / "archive.db")
    (g1, g2, g3), forged = _chained("vault", 3, forge=2)

    def arrive(e):
        archive.store_event("hn-archive-1", "vault", "t", json.dumps(e).encode(), e, "2026-11-23T09:01:00+08:00")

    try:
        for e in (g1, forged):
            arrive(e)
        assert store.chains().check("hn-archive-1", "vault").verified_to == 2  # the forged #2 is all there is
        arrive(g3)
        assert store.chains().check("hn-archive-1", "vault").problem == "#3: prev_hash does not match #2"
        arrive(g2)  # the genuine #2 verifies better and replaces the forged copy
        result = store.chains().check("hn-archive-1", "vault")
        assert (result.ok, result.verified_to, result.problem) == (True, 3, None)
    finally:
        store.close()
        archive.close()
