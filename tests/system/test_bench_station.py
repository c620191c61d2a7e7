"""The station benchmark (bench/station.py) at tiny sizes: it runs all three parts and writes figures of
the documented shape. No speed is asserted: a missed target is a result, not a failure."""

from __future__ import annotations

from bench import station
from bench.data import Workspace
from tests.system.test_bench import _is_figure, written


def test_the_station_benchmark_times_door_to_browser_ingest_and_the_register_query(tmp_path, mosquitto_files,
                                                                                  chromium):
    result = station.run(Workspace(tmp_path / "work"), quick=True, events=10, interval_s=0.02, ingest_events=100,
                         archive_doors=2, archive_days=3, per_day=40, repeats=3, broker_files=mosquitto_files,
                         browser=chromium)
    doc = written(result, tmp_path)
    assert [row["unit"] for row in doc["checks"]] == ["ms", "ms", "events/s", "ms"]
    assert all(row["baseline"] is not None for row in doc["checks"])
    latency = doc["details"]["latency"]
    for part in ("painted", "in_dom", "bare_subscriber"):
        assert latency[part]["n"] == 10 and latency[part]["p99_ms"] >= latency[part]["p50_ms"]
        assert _is_figure(latency[part]["p50_ms"])
    assert latency["missing_in_browser"] == [] and latency["missing_at_subscriber"] == []
    assert doc["details"]["ingest"]["events"] == 100
    register = doc["details"]["register"]
    assert register["rows"] == register["bare_rows"] == 40
    assert "station_events_door_date" in register["plan"]
