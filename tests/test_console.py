"""The interactive console, driven through its standard input as a person would type."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parent.parent


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
