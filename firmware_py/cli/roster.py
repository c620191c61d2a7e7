"""`accessctl roster …`: the thin command-line shell over :mod:`firmware_py.storage.roster`.

    accessctl roster import FILE.csv
    accessctl roster add --person-id P009 --name … --role staff … [--id-number N]
    accessctl roster revoke PERSON --reason "left the project"
    accessctl roster reinstate PERSON --reason "cleared by the review board"
    accessctl roster list
    accessctl roster pin set PERSON [--duress]

``add`` asks for the ID number without echo when ``--id-number`` is not
given (on a terminal; otherwise it reads one line from standard input), so
the number need not end up in the shell history or the process list.
``pin set`` never takes the PIN as an argument: it asks twice without echo on
a terminal, or reads one line from standard input (a script); only its slow
hash is stored, and nothing prints or logs the PIN.
Output shows masked ID numbers only. A refused change prints the reason and
exits with status 2; nothing was written.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import unicodedata
from collections.abc import Callable
from datetime import date
from pathlib import Path

from firmware_py.config.schema import Config, load_config, with_overrides
from firmware_py.core.people import EMPLOYER_TYPES, ROLES, Person
from firmware_py.errors import RosterError
from firmware_py.storage import roster, roster_bundle
from firmware_py.storage.door_database import open_store
from firmware_py.storage.eventstore import EventStore
from firmware_py.storage.secret import load_or_create_secret

Handler = Callable[[argparse.Namespace, Config, object, EventStore], int]


def _fallback_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="configuration file")
    parser.add_argument("--db", help="database file, overriding [storage] database")


def add_roster_commands(subparsers, common: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """Register ``roster`` and its actions; ``common`` adds the shared --config/--db/--broker options."""
    common = common or _fallback_common
    p = subparsers.add_parser("roster", help="the roster of authorised personnel")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    imp = sub.add_parser("import", help="add or update persons from a CSV file, all or nothing")
    common(imp)
    imp.add_argument("file", metavar="FILE.csv", help="UTF-8 CSV; the columns are listed in config/roster.example.csv")
    imp.set_defaults(handler=_shell(cmd_roster_import))

    add = sub.add_parser("add", help="add one person")
    common(add)
    add.add_argument("--person-id", required=True, help="e.g. P009")
    add.add_argument("--name", required=True)
    add.add_argument("--id-number", help="resident ID number; omit to be asked without echo")
    add.add_argument("--badge", dest="badges", action="append", default=[], metavar="UID",
                     help="badge UID in hex (repeat for several)")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--organisation", default="", help="employer or agency (required for --employer-type agency)")
    add.add_argument("--employer-type", required=True, choices=EMPLOYER_TYPES, help="own unit or outsourcing agency")
    add.add_argument("--review-date", default="", metavar="YYYY-MM-DD", help="background review (empty: none yet)")
    add.add_argument("--training-hours", default="0", metavar="HOURS")
    add.add_argument("--commitment-date", default="", metavar="YYYY-MM-DD", help="confidentiality commitment signed")
    add.add_argument("--valid-from", required=True, metavar="YYYY-MM-DD")
    add.add_argument("--valid-until", required=True, metavar="YYYY-MM-DD", help="last valid day, inclusive")
    add.add_argument("--schedule-group", required=True,
                     help="a [calendar.schedule.*] group of the configuration (or of the station's roster bundle, "
                          "when it sets the hours)")
    add.set_defaults(handler=_shell(cmd_roster_add))

    rev = sub.add_parser("revoke", help="revoke a person's access now")
    common(rev)
    rev.add_argument("person_id", metavar="PERSON")
    rev.add_argument("--reason", required=True)
    rev.set_defaults(handler=_shell(cmd_roster_revoke))

    rei = sub.add_parser("reinstate", help="lift a revocation")
    common(rei)
    rei.add_argument("person_id", metavar="PERSON")
    rei.add_argument("--reason", required=True)
    rei.set_defaults(handler=_shell(cmd_roster_reinstate))

    lst = sub.add_parser("list", help="show the roster (masked ID numbers only)")
    common(lst)
    lst.set_defaults(handler=_shell(cmd_roster_list))

    pin = sub.add_parser("pin", help="a person's PIN for doors that ask for one (GB/T 37078 §6.3)")
    pin_sub = pin.add_subparsers(dest="pin_action", required=True, metavar="ACTION")
    pin_set = pin_sub.add_parser("set", help="set a person's PIN (asked twice, not shown), or their duress PIN")
    common(pin_set)
    pin_set.add_argument("person_id", metavar="PERSON")
    pin_set.add_argument("--duress", action="store_true",
                         help="set the duress PIN: it opens the door like the PIN and alerts the supervisor")
    pin_set.set_defaults(handler=_shell(cmd_roster_pin_set))


def _shell(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """Open config, database and event store for a handler, and close them after it."""

    def run(args: argparse.Namespace) -> int:
        cfg = with_overrides(load_config(args.config), database=getattr(args, "db", None),
                             broker=getattr(args, "broker", None))
        owner = _service_owner(cfg)
        store = open_store(cfg)
        try:
            return handler(args, cfg, store.db, store)
        finally:
            store.db.conn.close()
            if owner is not None:
                _give_back(cfg, owner)

    run.__name__ = handler.__name__
    return run


def _service_owner(cfg: Config) -> int | None:
    """When root works on the service's files (its database directory belongs to another user): that user.

    Root can read and create anything, but a device secret or WAL file it creates
    is root's and then unreadable to the service. Warn, and say how to do it right.
    """
    if os.geteuid() != 0:
        return None
    directory = Path(cfg.storage.database).parent
    try:
        uid = directory.stat().st_uid
    except OSError:
        return None
    if uid == 0:
        return None
    try:
        import pwd

        name = pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        name = str(uid)
    print(f"accessctl: warning: running as root on the door's files, which belong to {name} ({directory}). "
          f"Run roster commands as the service user: sudo -u {name} accessctl roster ... "
          f"Files this command creates there are given to {name}.", file=sys.stderr)
    return uid


def _give_back(cfg: Config, uid: int) -> None:
    """Hand the files root created (secret, database, its WAL and shared memory) to the service user."""
    database = Path(cfg.storage.database)
    for path in (Path(cfg.storage.secret), database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        try:
            st = path.stat()
            if st.st_uid == 0:
                gid = path.parent.stat().st_gid
                os.chown(path, uid, gid)
        except FileNotFoundError:
            continue
        except OSError as exc:
            print(f"accessctl: warning: could not give {path} to the service user: {exc.strerror or exc}; "
                  f"`chown` it before starting the service", file=sys.stderr)


# --------------------------------------------------------------------------- handlers


def _secret(cfg: Config, db) -> bytes:
    if cfg.roster.site_key is not None:  # the station signs this door's roster: match as its rows are hashed
        from firmware_py.link.roster_keys import load_site_key

        return load_site_key(cfg.roster.site_key)
    return load_or_create_secret(cfg.storage.secret, roster_hashes=roster.id_hash_count(db))


def _groups(cfg: Config, db) -> dict:
    """The schedule groups a row may name: those of the hours the station's bundle set, else the config's."""
    return (roster_bundle.applied_calendar(db) or cfg.calendar).schedules


def cmd_roster_import(args, cfg: Config, db, store: EventStore) -> int:
    result = roster.import_csv(db, store, args.file, secret=_secret(cfg, db),
                               schedule_groups=_groups(cfg, db), tz=cfg.site.timezone)
    print(result)
    for warning in result.warnings:
        print(f"  note: {warning}")
    _bundle_note(cfg, "this import")
    return 0


def _bundle_note(cfg: Config, what: str) -> None:
    if cfg.roster.enabled:
        print(f"  note: this door takes its roster from the station ([roster]): the next bundle the station "
              f"publishes replaces {what}")


def _read_id_number() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("resident ID number (not shown): ")
    return sys.stdin.readline()


def cmd_roster_add(args, cfg: Config, db, store: EventStore) -> int:
    number = args.id_number if args.id_number is not None else _read_id_number()
    person = roster.add(
        db, store, person_id=args.person_id, name=args.name, id_number=number, role=args.role,
        organisation=args.organisation, employer_type=args.employer_type, badge_uids=args.badges,
        review_date=args.review_date, training_hours=args.training_hours, commitment_date=args.commitment_date,
        valid_from=args.valid_from, valid_until=args.valid_until, schedule_group=args.schedule_group,
        secret=_secret(cfg, db), schedule_groups=_groups(cfg, db),
    )
    print(f"added {person.person_id} {person.name} ({person.role}), ID {person.id_masked}, "
          f"badges {', '.join(person.badge_uids) or 'none'}")
    _bundle_note(cfg, f"this addition unless it lists {person.person_id}")
    return 0


def cmd_roster_revoke(args, cfg: Config, db, store: EventStore) -> int:
    person = roster.revoke(db, store, args.person_id, args.reason, store.clock.now())
    print(f"revoked {person.person_id} {person.name} at {person.revoked_at:%Y-%m-%d %H:%M}: {person.revoked_reason}")
    return 0


def cmd_roster_reinstate(args, cfg: Config, db, store: EventStore) -> int:
    person = roster.reinstate(db, store, args.person_id, args.reason)
    print(f"reinstated {person.person_id} {person.name}")
    return 0


def cmd_roster_list(args, cfg: Config, db, store: EventStore) -> int:
    persons = roster.list_persons(db)
    today = store.clock.now().astimezone(cfg.site.timezone).date()
    print(format_table(persons, today))
    active = sum(p.status == "active" for p in persons)
    print(f"{len(persons)} persons, {active} active, {len(persons) - active} revoked")
    return 0


def _read_pin(name: str) -> str:
    """The new PIN: asked twice without echo on a terminal, else one line of standard input."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    first = getpass.getpass(f"new {name} (not shown): ")
    if getpass.getpass(f"the {name} again: ") != first:
        raise RosterError(f"the two {name}s differ; nothing was changed")
    return first.strip()


def cmd_roster_pin_set(args, cfg: Config, db, store: EventStore) -> int:
    name = "duress PIN" if args.duress else "PIN"
    if roster.get(db, args.person_id) is None:  # before asking for a PIN that could not be stored
        raise RosterError(f"cannot set the {name} of {args.person_id}: no such person in the roster")
    roster.set_pin(db, store, args.person_id, _read_pin(name), duress=args.duress)
    print(f"{name} of {args.person_id} set")
    _bundle_note(cfg, f"this {name} when it carries PIN hashes (a person it gives none then has none; a bundle "
                      "without PIN hash columns keeps it)")
    return 0


# --------------------------------------------------------------------------- the table

HEADERS = ("ID", "NAME", "ROLE", "EMPLOYER", "RESIDENT ID", "BADGES", "VALID", "REVIEW", "TRAINING", "COMMITMENT",
           "GROUP", "STATUS")


def _status(p: Person, today: date) -> str:
    if p.status == "revoked":
        when = f" {p.revoked_at:%Y-%m-%d}" if p.revoked_at else ""
        return f"revoked{when}: {p.revoked_reason or ''}".rstrip(": ")
    if today > p.valid_until:
        return "active, expired"
    if today < p.valid_from:
        return "active, not yet valid"
    return "active"


def _row(p: Person, today: date) -> tuple[str, ...]:
    employer = p.employer_type + (f" ({p.organisation})" if p.organisation else "")
    return (
        p.person_id, p.name, p.role, employer, p.id_masked or "-", " ".join(p.badge_uids) or "-",
        f"{p.valid_from}..{p.valid_until}", str(p.review_date or "-"), f"{p.training_hours:g} h",
        str(p.commitment_date or "-"), p.schedule_group, _status(p, today),
    )


def _width(text: str) -> int:
    """Columns a string takes on a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def format_table(persons: list[Person], today: date) -> str:
    """The roster as an aligned text table; ID numbers appear only masked."""
    rows = [HEADERS] + [_row(p, today) for p in persons]
    widths = [max(_width(r[i]) for r in rows) for i in range(len(HEADERS))]
    lines = []
    for r in rows:
        cells = [c + " " * (w - _width(c)) for c, w in zip(r, widths)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
