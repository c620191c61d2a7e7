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
