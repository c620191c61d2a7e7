"""The benchmarks (bench/) at tiny sizes: they run, write JSON of the documented shape, and measure.

Targets are never asserted here: a benchmark reports whether a target was met,
and a missed target is a result, not a failure. The figures in
docs/performance.md come from `scripts/bench.sh` on a quiet machine.
"""

from __future__ import annotations

import json

import pytest

from bench import backlog, decision, memory, pin, report, storage
from bench.common import Result, check
from bench.data import Workspace

KEYS = {"name", "title", "started", "seconds", "quick", "machine", "params", "checks", "details", "notes", "profiles"}
CHECK_KEYS = {"metric", "unit", "product", "baseline", "ratio", "target", "met"}


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return Workspace(tmp_path / "work")


def written(result, tmp_path) -> dict:
    """The result as written to disk and read back, after checking its shape."""
    doc = json.loads(result.write(tmp_path / "results").read_text(encoding="utf-8"))
    assert KEYS <= set(doc)
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["cpu"] and doc["machine"]["filesystem"]["type"]
    assert doc["checks"], "a benchmark reports at least one figure against its target"
    for row in doc["checks"]:
        assert set(row) == CHECK_KEYS
        assert isinstance(row["met"], bool) and row["target"]
        assert _is_figure(row["product"])
        if row["baseline"] is not None:
            assert _is_figure(row["baseline"])
    return doc


def _is_figure(value) -> bool:
    """A measured figure: a finite number, not negative. It may be 0.0: figures are rounded
    (to 1 ms for seconds), and how fast the machine is must not decide whether a test passes."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf")


def timed_checks(doc: dict) -> list[dict]:
    return [row for row in doc["checks"] if row["unit"] in ("ms", "s", "MB", "msg/s")]


def test_the_decision_benchmark_times_decisions_grants_and_the_baseline(workspace, tmp_path):
    result = decision.run(workspace, quick=True, rosters=(20,), cycles=2, stored_events=300, profile_cycles=1)
    doc = written(result, tmp_path)
    assert [case["label"] for case in doc["details"]["cases"]] == ["20 persons", "20 persons + 300 stored events"]
    for case in doc["details"]["cases"]:
        for key in ("release", "decision_badge", "decision_id_card", "grant", "grant_append", "baseline_append",
                    "baseline_after_idle"):
            assert case[key]["n"] > 0 and _is_figure(case[key]["p50_ms"])
            assert case[key]["p99_ms"] >= case[key]["p50_ms"]


def test_the_backlog_benchmark_flushes_after_an_outage_and_counts_what_arrived(workspace, tmp_path, mosquitto_files):
    doc = written(backlog.run(workspace, quick=True, count=200, broker_files=mosquitto_files), tmp_path)
    throughput, lost = doc["checks"]
    assert throughput["product"] > 0 and throughput["baseline"] > 0
    assert lost["product"] >= 0
    assert doc["details"]["link"]["queued"] == 200
    assert set(doc["details"]["raw_paho"]) == {"20", "100"}


def test_the_storage_benchmark_times_verify_by_library_and_cli_and_the_import(workspace, tmp_path):
    doc = written(storage.run(workspace, quick=True, persons=30, events=500), tmp_path)
    assert doc["details"]["verify"]["events"] >= 500 and doc["details"]["import"]["rows"] == 30


def test_the_memory_benchmark_measures_the_running_controller_and_a_bare_process(workspace, tmp_path):
    doc = written(memory.run(workspace, quick=True, persons=30, runs=1, stored_events=0), tmp_path)
    assert all(row["product"] > 0 for row in doc["checks"] if row["unit"] == "MB")  # memory is never 0
    (case,) = doc["details"]["cases"]
    assert case["controller_started_stored"] == 1
    assert case["product"][0]["exit_code"] == 0


def test_the_pin_benchmark_times_entries_with_and_without_a_pin_and_the_hash(workspace, tmp_path):
    doc = written(pin.run(workspace, quick=True, persons=10, cycles=2, hash_samples=2), tmp_path)
    d = doc["details"]
    assert d["release_card"]["n"] == d["release_card_pin"]["n"] == 2
    assert d["pin_check_on_loop"]["p50_ms"] > 0 and d["hash"]["cpu"]["best_ms"] > 0
    assert d["hash"]["params"] == {"n": 2**14, "r": 8, "p": 1, "memory_mib": 16.0}
    assert "card + PIN → release" in report.render([doc])


def test_a_figure_rounded_to_zero_on_a_fast_machine_passes_the_shape_check(tmp_path):
    """30 bare inserts take under half a millisecond on a fast machine: rounded, 0.0 s."""
    result = Result("storage", "t", data_dir=tmp_path, quick=True)
    result.add(check("roster import, 30 rows", unit="s", product=0.0004, baseline=0.0003, target="≤ 10 s", met=True))
    doc = written(result, tmp_path)
    assert doc["checks"][0]["product"] == 0.0 and doc["checks"][0]["baseline"] == 0.0


def test_the_report_rewrites_only_the_generated_block_of_the_document(tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Performance\n\nby hand before\n\n{report.BEGIN}\nold figures\n{report.END}\n\nby hand after\n")
    result = {"name": "storage", "title": "t", "started": "2026-11-25T13:00:00+08:00", "seconds": 1.0,
              "quick": False, "machine": {"cpu": "cpu", "cores": 2, "ram_mb": 1024, "python": "3.11", "sqlite": "3",
                                          "filesystem": {"device": "/dev/x", "type": "ext4", "mount": "/"}},
              "params": {}, "checks": [{"metric": "m", "unit": "s", "product": 1.5, "baseline": 0.5, "ratio": 3.0,
                                        "target": "≤ 10 s", "met": True}],
              "details": {}, "notes": [], "profiles": {}}
    report.update_doc([result], doc)
    text = doc.read_text()
    assert "by hand before" in text and "by hand after" in text and "old figures" not in text
    assert "| storage | m | 1.5 s | 0.5 s | 3× | ≤ 10 s | yes |" in text
