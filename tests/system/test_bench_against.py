"""`python -m bench decision --against COMMIT`: an older commit beside this tree, in one run.

Tiny sizes; no target is asserted (a missed target is a result). What is checked: both trees
ran and were timed, each on its own code, the baseline was taken after every grant, and the
older commit's temporary worktree is gone afterwards.
"""

from __future__ import annotations

import subprocess

import pytest

from bench import against
from bench.common import REPO
from bench.data import Workspace

OLDER = "717603f"  # before the hardening of issue 18; its bench/decision.py has the same DoorBench steps


def worktrees() -> str:
    return subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout


def test_an_older_commit_runs_beside_this_tree_and_both_are_timed(tmp_path):
    result = against.run(Workspace(tmp_path / "work"), commit=OLDER, quick=True, rosters=(20,), cycles=2)
    doc = result.doc
    assert doc["details"]["against_commit"].startswith(OLDER)
    (case,) = doc["details"]["cases"]
    assert set(case["sides"]) == {"this tree", OLDER}
    for side in case["sides"].values():
        for key in ("release", "decision", "grant", "baseline_after_idle", "idle_wait"):
            assert side[key]["n"] == 4 and 0 < side[key]["p50_ms"] <= side[key]["p99_ms"]
    assert [c["metric"].split(",")[0] for c in doc["checks"]] == ["credential → release p50",
                                                                 "credential → release p99"]
    assert "| 20 |" in against.table(doc)
    assert str(tmp_path) not in worktrees()


def test_an_unknown_commit_is_refused_by_name(tmp_path):
    with pytest.raises(against.AgainstError, match="--against 0000000: no such commit"):
        against.run(Workspace(tmp_path / "work"), commit="0000000", quick=True, rosters=(20,), cycles=1)
