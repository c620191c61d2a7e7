"""`accessctl monitor` and `accessctl monitor export`: the thin shell over :mod:`firmware_py.station.ingest.ingest`.

The monitor runs on the supervisor's machine, not on a door: it reads a configuration
file only when one is named (``--config`` or ``$ACCESSCTL_CONFIG``) and then takes the
broker and credentials from its ``[mqtt]`` section; the options win over the file.

The station and paho are imported only when a monitor command runs, so the door's own
commands (``accessctl roster list`` on the Pi) never load them.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from firmware_py.cli.arguments import iso_date, positive_seconds
from firmware_py.errors import MonitorError

if TYPE_CHECKING:
    from firmware_py.core.clock import Clock
    from firmware_py.link.broker import BrokerSettings

DEFAULT_ARCHIVE = "monitor-archive.db"  # in the current directory


def add_commands(sub, common) -> None:
    p = sub.add_parser("monitor", help="the supervisor's live view and archive (MQTT subscriber)",
                       description="Watch one door (--site and --door), one site (--site) or every site; "
                                   "archive every event, ask doors to replay gaps, publish the time beacon.")
    common(p)
    # only a named configuration is read: a door's /etc/accessctl/venue.toml holds the door's account
    p.set_defaults(config=os.environ.get("ACCESSCTL_CONFIG"), handler=cmd_monitor)
    for action in p._actions:
        if action.dest == "config":
            action.help = "read the broker and credentials from this file's [mqtt] section (options win)"
        elif action.dest == "db":
            action.help = argparse.SUPPRESS  # the monitor keeps its own --archive
    p.add_argument("--site", help="watch this site only")
    p.add_argument("--door", help="watch this door of --site only")
    p.add_argument("--archive", default=DEFAULT_ARCHIVE, help=f"archive file (default ./{DEFAULT_ARCHIVE})")
    p.add_argument("--prefix", help="topic prefix (default: [mqtt] prefix, or accessctl)")
    p.add_argument("--username", help="MQTT username (default: [mqtt] username)")
    p.add_argument("--password-file", type=Path, help="file whose first line is the MQTT password")
    p.add_argument("--ca-file", type=Path, help="the site CA certificate (for mqtts://)")
    p.add_argument("--cert-file", type=Path, help="the monitor's client certificate")
    p.add_argument("--key-file", type=Path, help="the client certificate's key")
    p.add_argument("--client-id", help="MQTT client id, the name of the broker-side session (default: "
                                       "accessctl-monitor- and random digits, made once and kept in ARCHIVE.client-id, "
                                       "so no other account can guess it and take the session over)")
    p.add_argument("--protocol", type=int, choices=(5, 311), help="MQTT 5 (default) or 3.1.1")
    p.add_argument("--beacon-interval", type=positive_seconds, default=60.0, metavar="SECONDS",
                   help="publish the time beacon this often (default 60)")
    p.add_argument("--no-beacon", action="store_true", help="do not publish the time beacon")
    p.add_argument("--replay-interval", type=positive_seconds, default=5.0, metavar="SECONDS",
                   help="least time between two replay requests to one door (default 5)")
    p.add_argument("--max-replay-requests", type=int, default=5, metavar="N",
                   help="replay requests per gap before giving up on it (default 5; the wait doubles from the third)")
    p.add_argument("--no-backfill", action="store_true",
                   help="archive a new door from the first event seen, not from seq 1")
    p.add_argument("--colour", choices=("auto", "always", "never"), default="auto",
                   help="colour alarms (default: when standard output is a terminal)")
    msub = p.add_subparsers(dest="action", metavar="ACTION")
    e = msub.add_parser("export", help="write one day's entry register from the archive (with each row's "
                                       "epoch and verification status)")
    e.set_defaults(handler=cmd_export)
    e.add_argument("--date", type=iso_date, required=True, help="the day (YYYY-MM-DD, the door's local date)")
    e.add_argument("--archive", default=DEFAULT_ARCHIVE, help=f"archive file (default ./{DEFAULT_ARCHIVE})")
    e.add_argument("--site", help="this site only")
    e.add_argument("--door", help="this door only (with --site: the door's own `log export` format)")
    e.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    e.add_argument("--output", "-o", help="file to write (default: standard output)")


def connection(args) -> tuple[BrokerSettings, str, Clock | None]:
    """The broker settings, topic prefix and clock (the site's time zone) from the options and,
    if one is named, the configuration file."""
    from firmware_py.config.schema import load_config, with_overrides
    from firmware_py.core.clock import SystemClock
    from firmware_py.link.broker import BrokerSettings, read_password, session_client_id

    password = read_password(args.password_file) if args.password_file else None
    overrides = dict(username=args.username, password=password, ca_file=args.ca_file, cert_file=args.cert_file,
                     key_file=args.key_file, protocol=args.protocol,
                     client_id=args.client_id or session_client_id(f"{args.archive}.client-id",
                                                                   prefix="accessctl-monitor-", where="--client-id"))
    if args.config:  # --broker follows the rule of every --broker (config.schema.broker_override)
        cfg = with_overrides(load_config(args.config), broker=args.broker)
        settings = BrokerSettings.from_config(cfg.mqtt, **overrides)
        return settings, args.prefix or cfg.mqtt.prefix, SystemClock(cfg.site.timezone)
    if not args.broker:
        raise MonitorError("no broker: give --broker mqtts://host:8883 or --config FILE with an [mqtt] section")
    settings = BrokerSettings(url=args.broker, **{k: v for k, v in overrides.items() if v is not None})
    return settings, args.prefix or "accessctl", None


def cmd_monitor(args) -> int:
    from firmware_py.station.ingest.ingest import Ingest

    settings, prefix, clock = connection(args)
    colour = args.colour == "always" or (args.colour == "auto" and sys.stdout.isatty())
    monitor = Ingest(settings, args.archive, site=args.site, door=args.door, prefix=prefix,
                     out=lambda line: print(line, flush=True), colour=colour,
                     beacon_interval_s=None if args.no_beacon else args.beacon_interval,
                     replay_interval_s=args.replay_interval, max_replay_requests=max(1, args.max_replay_requests),
                     backfill=not args.no_backfill, clock=clock)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    monitor.start(timeout=15)
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    archive = monitor.archive
    summary = (f"archived {archive.count(args.site, args.door)} events, {archive.duplicates(args.site, args.door)} "
               f"duplicates dropped, {len(archive.conflicts(args.site, args.door))} conflicting copies kept, "
               f"{len(archive.gaps(args.site, args.door, open_only=True))} gaps open, "
               f"{len(archive.anomalies(args.site, args.door))} integrity warnings in {args.archive}")
    monitor.close()
    print(summary, file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from firmware_py.station.archive.sqlite import Archive, export_register

    if args.door and not args.site:
        raise MonitorError("--door needs --site")
    if not Path(args.archive).exists():
        raise MonitorError(f"{args.archive}: no such archive (run accessctl monitor first, or give --archive)")
    archive = Archive(args.archive)
    out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        n = export_register(archive, args.date, out, site=args.site, door=args.door, fmt=args.format)
    finally:
        if args.output:
            out.close()
        archive.close()
    print(f"exported {n} register rows for {args.date}", file=sys.stderr)
    return 0
