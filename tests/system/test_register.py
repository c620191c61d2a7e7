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
from tests.fixtures.constants import REPO


@pytest.fixture(scope="module")
def day_db(pcscd, tmp_path_factory):
    """The demo morning's log, kept on disk."""
    work = tmp_path_factory.mktemp("register")
    result = ScenarioRunner(load_scenario(REPO / "scenarios" / "demo_day.toml"), workdir=work,
                            db=work / "events.db", out=lambda _: None).run()
    assert result.ok
    return work / "events.db"


def export(db, *args):
    proc = subprocess.run([sys.executable, "-m", "firmware_py.cli.main", "log", "export", "--config",
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


# ---------------------------------------------------------------- hostile text (no badge stack needed)

FORGED_CARD = "=cmd|' /C calc'!A0"  # 18 characters on a forged card's ID field
FORMULA_NAMES = ('=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tTab", "\rCR")


def hostile_log(tmp_path) -> Path:
    """A door log whose names (from a roster older than the control-character check) and forged
    card would each be a formula in a spreadsheet."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from firmware_py.core.clock import SimulatedClock
    from firmware_py.core.idnumber import mask
    from firmware_py.storage.db import open_db
    from firmware_py.storage.eventstore import EventStore

    db = open_db(tmp_path / "events.db")
    store = EventStore(db, site="hn-archive-1", door="scan-room",
                       clock=SimulatedClock(datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))))
    for name in FORMULA_NAMES:
        store.append("access", "access_denied", direction="in", person={"person_id": "P009", "name": name,
                                                                        "role": "visitor"},
                     credential={"kind": "resident_id", "masked": "430102********123X"}, reason="revoked")
    store.append("access", "access_denied", direction="in", credential={"kind": "resident_id",
                                                                        "masked": mask(FORGED_CARD)},
                 reason="invalid_id_number")
    db.conn.close()
    return tmp_path / "events.db"


def test_log_export_neutralises_cells_a_spreadsheet_would_run_as_formulas(tmp_path):
    out = tmp_path / "register.csv"
    proc = export(hostile_log(tmp_path), "--from", "2026-11-23", "--to", "2026-11-23", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert [r["name"] for r in rows[:-1]] == ["'" + name for name in FORMULA_NAMES]
    assert rows[-1]["credential"] == "'=CMD|'********'!A0"
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for cell in r.values())


def test_log_export_leaves_ordinary_cells_and_json_lines_as_they_are(tmp_path):
    db = hostile_log(tmp_path)
    rows = list(csv.DictReader(io.StringIO(export(db, "--from", "2026-11-23", "--to", "2026-11-23").stdout)))
    assert rows[0]["time"].startswith("2026-11-23T09:00") and rows[0]["credential"] == "430102********123X"
    lines = export(db, "--from", "2026-11-23", "--to", "2026-11-23", "--format", "jsonl").stdout.splitlines()
    assert json.loads(lines[0])["name"] == FORMULA_NAMES[0]  # data for programs, not a spreadsheet
