"""`accessctl station serve`, `station user add` and `station archive migrate`: the thin shell over the station.

Nothing heavy is imported here: the web framework and the MQTT client load only when a station
command runs, so other commands start as fast as before.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import datetime

from firmware_py.cli.station_roster import add_roster_command
from firmware_py.errors import AccessCtlError, ConfigError

DEFAULT_CONFIG = "/etc/accessctl/station.toml"


def _station_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=os.environ.get("ACCESSCTL_STATION_CONFIG", DEFAULT_CONFIG),
                   help=f"station configuration (default: $ACCESSCTL_STATION_CONFIG or {DEFAULT_CONFIG})")
    p.add_argument("--archive", help="the archive, an SQLite file (FILE.db) or postgresql://USER@HOST:PORT/DB, "
                                     "overriding [archive] path")


def add_commands(sub, common) -> None:
    p = sub.add_parser("station", help="the supervision station: archive and web page",
                       description="Ingest every door's events from the broker into the archive and serve the "
                                   "supervisor's web page; manage the page's accounts.")
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = ssub.add_parser("serve", help="run the station (ingest and web page) until Ctrl-C")
    _station_options(s)
    s.add_argument("--broker", help="mqtt://HOST:PORT or mqtts://HOST:PORT, overriding [broker] url")
    s.add_argument("--listen", help="HOST:PORT for the web page, overriding [web] listen")
    s.add_argument("--protocol", type=int, choices=(5, 311),
                   help="MQTT 5, or 311 (MQTT 3.1.1, e.g. RabbitMQ), overriding [broker] protocol")
    s.set_defaults(handler=cmd_serve)
    u = ssub.add_parser("user", help="station accounts")
    usub = u.add_subparsers(dest="user_action", required=True, metavar="ACTION")
    a = usub.add_parser("add", help="add an account (password asked twice at a terminal, else one line from stdin)")
    _station_options(a)
    a.add_argument("name", help="account name (letters, digits, '.', '_', '-')")
    a.add_argument("--role", required=True, choices=("viewer", "operator", "admin"),
                   help="viewer reads; operator also acknowledges, locks down and revokes; admin also manages")
    a.set_defaults(handler=cmd_user_add)
    r = ssub.add_parser("archive", help="the archive itself")
    rsub = r.add_subparsers(dest="archive_action", required=True, metavar="ACTION")
    m = rsub.add_parser("migrate", help="copy an SQLite archive into PostgreSQL (exit 0: everything is there)",
                        description="Copy every event and kept conflicting copy of an SQLite archive (read-only) "
                                    "into a PostgreSQL archive; running it again adds nothing. Exit 0 when every "
                                    "event was copied or already there, 1 when some conflict or were refused.")
    m.add_argument("--from", dest="source", required=True, metavar="FILE.db", help="the SQLite archive")
    m.add_argument("--to", dest="target", metavar="postgresql://USER@HOST:PORT/DB",
                   help="the PostgreSQL archive (its tables are made if missing; default: the [archive] of --config)")
    m.add_argument("--config", default=os.environ.get("ACCESSCTL_STATION_CONFIG", DEFAULT_CONFIG),
                   help="station configuration whose PostgreSQL [archive] is the target when --to is not given "
                        f"(default: $ACCESSCTL_STATION_CONFIG or {DEFAULT_CONFIG})")
    m.add_argument("--batch", type=int, default=1000, metavar="N", help="events per transaction (default 1000)")
    m.set_defaults(handler=cmd_archive_migrate)
    add_roster_command(ssub)


def _archive_path(args) -> str:
    """--archive, else the configuration's [archive] path: an SQLite file or a postgresql:// URL."""
    if args.archive:
        from firmware_py.station.config import check_archive

        check_archive(args.archive, "--archive")
        path = args.archive
    else:
        if not os.path.exists(args.config):
            raise ConfigError(f"{args.config}: no such station configuration (give --config FILE or --archive FILE.db)")
        from firmware_py.station.config import load_station_config

        archive = load_station_config(args.config).archive
        path = archive.url or str(archive.path)
    return path


def cmd_serve(args) -> int:
    import logging

    from firmware_py.station.config import load_station_config, with_overrides
    from firmware_py.station.server import serve

    logging.getLogger().setLevel(logging.INFO)
    cfg = with_overrides(load_station_config(args.config), broker=args.broker, archive=args.archive, listen=args.listen,
                         protocol=args.protocol)
    serve(cfg, ready=lambda url: print(f"station serving on {url}", flush=True))
    return 0


def read_new_password(stdin=None) -> str:
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = getpass.getpass("新密码 New password: ")
        if getpass.getpass("再输入一次 Again: ") != first:
            raise AccessCtlError("the two passwords differ: nothing was changed")
        return first
    line = stdin.readline()
    if not line:
        raise AccessCtlError("no password on standard input (one line expected)")
    return line.rstrip("\r\n")


def cmd_user_add(args) -> int:
    import getpass as _getpass

    from firmware_py.station.accounts import accounts, audit
    from firmware_py.station.archive.open import open_station_store
    from firmware_py.station.config import safe_url

    path = _archive_path(args)
    password = read_new_password()
    store = open_station_store(path)
    now = datetime.now().astimezone()
    try:
        result = "ok"
        try:
            accounts.add_account(store, args.name, args.role, password, now)
        except AccessCtlError as exc:
            result = f"refused: {exc}"
            raise
        finally:
            audit.record(store, at=now, who=f"cli:{_getpass.getuser()}", address="local",
                         action="station user add", detail={"name": args.name, "role": args.role}, result=result)
    finally:
        store.close()
    print(f"account {args.name} ({args.role}) added to {safe_url(path)}", file=sys.stderr)
    return 0


def cmd_archive_migrate(args) -> int:
    from firmware_py.station.archive import migrate

    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch}: give a positive number of events per transaction")
    target_url = args.target or _configured_target(args.config)
    source = migrate.open_source(args.source)
    try:
        target = migrate.open_target(target_url)
        try:
            summary = migrate.migrate(source, target, batch=args.batch, say=lambda line: print(line, flush=True))
        finally:
            target.close()
    finally:
        source.close()
    for line in (*summary.lines(), migrate.NOT_MIGRATED):
        print(line)
    return 0 if summary.ok else 1


def _configured_target(config: str) -> str:
    """The station configuration's archive as the migration's target: it must be PostgreSQL."""
    from firmware_py.station.config import is_postgres, load_station_config

    if not os.path.exists(config):
        raise ConfigError(f"{config}: no such station configuration; give --to postgresql://… or --config FILE")
    archive = load_station_config(config).archive
    if not is_postgres(archive.url):
        raise ConfigError(f"{config}: [archive] {archive.where} is not a PostgreSQL archive, so there is nothing to "
                          "migrate into; give --to postgresql://USER@HOST:PORT/DB")
    return archive.url
