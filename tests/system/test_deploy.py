"""deploy/: the systemd unit, the install script in a staging tree, and the commissioning wiring table."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from firmware_py.config.schema import load_config
from tests.fixtures.constants import REPO

UNIT = REPO / "deploy" / "accessctl.service"
INSTALL = REPO / "deploy" / "install.sh"
PRODUCTION_EXEC = "/opt/accessctl/venv/bin/accessctl"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                   reason="systemd-analyze is missing: apt-get install systemd (scripts/dev.sh does)")


# --------------------------------------------------------------------------- the unit


def unit_settings(text: str) -> dict[str, list[str]]:
    """``key -> [values]`` of a unit file (keys may repeat, e.g. DeviceAllow)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def verifiable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists here (the dev venv's accessctl)."""
    executable = Path(shutil.which("accessctl") or REPO / ".venv" / "bin" / "accessctl")
    assert executable.exists(), "the project's accessctl entry point is not installed"
    copy = tmp_path / "accessctl.service"
    copy.write_text(UNIT.read_text().replace(PRODUCTION_EXEC, str(executable)))
    return copy


@needs_systemd
def test_the_unit_passes_systemd_analyze_verify_without_a_warning(tmp_path):
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(verifiable_copy(tmp_path))],
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "")


@needs_systemd
def test_the_shipped_unit_only_lacks_the_installed_executable(tmp_path):
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(UNIT)], capture_output=True, text=True, timeout=30)
    if Path(PRODUCTION_EXEC).exists():
        assert result.stderr == ""
    else:
        assert result.stderr.strip().splitlines() == [
            f"accessctl.service: Command {PRODUCTION_EXEC} is not executable: No such file or directory"]


@needs_systemd
def test_the_unit_is_rated_ok_by_systemd_analyze_security(tmp_path):
    result = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager",
                             str(verifiable_copy(tmp_path))], capture_output=True, text=True, timeout=30)
    m = re.search(r"Overall exposure level for accessctl\.service: ([\d.]+) (\w+)", result.stdout)
    assert m, result.stdout + result.stderr
    assert float(m.group(1)) <= 2.0, m.group(0)


def test_the_unit_is_a_notify_service_with_a_watchdog_restarted_for_ever():
    s = unit_settings(UNIT.read_text())
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["WatchdogSec"] == ["10"] and s["Restart"] == ["always"] and s["RestartSec"] == ["2"]
    assert s["StartLimitIntervalSec"] == ["0"]
    assert s["ExecStart"] == [f"{PRODUCTION_EXEC} run --config /etc/accessctl/venue.toml"]
    assert s["KillSignal"] == ["SIGTERM"] and s["TimeoutStopSec"]


def test_the_unit_runs_sandboxed_as_the_service_user():
    s = unit_settings(UNIT.read_text())
    assert s["User"] == ["accessctl"] and s["SupplementaryGroups"] == ["gpio dialout"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables", "ProtectControlGroups"):
        assert s[key] == ["yes"], key
    assert s["ProtectSystem"] == ["strict"] and s["ReadWritePaths"] == ["/var/lib/accessctl"]
    assert s["StateDirectory"] == ["accessctl"]
    assert s["WorkingDirectory"] == ["/run/accessctl"] and s["RuntimeDirectory"] == ["accessctl"]  # lgpio's pipes
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]


def test_the_unit_allows_only_the_gpio_chip_and_serial_ports():
    s = unit_settings(UNIT.read_text())
    assert s["DevicePolicy"] == ["closed"]
    assert set(s["DeviceAllow"]) == {"/dev/gpiochip0 rw", "char-gpiochip rw", "char-ttyUSB rw", "char-ttyACM rw",
                                     "char-ttyAMA rw", "char-ttyS rw"}
    assert "PrivateDevices" not in s


# --------------------------------------------------------------------------- install.sh --root


def run_install(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(INSTALL), "--root", str(root), "--no-venv", *args],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its mode and content digest (symlinks by target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if p.is_symlink():
                out[str(p.relative_to(root))] = ("link", os.readlink(p))
            elif p.is_dir():
                out[str(p.relative_to(root))] = ("dir", st.st_mode & 0o7777)
            else:
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                out[str(p.relative_to(root))] = ("file", st.st_mode & 0o7777, digest)
    return out


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


@pytest.fixture
def staged(tmp_path) -> Path:
    root = tmp_path / "root"
    run_install(root)
    return root


def test_install_makes_the_config_directory_0750(staged):
    assert mode(staged / "etc/accessctl") == 0o750
    assert mode(staged / "etc/accessctl/tls") == 0o750


def test_install_puts_the_example_config_in_place_0640(staged):
    config = staged / "etc/accessctl/venue.toml"
    assert mode(config) == 0o640
    assert config.read_bytes() == (REPO / "config/venue.example.toml").read_bytes()


def test_install_makes_the_state_directory_0700(staged):
    assert mode(staged / "var/lib/accessctl") == 0o700


def test_install_installs_the_unit_and_udev_rule_0644(staged):
    unit = staged / "etc/systemd/system/accessctl.service"
    assert unit.read_bytes() == UNIT.read_bytes() and mode(unit) == 0o644
    assert mode(staged / "etc/udev/rules.d/60-accessctl-gpio.rules") == 0o644
    assert os.readlink(staged / "usr/local/bin/accessctl") == PRODUCTION_EXEC


def test_install_records_the_intended_owners_in_a_staging_tree(staged):
    lines = (staged / "accessctl-ownership.txt").read_text().splitlines()
    assert "0640 root:accessctl /etc/accessctl/venue.toml" in lines
    assert "0750 root:accessctl /etc/accessctl" in lines
    assert "0700 accessctl:accessctl /var/lib/accessctl" in lines
    assert any(line.startswith("user accessctl ") and "groups gpio,dialout" in line for line in lines)


def test_install_twice_leaves_the_same_tree(staged):
    before = snapshot(staged)
    run_install(staged)
    assert snapshot(staged) == before


def test_install_keeps_an_edited_config_and_restores_its_mode(staged):
    config = staged / "etc/accessctl/venue.toml"
    config.write_text("# edited on site\n")
    config.chmod(0o644)
    result = run_install(staged)
    assert config.read_text() == "# edited on site\n"
    assert mode(config) == 0o640
    assert "venue.toml exists: kept as it is" in result.stdout


def test_dry_run_creates_nothing(tmp_path):
    root = tmp_path / "root"
    result = run_install(root, "--dry-run")
    assert not root.exists()
    assert "[dry-run] install -m 0640" in result.stdout and "(dry run: nothing was changed)" in result.stdout


def test_dry_run_changes_nothing_in_an_installed_tree(staged):
    (staged / "etc/accessctl/venue.toml").chmod(0o600)
    before = snapshot(staged)
    result = run_install(staged, "--dry-run")
    assert snapshot(staged) == before
    assert "[dry-run] chmod 0640" in result.stdout


def test_dry_run_prints_the_virtual_environment_steps(tmp_path):
    result = subprocess.run(["bash", str(INSTALL), "--root", str(tmp_path / "r"), "--dry-run"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "-m venv --system-site-packages" in result.stdout
    assert f"-m pip install --quiet --disable-pip-version-check --upgrade {REPO}" in result.stdout


def test_install_refuses_to_install_vsmartcard_vpcd(tmp_path):
    result = run_install(tmp_path / "root", "--package", "vsmartcard-vpcd", check=False)
    assert result.returncode == 2
    assert "refusing to install vsmartcard-vpcd" in result.stderr
    assert not (tmp_path / "root" / "etc").exists()


def test_install_warns_when_vpcd_is_present(staged):
    (staged / "etc/reader.conf.d").mkdir(parents=True)
    (staged / "etc/reader.conf.d/vpcd").write_text("FRIENDLYNAME \"Virtual PCD\"\n")
    result = run_install(staged)
    assert "WARNING: vsmartcard-vpcd is present" in result.stderr
    assert "apt-get purge vsmartcard-vpcd" in result.stderr


def test_a_real_install_without_root_is_refused():
    # CI runs as root: drop to nobody for this one, so the refusal is tested there too.
    as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []
    result = subprocess.run([*as_user, "bash", str(INSTALL)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "run as root" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0 or Path("/etc/accessctl").exists(),
                    reason="needs root on a machine where the controller is not installed")
def test_dry_run_of_a_real_install_lists_user_and_service_steps_and_changes_nothing():
    result = subprocess.run(["bash", str(INSTALL), "--dry-run", "--no-apt"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[dry-run] useradd --system --user-group" in out or "[dry-run] usermod" in out
    assert "[dry-run] chown root:accessctl /etc/accessctl/venue.toml" in out
    assert "[dry-run] systemctl enable accessctl.service" in out
    assert not Path("/etc/accessctl").exists() and not Path("/etc/systemd/system/accessctl.service").exists()


# --------------------------------------------------------------------------- install.sh: roster keys


@pytest.fixture
def station_keys(tmp_path) -> Path:
    from firmware_py.station.roster.keys import make_keys

    return make_keys(tmp_path / "station-keys").signing_key.parent


def test_install_puts_the_station_public_key_and_the_site_key_in_place_with_safe_owners(tmp_path, station_keys):
    root = tmp_path / "root"
    result = run_install(root, "--station-public-key", str(station_keys / "roster-signing.pub"),
                         "--site-key", str(station_keys / "site-roster.key"))
    public, site = root / "etc/accessctl/roster-signing.pub", root / "etc/accessctl/site-roster.key"
    assert public.read_bytes() == (station_keys / "roster-signing.pub").read_bytes() and mode(public) == 0o640
    assert site.read_bytes() == (station_keys / "site-roster.key").read_bytes() and mode(site) == 0o600
    lines = (root / "accessctl-ownership.txt").read_text().splitlines()
    assert "0640 root:accessctl /etc/accessctl/roster-signing.pub" in lines
    assert "0600 accessctl:accessctl /etc/accessctl/site-roster.key" in lines
    assert 'station_public_key = "/etc/accessctl/roster-signing.pub"' in result.stdout  # what to put in venue.toml


def test_install_again_without_the_key_options_keeps_the_keys_and_puts_their_modes_right(tmp_path, station_keys):
    root = tmp_path / "root"
    run_install(root, "--station-public-key", str(station_keys / "roster-signing.pub"),
                "--site-key", str(station_keys / "site-roster.key"))
    site = root / "etc/accessctl/site-roster.key"
    site.chmod(0o644)
    run_install(root)
    assert mode(site) == 0o600 and site.read_bytes() == (station_keys / "site-roster.key").read_bytes()


def test_install_stops_saying_what_to_configure_once_venue_toml_names_the_keys(tmp_path, station_keys):
    root = tmp_path / "root"
    run_install(root, "--site-key", str(station_keys / "site-roster.key"))
    config = root / "etc/accessctl/venue.toml"
    config.write_text(config.read_text() + '\n[roster]\nstation_public_key = "/etc/accessctl/roster-signing.pub"\n')
    assert "station_public_key = " not in run_install(root).stdout


def test_install_refuses_the_station_private_key_as_the_public_key_and_changes_nothing(tmp_path, station_keys):
    result = run_install(tmp_path / "root", "--station-public-key", str(station_keys / "roster-signing.key"),
                         check=False)
    assert result.returncode == 2
    assert "is a PRIVATE key: the station's signing key never leaves the station" in result.stderr
    assert not (tmp_path / "root").exists()


def test_install_refuses_a_site_key_that_is_not_32_bytes(tmp_path):
    short = tmp_path / "site-roster.key"
    short.write_bytes(b"0123456789abcdef")
    result = run_install(tmp_path / "root", "--site-key", str(short), check=False)
    assert result.returncode == 2
    assert "is 16 bytes, not 32: copy the site's site-roster.key from the station" in result.stderr
    assert not (tmp_path / "root").exists()


# --------------------------------------------------------------------------- commissioning guide


def test_the_wiring_table_matches_the_example_config_and_the_pi_header():
    from gpiozero.pins.mock import MockFactory

    board = MockFactory().board_info
    rows = re.findall(r"`\[hardware\.(\w+)\] (\w+)` \| GPIO(\d+) \| (\d+) \|",
                      (REPO / "docs" / "commissioning.md").read_text())
    hw = load_config(REPO / "config" / "venue.example.toml").hardware
    documented = {}
    for section, key, gpio, header in rows:
        [(_, pin)] = board.find_pin(f"GPIO{gpio}")
        assert pin.number == int(header), f"GPIO{gpio} is header pin {pin.number}, not {header}"
        documented[(section, key)] = int(gpio)
    configured = {("lock", "pin"): hw.lock.pin, ("door_contact", "pin"): hw.door_contact.pin,
                  ("exit_button", "pin"): hw.exit_button.pin, ("gate", "alarm_pin"): hw.gate.alarm_pin,
                  ("gate", "passage_pin"): hw.gate.passage_pin}
    configured.update({("indicators", k): getattr(hw.indicators, k) for k in
                       ("buzzer_pin", "green_outside_pin", "red_outside_pin", "green_inside_pin", "red_inside_pin")})
    assert {k: v for k, v in documented.items() if k in configured} == configured
    assert documented[("gate", "tamper_pin")] == 26  # commented out in the example; documented for the installer
