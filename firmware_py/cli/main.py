"""`accessctl`: the thin command-line shell over the controller's library.

Every command takes ``--config``; ``--db`` and ``--broker`` override the file.
Errors a user can act on are printed as one clear message with exit status 2;
a failed check (``log verify``) exits 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys

from firmware_py import __version__
from firmware_py.cli.arguments import iso_date, open_config
from firmware_py.config.schema import Config, config_warnings
from firmware_py.core.register import period, register_rows, write_register
from firmware_py.error_exit import run_reporting_errors
from firmware_py.errors import AccessCtlError, StoreError
from firmware_py.storage import inspection
from firmware_py.storage.db import open_read_only
from firmware_py.storage.door_database import open_store
from firmware_py.storage.eventstore import EventStore, verify

DEFAULT_CONFIG = "/etc/accessctl/venue.toml"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=os.environ.get("ACCESSCTL_CONFIG", DEFAULT_CONFIG),
                        help=f"configuration file (default: $ACCESSCTL_CONFIG or {DEFAULT_CONFIG})")
    parser.add_argument("--db", help="database file, overriding [storage] database")
    parser.add_argument("--broker", help="mqtt://host:port or mqtts://host:port, overriding [mqtt] broker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="accessctl",
                                     description="Venue access controller for an archive digitisation room.")
    parser.add_argument("--version", action="version", version=f"accessctl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("config", help="check a configuration file")
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    _common(csub.add_parser("check", help="load and validate the configuration, then print a summary"))

    p = sub.add_parser("log", help="the tamper-evident event log")
    lsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    v = lsub.add_parser("verify", help="check the hash chain (read-only); exit 1 at the first altered, removed "
                                       "or reordered event, or when the log is empty")
    _common(v)
    v.add_argument("--against", metavar="ARCHIVE",
                   help="the monitor's archive (SQLite file): also check that this log still extends what the "
                        "door published (its events and status head); exit 1 if it does not. A chain epoch counts "
                        "only if it follows the previous one in time and the previous one does not go on")
    e = lsub.add_parser("export", help="write the entry register of a period")
    _common(e)
    e.add_argument("--from", dest="from_date", type=iso_date, required=True, help="first day (YYYY-MM-DD, site time)")
    e.add_argument("--to", dest="to_date", type=iso_date, required=True, help="last day, inclusive")
    e.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    e.add_argument("--output", "-o", help="file to write (default: standard output)")

    from firmware_py.cli import monitor, roster, run, station
    from firmware_py.doctor import report

    roster.add_roster_commands(sub, _common)
    for module in (run, monitor, report, station):
        module.add_commands(sub, _common)
    return parser


def cmd_config_check(args) -> int:
    cfg = open_config(args)
    hw = cfg.hardware
    print(f"{cfg.path}: ok")
    print(f"  site {cfg.site.site}, door {cfg.site.door}, time zone {cfg.site.timezone.key}")
    print(f"  lock GPIO{hw.lock.pin} ({hw.lock.type}), door contact GPIO{hw.door_contact.pin}, "
          f"exit button GPIO{hw.exit_button.pin}")
    print(f"  gate alarm GPIO{hw.gate.alarm_pin} ({hw.gate.alarm_contact}), passage GPIO{hw.gate.passage_pin}")
    for r in hw.id_readers:
        print(f"  ID card reader {r.side}: {r.port} at {r.baudrate} baud")
    for r in hw.badge_readers:
        print(f"  badge reader {r.side}: PC/SC name containing {r.reader_name!r}")
    print(f"  schedule groups: {', '.join(sorted(cfg.calendar.schedules))}; "
          f"{len(cfg.calendar.holidays)} holidays, {len(cfg.calendar.working_days)} adjusted working days")
    print(f"  database {cfg.storage.database}")
    print(f"  MQTT {'on' if cfg.mqtt.enabled else 'off'}: {cfg.mqtt.broker} "
          f"(MQTT {'5' if cfg.mqtt.protocol == 5 else '3.1.1'}), prefix {cfg.mqtt.prefix}")
    for warning in config_warnings(cfg):
        print(f"warning: {warning}")
    return 0


def cmd_log_verify(args) -> int:
    """Check the chain read-only; a missing file, a file that is not an event log or a damaged one is an
    error (2), a broken or empty chain a failed check (1)."""
    cfg = open_config(args)
    path = cfg.storage.database
    db = open_event_log_read_only(cfg).db
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            print(f"\r  verified {done:,} of {total:,} events…", end="", file=sys.stderr, flush=True)

    try:
        result = verify(db, progress=progress)
    except sqlite3.DatabaseError as exc:
        raise _damaged(path, exc) from None
    finally:
        if tty:
            print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
        db.conn.close()
    ok = result.ok and result.count > 0
    if result.ok and result.count == 0:
        print("not verified: the log holds no events; a door that has run holds at least its "
              "controller_started event (was the database emptied or replaced?)")
    else:
        print(result)
    if args.against:
        anchored = _check_against(path, args.against, cfg.site.site, cfg.site.door)
        print(anchored)
        ok = ok and anchored.ok
    return 0 if ok else 1


def _check_against(path, archive_path: str, site: str, door: str):
    """The door log at ``path`` against the monitor's archive, both opened read-only."""
    from firmware_py.station.archive.anchor import check_against
    from firmware_py.station.archive.sqlite import Archive

    archive = Archive(archive_path, read_only=True)
    db = open_read_only(path)
    try:
        return check_against(db, archive, site, door)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} or {archive_path}: cannot read it, the file is damaged ({exc})") from None
    finally:
        db.conn.close()
        archive.close()


def open_event_log_read_only(cfg: Config) -> EventStore:
    """The door's event log for reading only (``log verify``, ``log export``): nothing is created or
    changed, so an auditor without write access can read it; :class:`StoreError` when the file is
    missing, damaged, or not an event log."""
    path = cfg.storage.database
    store = open_store(cfg, read_only=True)
    try:
        has_events = inspection.has_event_log(store.db)
    except sqlite3.DatabaseError as exc:
        store.db.conn.close()
        raise _damaged(path, exc) from None
    if not has_events:
        store.db.conn.close()
        raise StoreError(f"{path}: not an accessctl event log (it has no events table); "
                         "point [storage] database (or --db) at the controller's database")
    return store


def _damaged(path, exc: sqlite3.DatabaseError) -> StoreError:
    return StoreError(f"{path}: cannot read the event log, the file is damaged ({exc}). Do not repair it: "
                      "it is evidence. Keep a copy (with its -wal file) and restore the log from a backup")


def cmd_log_export(args) -> int:
    cfg = open_config(args)
    if args.to_date < args.from_date:
        raise AccessCtlError(f"--to {args.to_date} is before --from {args.from_date}")
    store = open_event_log_read_only(cfg)
    try:
        events = store.events_between(*period(args.from_date, args.to_date, cfg.site.timezone))
        out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
        try:
            n = write_register(register_rows(events), out, args.format)
        except sqlite3.DatabaseError as exc:
            raise _damaged(cfg.storage.database, exc) from None
        finally:
            if args.output:
                out.close()
    finally:
        store.db.conn.close()
    print(f"exported {n} register rows for {args.from_date} to {args.to_date}", file=sys.stderr)
    return 0


HANDLERS = {
    ("config", "check"): cmd_config_check,
    ("log", "verify"): cmd_log_verify,
    ("log", "export"): cmd_log_export,
}


def setup_logging(level: int) -> None:
    # journald adds its own time stamp; the level name first lets `journalctl -p` style reading work
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The service logs what it does; one-shot commands print their result and log only problems.
    setup_logging(logging.INFO if args.command in ("run", "monitor") else logging.WARNING)
    handler = getattr(args, "handler", None) or HANDLERS.get((args.command, getattr(args, "action", None)))
    if handler is None:
        parser.error(f"no handler for {args.command}")
    return run_reporting_errors("accessctl", lambda: handler(args))


if __name__ == "__main__":
    sys.exit(main())
