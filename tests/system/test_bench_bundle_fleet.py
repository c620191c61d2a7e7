"""The roster-bundle fleet benchmark (bench/bundle_fleet.py) at a tiny size: a signed bundle published with the
station's own path reaches every simulated door through a real Mosquitto, each door's time is measured, and the
bare-paho baseline of the same bytes too. No speed is asserted: a missed target is a result, not a failure."""

from __future__ import annotations

from bench import bundle_fleet
from bench.data import Workspace
from tests.system.test_bench import _is_figure, written


def test_the_bundle_fleet_benchmark_times_every_door_applying_the_published_roster(tmp_path):
    result = bundle_fleet.run(Workspace(tmp_path / "work"), quick=True, doors=3, sizes=(50,), rate=2.0, repeats=1)

    doc = written(result, tmp_path)
    run = doc["details"]["runs"][0]
    assert (run["persons"], run["applied"], run["rejected"], run["missing"]) == (50, 3, {}, [])
    assert sorted(run["per_door_ms"]) == ["fleet-01", "fleet-02", "fleet-03"]
    assert run["applied_after_return"]["n"] == run["status_after_return"]["n"] == 3
    assert run["applied_after_return"]["p99_ms"] >= run["applied_after_return"]["p50_ms"]
    assert run["chunks"] == 1 and run["wire_bytes"] > run["payload_bytes"] > 0
    assert _is_figure(run["baseline_median_ms"])
    assert [row["met"] for row in doc["checks"]] == [True, True]
    assert doc["details"]["doors_after"]["persons_at_end"] == [50]
    assert doc["details"]["fleet"]["ended"] == 3 and doc["details"]["fleet"]["left_queued"] == {}
