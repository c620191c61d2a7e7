"""What ingest_rejects keeps of a door's refused messages (firmware_py/station/ingest/rejects.py):
every refusal, and its payload up to a budget per door and minute."""

from __future__ import annotations

from firmware_py.station.ingest.rejects import RejectBudget


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_refused_payload_is_kept_within_the_doors_budget():
    budget = RejectBudget(Clock(), per_minute=2)
    assert budget.keep("s", "scan-room", "not JSON", b"x" * 10) == ("not JSON", b"x" * 10)


def test_over_the_budget_the_row_says_the_payload_was_not_kept():
    budget = RejectBudget(Clock(), per_minute=2)
    for _ in range(2):
        budget.keep("s", "scan-room", "not JSON", b"x")
    assert budget.keep("s", "scan-room", "not JSON", b"x") == \
        ("not JSON (payload not kept: over 2 refused messages of this door within a minute)", b"")


def test_one_doors_flood_leaves_another_doors_budget_alone():
    budget = RejectBudget(Clock(), per_minute=1)
    budget.keep("s", "scan-room", "r", b"x")
    budget.keep("s", "scan-room", "r", b"x")
    assert budget.keep("s", "vault", "r", b"y") == ("r", b"y")


def test_the_budget_comes_back_the_next_minute():
    clock = Clock()
    budget = RejectBudget(clock, per_minute=1)
    budget.keep("s", "scan-room", "r", b"x")
    clock.now = 60.0
    assert budget.keep("s", "scan-room", "r", b"x") == ("r", b"x")


def test_the_payload_kept_is_masked_and_cut():
    budget = RejectBudget(Clock())
    reason, kept = budget.keep("s", "scan-room", "r", b'"11010519491231002X"' + b"x" * 100_000)
    assert kept.startswith(b'"110105********002X"') and len(kept) == 64 * 1024 + 1024
