"""`accessctl doctor`: is this Pi fit to guard the door? One PASS/WARN/FAIL line per check.

Run it after deploy/install.sh, before starting the service, and whenever
something at the door seems wrong — as the service user, so file and device
permissions are the service's::

    sudo -u accessctl accessctl doctor --config /etc/accessctl/venue.toml

Checks, in order: the configuration is valid; no Wi-Fi or Bluetooth device
(article 23); the clock is synchronised or a real-time clock is fitted; the
GPIO chip opens; each configured serial port exists and opens; pcscd answers
and lists each configured badge reader; the database is writable (a test
write, rolled back: the doctor never stores an event) and its hash chain is
intact; the device key is private; the station's roster keys ([roster]) are
present, of the right kind and private where they must be; the broker accepts
the door's login over TLS (while the door's service runs the doctor never logs
in as the door, which would replace its connection: it checks TLS and the
certificate, and reads the door's own link state from its latest
link_up/link_down event); the station's public key verifies the door's roster
(the manifest retained at the broker, or the door's latest roster event while
its service runs). Exit status
0 when nothing FAILed (WARN lines are advice), 1 otherwise.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from firmware_py.doctor.checks import (
    FAIL,
    PASS,
    WARN,
    CheckResult,
    check_badge_readers,
    check_broker,
    check_clock,
    check_config,
    check_database,
    check_device_key,
    check_gpio,
    check_serial_ports,
    check_wireless,
)
from firmware_py.doctor.probes import Probes
from firmware_py.doctor.roster_keys import check_roster_bundle, check_roster_keys

log = logging.getLogger(__name__)

__all__ = ["CheckResult", "Probes", "PASS", "WARN", "FAIL", "add_commands", "diagnose", "report", "run_doctor"]


def add_commands(subparsers, common: Callable) -> None:
    """Register ``accessctl doctor`` (called by firmware_py.cli.main)."""
    p = subparsers.add_parser("doctor", help="check this Pi: config, no wireless, clock, devices, database, "
                                             "roster keys, broker",
                              description=__doc__.split("\n\n")[0])
    common(p)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the broker (default 5)")
    p.set_defaults(handler=run_doctor)


def _guarded(name: str, check: Callable[[], CheckResult | list[CheckResult]]) -> list[CheckResult]:
    """Run one check; a check that crashes is a FAIL line, never a traceback that hides the others."""
    try:
        result = check()
    except Exception as exc:  # noqa: BLE001 - the doctor must report, not crash
        log.debug("check %s crashed", name, exc_info=True)
        return [CheckResult(FAIL, name, f"the check itself failed: {type(exc).__name__}: {exc}",
                            "report this with the output of the command")]
    return result if isinstance(result, list) else [result]


def diagnose(config_path: str | Path, *, database: str | None = None, broker: str | None = None,
             probes: Probes | None = None, timeout: float = 5.0) -> list[CheckResult]:
    """Every check's result, in order. Checks that need the configuration are left out when it is invalid."""
    probes = probes or Probes()
    config_result, cfg = check_config(config_path, database=database, broker=broker)
    results = [config_result]
    results += _guarded("wireless", lambda: check_wireless(probes))
    results += _guarded("clock", lambda: check_clock(probes, cfg))
    results += _guarded("gpio", lambda: check_gpio(probes))
    if cfg is None:
        return results
    results += _guarded("serial", lambda: check_serial_ports(probes, cfg))
    results += _guarded("pcsc", lambda: check_badge_readers(probes, cfg))
    results += _guarded("database", lambda: check_database(probes, cfg))
    results += [CheckResult(WARN, "config", f"{cfg.path}: {note}") for note in cfg.roster.notes]
    results += _guarded("device key", lambda: check_device_key(probes, cfg))
    results += _guarded("roster keys", lambda: check_roster_keys(probes, cfg))
    results += _guarded("broker", lambda: check_broker(probes, cfg, timeout=timeout))
    if all(r.ok for r in results if r.check == "roster keys"):
        results += _guarded("roster", lambda: check_roster_bundle(probes, cfg, timeout=timeout))
    return results


def report(results: list[CheckResult], out: TextIO, *, seconds: float | None = None) -> None:
    """Print the results for a technician: status, check, finding, and ``→`` what to do."""
    indent = " " * 18
    for r in results:
        first, *rest = r.message.splitlines() or [""]
        print(f"{r.status:<5} {r.check:<11} {first}", file=out)
        for line in rest:
            print(f"{indent}{line}", file=out)
        if r.action and r.status != PASS:
            print(f"{indent}→ {r.action}", file=out)
    counts = {s: sum(r.status == s for r in results) for s in (PASS, WARN, FAIL)}
    took = f" in {seconds:.2f} s" if seconds is not None else ""
    verdict = "ready" if not counts[FAIL] else "NOT ready: fix the FAIL lines"
    warnings = f"{counts[WARN]} warning" + ("" if counts[WARN] == 1 else "s")
    print(f"\n{counts[PASS]} passed, {warnings}, {counts[FAIL]} failed{took}: {verdict}", file=out)


def run_doctor(args, *, probes: Probes | None = None, out: TextIO | None = None) -> int:
    """The command's handler: 0 when no check failed, 1 otherwise."""
    started = time.monotonic()
    results = diagnose(args.config, database=args.db, broker=args.broker, probes=probes,
                       timeout=getattr(args, "timeout", 5.0))
    report(results, out or sys.stdout, seconds=time.monotonic() - started)
    return 0 if all(r.ok for r in results) else 1
