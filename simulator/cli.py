"""`accessctl-sim`: scenarios and the interactive console on simulated hardware."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from firmware_py.error_exit import run_reporting_errors

from .demo import DEFAULT_LISTEN, DEFAULT_WORKDIR
from .scenario import REPO, load_scenario


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="accessctl-sim",
                                     description="Run the real controller and drivers on simulated door hardware.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="run scenario files; exit 0 when every expectation holds")
    p.add_argument("scenarios", nargs="+", type=Path, metavar="SCENARIO.toml")
    p.add_argument("--broker", help="also publish over MQTT to mqtt[s]://host:port; a plain mqtt:// broker is "
                                    "reached without TLS or login (the config's username, password and TLS files "
                                    "are for mqtts:// only)")
    p.add_argument("--db", type=Path, help="keep the door's database in this file (default: a temporary one)")
    p.add_argument("--config", type=Path,
                   help="use this config instead of the scenarios' own, its [mqtt] included (e.g. one with "
                        "your broker's credentials); the scenarios' own configs never reach their broker")
    p.add_argument("--verbose", "-v", action="store_true", help="show the drivers' and controller's log")
    p = sub.add_parser("demo", help="a morning at the door, through a lab broker into the station's page",
                       description="Start a private Mosquitto and the supervision station on loopback, play "
                                   "scenarios/demo_day.toml on simulated hardware through them, print the page's "
                                   "address and a demo login, and keep serving until Ctrl-C.")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                   help=f"broker store, archive and logs (default: {DEFAULT_WORKDIR}/); emptied of the previous "
                        "demo's files at each start")
    p.add_argument("--listen", help=f"HOST:PORT of the page (default: {DEFAULT_LISTEN}, or a free port if it is "
                                    "taken)")
    p.add_argument("--exit-after-morning", action="store_true",
                   help="stop once the station has archived every event of the morning (for scripts and tests)")
    p.add_argument("--verbose", "-v", action="store_true")
    p = sub.add_parser("console", help="drive the simulated door by hand")
    p.add_argument("--config", default=str(REPO / "config" / "venue.example.toml"))
    p.add_argument("--roster", default=str(REPO / "config" / "roster.example.csv"))
    p.add_argument("--start", help="simulated start time (ISO 8601 with offset; default: now)")
    p.add_argument("--db", type=Path)
    p.add_argument("--broker", help="also publish the door's events over MQTT to mqtt[s]://host:port (e.g. the "
                                    "broker a station watches); a plain mqtt:// broker is reached without TLS or "
                                    "login")
    p.add_argument("--verbose", "-v", action="store_true")
    from .fleet import add_command as add_fleet

    add_fleet(sub)
    return parser


def run_scenarios(paths: list[Path], *, broker=None, db=None, config=None) -> int:
    from .pcsc_stack import badge_stack
    from .runner import ScenarioRunner

    scenarios = [load_scenario(p) for p in paths]  # every file checked before anything runs
    if config is not None:
        scenarios = [replace(s, config=config) for s in scenarios]
    colour = sys.stdout.isatty()
    failed = []
    with badge_stack() as badges:
        if not badges.available:
            print(f"note: badge readers are not simulated: {badges.why}", file=sys.stderr)
        for i, scenario in enumerate(scenarios, start=1):
            if len(scenarios) > 1:
                print(f"[{i}/{len(scenarios)}] ", end="")
            result = ScenarioRunner(scenario, db=db, broker=broker, keep_mqtt=config is not None,
                                    badges=badges, colour=colour).run()
            if not result.ok:
                failed.append(scenario)
    if len(scenarios) > 1:
        print(f"{len(scenarios) - len(failed)} of {len(scenarios)} scenarios passed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_reporting_errors("accessctl-sim", lambda: run_command(args))


def run_command(args: argparse.Namespace) -> int:
    if args.command == "run":
        return run_scenarios(args.scenarios, broker=args.broker, db=args.db, config=args.config)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(workdir=args.workdir, listen=args.listen, exit_after_morning=args.exit_after_morning,
                        out=lambda line: print(line, flush=True))
    if args.command == "fleet":
        from .fleet import run_fleet

        return run_fleet(args)
    from .console import run_console

    return run_console(args)


if __name__ == "__main__":
    sys.exit(main())
