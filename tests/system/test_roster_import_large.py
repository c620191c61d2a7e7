"""`roster import` of a large file beside a running door: each import in a fresh process, so its lock
holds and its peak memory are its own (tests/system/roster_import_child.py measures them)."""

import json
import os
import subprocess
import sys

import pytest

from tests.fixtures.constants import REPO


def import_in_child(config, csv_path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tests.system.roster_import_child", str(config), str(csv_path)],
                          capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def big_world(tmp_path):
    from bench.data import write_config, write_roster_csv

    cfg = write_config(tmp_path / "door")
    return cfg, lambda rows: write_roster_csv(tmp_path / f"roster-{rows}.csv", rows)


def test_a_large_import_holds_the_write_lock_only_briefly_at_a_time(big_world):
    cfg, roster_of = big_world
    path = roster_of(30_000)
    first = import_in_child(cfg.path, path)  # into an empty roster
    again = import_in_child(cfg.path, path)  # every person updated in place
    for run in (first, again):
        # Before: the whole write phase was one transaction, about half of the import.
        assert run["longest_lock_hold_s"] < run["import_s"] / 10, run


def test_an_imports_memory_does_not_grow_with_the_size_of_the_file(big_world):
    cfg, roster_of = big_world
    small = import_in_child(cfg.path, roster_of(5_000))
    large = import_in_child(cfg.path, roster_of(45_000))
    # Before: about 2.5 kB per row (a 50 MB file peaked at 749 MB), so 40,000 more rows cost ~100 MB.
    assert large["peak_rss_mb"] - small["peak_rss_mb"] < 25, (small, large)
