"""The interactive console, driven through its standard input as a person would type."""

import subprocess
import sys

from tests.fixtures.constants import REPO


def run_console(lines: str) -> str:
    proc = subprocess.run([sys.executable, "-c", "from simulator.cli import main; raise SystemExit(main())",
                           "console", "--start", "2026-11-23T09:00:00+08:00"],
                          input=lines, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_person_badges_in_through_the_console_and_the_state_line_follows(pcscd):
    out = run_console("badge P001\nwalk\nopen\nclose\nstatus\nquit\n")
    assert "准许通行 granted  进 in  P001" in out
    assert "lock RELEASED" in out
    assert "通过 passage  进 in  P001" in out
    assert "inside: P001" in out


def test_a_metal_alarm_shows_red_and_the_buzzer_until_it_times_out(pcscd):
    out = run_console("card P002\nwalk metal\nwait 11s\nquit\n").splitlines()
    alarm = next(i for i, line in enumerate(out) if "检出金属 metal detected" in line)
    assert "buzzer=on" in out[alarm + 2]
    assert "lights: all off" in out[-1]


def test_a_mistyped_command_is_refused_with_a_hint(pcscd):
    out = run_console("fly\ncard NOBODY\nquit\n")
    assert "unknown command 'fly'; type help" in out
    assert "name a person on the roster" in out


def test_names_are_printed_without_terminal_control_codes(tmp_path):
    """A name stored before roster import refused control characters (or read from a hostile
    database with --db) is shown escaped: it cannot clear the screen or draw a fake line."""
    import io
    from dataclasses import replace
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from firmware_py.config.schema import load_config
    from firmware_py.core.clock import SimulatedClock
    from firmware_py.core.inputs import BadgeRead
    from simulator.console import DoorConsole
    from simulator.door_sim import SimulatedDoor
    from simulator.runner import RosterPerson, prepare_database, read_people
    from simulator.scenario import Scenario

    fake = "  [2026-11-23 09:00:00] lock RELEASED, door OPEN (fake)"
    hostile = f"测试甲\x1b[2J\n{fake}\u202e"
    people_csv = REPO / "scenarios" / "people.csv"
    cfg = load_config(REPO / "config" / "venue.example.toml")
    cfg = replace(cfg, storage=replace(cfg.storage, database=tmp_path / "events.db", secret=tmp_path / "device.key"),
                  mqtt=replace(cfg.mqtt, enabled=False))
    clock = SimulatedClock(datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
    prepare_database(cfg, Scenario(tmp_path / "t.toml", "t", clock.now(), cfg.path, people_csv, ()), clock)
    import sqlite3
    with sqlite3.connect(cfg.storage.database) as db:
        db.execute("UPDATE persons SET name = ? WHERE person_id = 'P001'", (hostile,))
    people = read_people(people_csv)
    people["P001"] = RosterPerson("P001", hostile, people["P001"].id_number, people["P001"].badges)
    out = io.StringIO()
    with SimulatedDoor(cfg, clock=clock, badges=False) as door:
        console = DoorConsole(door, people, stdout=out)
        console.preloop()
        door.inputs.put(BadgeRead("outside", people["P001"].badges[0]))
        door.pump()
        console.show()
        for command in ("walk", "open", "close", "status"):
            console.postcmd(console.onecmd(command), command)
    text = out.getvalue()
    assert "\x1b" not in text and "\u202e" not in text
    assert "\\x1b[2J" in text
    assert not any(line.startswith(fake) for line in text.splitlines())
    assert text.count("测试甲") >= 3  # the intro, the events and the status line all show it, escaped


def test_a_pin_is_set_and_typed_at_the_keypad_through_the_console(pcscd):
    proc = subprocess.run([sys.executable, "-c", "from simulator.cli import main; raise SystemExit(main())",
                           "console", "--start", "2026-11-23T09:00:00+08:00",
                           "--config", str(REPO / "scenarios" / "config" / "pin_door.toml")],
                          input="pin P001 739146\npin P001 739164 duress\nbadge P001\nkeys 739164#\nwalk\nquit\n",
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "duress PIN of P001 set" in proc.stdout
    assert ", pin, " in proc.stdout  # the door's state while it waits for the PIN
    assert "胁迫报警 duress" in proc.stdout and "准许通行 granted  进 in  P001" in proc.stdout
    assert "keys needs" not in proc.stdout
