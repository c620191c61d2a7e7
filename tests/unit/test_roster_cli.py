"""`accessctl roster …` end to end: the real parser, config file, SQLite file and device secret."""

import io
import stat

import pytest

from firmware_py.cli.main import main
from firmware_py.storage.db import open_db
from tests.fixtures.roster import EXAMPLE_CONFIG, EXAMPLE_ROSTER, HEADER, id_number

ZHAO = "43010219850312123X"  # P001 of the example roster


@pytest.fixture
def config_file(tmp_path):
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    text = text.replace('"/var/lib/accessctl/events.db"', f'"{tmp_path}/state/events.db"')
    text = text.replace('"/var/lib/accessctl/device.key"', f'"{tmp_path}/state/device.key"')
    path = tmp_path / "venue.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run(config_file, *argv) -> int:
    return main(["roster", *argv, "--config", str(config_file)])


def test_import_prints_what_changed_and_what_the_policy_will_deny(config_file, capsys):
    assert run(config_file, "import", str(EXAMPLE_ROSTER)) == 0
    out = capsys.readouterr().out
    assert "imported 8 persons: 8 added, 0 updated, 0 unchanged" in out
    assert "note: P007: no signed commitment" in out


def test_import_creates_the_device_secret_with_mode_0600(config_file, tmp_path):
    run(config_file, "import", str(EXAMPLE_ROSTER))
    assert stat.S_IMODE((tmp_path / "state" / "device.key").stat().st_mode) == 0o600


def test_a_refused_import_exits_2_listing_every_problem_and_writes_nothing(config_file, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    lines = EXAMPLE_ROSTER.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace(",staff,", ",cleaner,")
    lines[5] = lines[5].replace(",office", ",night")
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run(config_file, "import", str(bad)) == 2
    err = capsys.readouterr().err
    assert "line 3, role: 'cleaner'" in err
    assert "line 6, schedule_group: 'night'" in err
    db = open_db(tmp_path / "state" / "events.db")
    assert db.execute("SELECT count(*) FROM persons").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_list_shows_masked_id_numbers_and_never_a_full_one(config_file, capsys):
    run(config_file, "import", str(EXAMPLE_ROSTER))
    capsys.readouterr()
    assert run(config_file, "list") == 0
    out = capsys.readouterr().out
    assert "430102********123X" in out
    for number in [line.split(",")[2] for line in EXAMPLE_ROSTER.read_text(encoding="utf-8").splitlines()[1:]]:
        assert number not in out
    assert "8 persons, 8 active, 0 revoked" in out


def test_list_shows_status_validity_and_vetting_facts(config_file, capsys):
    run(config_file, "import", str(EXAMPLE_ROSTER))
    run(config_file, "revoke", "P002", "--reason", "left the agency")
    capsys.readouterr()
    run(config_file, "list")
    out = capsys.readouterr().out
    p002 = next(line for line in out.splitlines() if line.startswith("P002"))
    p006 = next(line for line in out.splitlines() if line.startswith("P006"))
    p008 = next(line for line in out.splitlines() if line.startswith("P008"))
    assert "revoked" in p002 and "left the agency" in p002
    assert "24 h" in p006
    assert "2026-03-01..2026-10-31" in p008 and "expired" in p008


def test_add_reads_the_id_number_from_standard_input_when_not_given(config_file, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(id_number("43010219850312123") + "\n"))
    code = run(config_file, "add", "--person-id", "P009", "--name", "赵一", "--role", "staff",
               "--employer-type", "own", "--badge", "04a1b2c3", "--badge", "04A1B2D0",
               "--review-date", "2025-12-10", "--training-hours", "48", "--commitment-date", "2025-12-15",
               "--valid-from", "2026-01-01", "--valid-until", "2026-12-31", "--schedule-group", "office")
    assert code == 0
    assert "added P009 赵一 (staff), ID 430102********123X, badges 04A1B2C3, 04A1B2D0" in capsys.readouterr().out


def test_add_refuses_bad_fields_with_exit_status_2(config_file, capsys):
    code = run(config_file, "add", "--person-id", "P009", "--name", "赵一", "--id-number", ZHAO[:17] + "1",
               "--role", "staff", "--employer-type", "agency", "--valid-from", "2026-01-01",
               "--valid-until", "2026-12-31", "--schedule-group", "night")
    assert code == 2
    err = capsys.readouterr().err
    assert "check digit" in err and "schedule_group: 'night'" in err and "organisation: is empty" in err
    assert ZHAO[:17] not in err


def test_revoking_an_unknown_person_exits_2(config_file, capsys):
    assert run(config_file, "revoke", "P404", "--reason", "gone") == 2
    assert "no such person" in capsys.readouterr().err


def test_reinstate_lifts_a_revocation(config_file, capsys):
    run(config_file, "import", str(EXAMPLE_ROSTER))
    run(config_file, "revoke", "P001", "--reason", "suspended")
    assert run(config_file, "reinstate", "P001", "--reason", "cleared") == 0
    assert "reinstated P001" in capsys.readouterr().out


def test_the_example_roster_has_the_documented_columns():
    assert EXAMPLE_ROSTER.read_text(encoding="utf-8").splitlines()[0] == HEADER


# ---------------------------------------------------------------------- PINs

PIN = "739146"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_pin_set_reads_the_pin_from_standard_input_and_stores_only_its_hash(config_file, tmp_path, monkeypatch,
                                                                            capsys, caplog):
    run(config_file, "import", str(EXAMPLE_ROSTER))
    monkeypatch.setattr("sys.stdin", io.StringIO(PIN + "\n"))
    with caplog.at_level("DEBUG"):
        assert run(config_file, "pin", "set", "P001") == 0
    out = capsys.readouterr()
    assert "PIN of P001 set" in out.out
    assert PIN not in out.out + out.err + caplog.text
    for path in (tmp_path / "state").iterdir():  # the database, its WAL, the secret
        assert PIN.encode() not in path.read_bytes()


def test_pin_set_on_a_terminal_asks_twice_without_echo(config_file, monkeypatch, capsys):
    run(config_file, "import", str(EXAMPLE_ROSTER))
    asked = []
    monkeypatch.setattr("sys.stdin", _Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or PIN)
    assert run(config_file, "pin", "set", "P001", "--duress") == 0
    assert len(asked) == 2 and "duress PIN" in asked[0]
    assert "duress PIN of P001 set" in capsys.readouterr().out


def test_pin_set_refuses_two_different_entries_and_changes_nothing(config_file, tmp_path, monkeypatch, capsys):
    run(config_file, "import", str(EXAMPLE_ROSTER))
    answers = iter([PIN, "739147"])
    monkeypatch.setattr("sys.stdin", _Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert run(config_file, "pin", "set", "P001") == 2
    assert "the two PINs differ" in capsys.readouterr().err
    db = open_db(tmp_path / "state" / "events.db")
    assert db.execute("SELECT pin_hash FROM persons WHERE person_id = 'P001'").fetchone()[0] is None


def test_pin_set_for_someone_not_in_the_roster_asks_nothing(config_file, monkeypatch, capsys):
    run(config_file, "import", str(EXAMPLE_ROSTER))
    monkeypatch.setattr("getpass.getpass", lambda prompt: pytest.fail("asked for a PIN that cannot be stored"))
    monkeypatch.setattr("sys.stdin", _Terminal())
    assert run(config_file, "pin", "set", "P404") == 2
    assert "no such person" in capsys.readouterr().err
