"""The command-line shells: one error exit, read-only exports, and what `roster list` loads."""

from __future__ import annotations

import sys

import pytest

from firmware_py.cli.main import main
from simulator import cli as sim_cli
from tests.fixtures.roster import EXAMPLE_CONFIG, EXAMPLE_ROSTER


@pytest.fixture
def config_file(tmp_path):
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    text = text.replace('"/var/lib/accessctl/events.db"', f'"{tmp_path}/state/events.db"')
    text = text.replace('"/var/lib/accessctl/device.key"', f'"{tmp_path}/state/device.key"')
    path = tmp_path / "venue.toml"
    path.write_text(text, encoding="utf-8")
    return path


def export(config_file, *argv) -> int:
    return main(["log", "export", "--config", str(config_file), "--from", "2026-11-23", "--to", "2026-11-23", *argv])


def test_log_export_of_a_missing_database_creates_nothing_and_says_so(config_file, tmp_path, capsys):
    assert export(config_file) == 2
    assert "no such database" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def test_log_export_to_an_unwritable_path_is_one_line_and_exit_2(config_file, tmp_path, capsys):
    assert main(["roster", "import", str(EXAMPLE_ROSTER), "--config", str(config_file)]) == 0
    capsys.readouterr()
    assert export(config_file, "--output", str(tmp_path / "no-such-dir" / "register.csv")) == 2
    err = capsys.readouterr().err
    assert err.startswith("accessctl: ") and "no-such-dir" in err and "Traceback" not in err


def test_a_wrong_scenario_file_ends_accessctl_sim_with_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text("[site\n", encoding="utf-8")
    assert sim_cli.main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("accessctl-sim: ") and "not valid TOML" in err and "Traceback" not in err


HEAVY = ("paho", "firmware_py.station", "starlette", "uvicorn")


def test_roster_list_loads_neither_the_station_nor_paho(config_file, capsys):
    main(["roster", "import", str(EXAMPLE_ROSTER), "--config", str(config_file)])
    ours = ("firmware_py", "simulator", *HEAVY)
    saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] in ours}
    for name in saved:  # a fresh import of the command line, as a new `accessctl` process would do
        del sys.modules[name]
    try:
        from firmware_py.cli.main import main as fresh_main

        assert fresh_main(["roster", "list", "--config", str(config_file)]) == 0
        loaded = sorted(name for name in sys.modules if name.startswith(HEAVY))
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] in ours]:
            del sys.modules[name]
        sys.modules.update(saved)
    assert "8 persons" in capsys.readouterr().out
    assert loaded == []
