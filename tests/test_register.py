"""The entry register: `accessctl log export` over a real event log."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.runner import ScenarioRunner
from simulator.scenario import load_scenario

REPO = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def day_db(pcscd, tmp_path_factory):
    """The demo morning's log, kept on disk."""
    work = tmp_path_factory.mktemp("register")
    result = ScenarioRunner(load_scenario(REPO / "scenarios" / "demo_day.toml"), workdir=work,
                            db=work / "events.db", out=lambda _: None).run()
    assert result.ok
    return work / "events.db"


def export(db, *args):
    proc = subprocess.run([sys.executable, "-m", "firmware_py.cli", "log", "export", "--config",
                           str(REPO / "config" / "venue.example.toml"), "--db", str(db), *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    return proc


def test_the_register_lists_the_days_decisions_with_masked_credentials_only(day_db):
    proc = export(day_db, "--from", "2026-11-23", "--to", "2026-11-23")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    decisions = [(r["person_id"], r["decision"], r["reason"]) for r in rows]
    assert ("P001", "access_denied", "outside_working_hours") in decisions
    assert ("P002", "access_denied", "metal_detected") in decisions
    assert ("P003", "passage", "") in decisions
    granted = next(r for r in rows if r["decision"] == "access_granted" and r["person_id"] == "P002")
    assert granted["screening"] == "clear" and granted["credential"].count("*") == 8
    people = (REPO / "scenarios" / "people.csv").read_text(encoding="utf-8")
    full_numbers = [line.split(",")[2] for line in people.splitlines()[1:]]
    assert not any(number in proc.stdout for number in full_numbers)


def test_a_period_without_events_exports_only_the_header(day_db):
    proc = export(day_db, "--from", "2026-11-24", "--to", "2026-11-30")
    assert proc.returncode == 0
    assert proc.stdout.strip().splitlines() == [
        "seq,time,direction,person_id,name,role,credential_kind,credential,decision,reason,screening"]


def test_jsonl_export_has_one_object_per_row(day_db):
    proc = export(day_db, "--from", "2026-11-23", "--to", "2026-11-23", "--format", "jsonl")
    lines = proc.stdout.splitlines()
    assert lines and all(json.loads(line)["time"].startswith("2026-11-23T") for line in lines)


def test_a_reversed_period_is_refused(day_db):
    proc = export(day_db, "--from", "2026-11-23", "--to", "2026-11-01")
    assert proc.returncode == 2 and "is before --from" in proc.stderr
