"""`accessctl station roster publish FILE.csv`, `keygen` and `pin-hash`: a thin shell over
:mod:`firmware_py.station.roster`."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

DEFAULT_CONFIG = "/etc/accessctl/station.toml"
DEFAULT_KEY_DIR = "/etc/accessctl"


def add_roster_command(ssub) -> None:
    """Register ``station roster publish`` under the station's actions."""
    r = ssub.add_parser("roster", help="the site's roster, signed and published to its doors")
    rsub = r.add_subparsers(dest="roster_action", required=True, metavar="ACTION")
    p = rsub.add_parser("publish", help="check a roster CSV, sign it and publish it to every door of the site",
                        description="Check FILE.csv exactly as a door's `accessctl roster import` does (all or "
                                    "nothing; every bad row named with its line), sign it with [roster] "
                                    "signing_key and publish it retained on PREFIX/SITE/roster. Each door applies "
                                    "it all or nothing and reports roster_applied or roster_rejected.")
    p.add_argument("file", metavar="FILE.csv", help="UTF-8 CSV with the columns of config/roster.example.csv")
    p.add_argument("--config", default=os.environ.get("ACCESSCTL_STATION_CONFIG", DEFAULT_CONFIG),
                   help=f"station configuration (default: $ACCESSCTL_STATION_CONFIG or {DEFAULT_CONFIG})")
    p.add_argument("--site", help="the site whose doors take it, overriding [roster] site")
    p.add_argument("--valid-for", dest="valid_for", type=float, metavar="DAYS",
                   help="how long doors may keep using it without a newer one (default [roster] valid_for_days)")
    p.add_argument("--broker", help="mqtt://HOST:PORT or mqtts://HOST:PORT, overriding [broker] url")
    p.add_argument("--protocol", type=int, choices=(5, 311), help="MQTT 5, or 311 (MQTT 3.1.1, e.g. RabbitMQ)")
    p.set_defaults(handler=cmd_publish)
    h = rsub.add_parser("pin-hash", help="make the hash of a person's PIN for the roster CSV's pin_hash column",
                        description="Ask for a PIN twice without showing it (or read one line from standard "
                                    "input) and print its slow salted hash, for the roster CSV's pin_hash or "
                                    "duress_pin_hash column. The station takes hashes only, never a PIN.")
    h.set_defaults(handler=cmd_pin_hash)

    k = rsub.add_parser("keygen", help="make the station's signing key pair and the site roster key",
                        description="Make roster-signing.key (the station's Ed25519 signing key, 0600), "
                                    "roster-signing.pub (its public half, for every door) and site-roster.key "
                                    "(32 random bytes, 0600, for the station and every door) in DIR. Never "
                                    "overwrites a file: to rotate, make the new keys in another directory "
                                    "(docs/commissioning.md, 'Roster keys').")
    k.add_argument("--dir", dest="directory", default=DEFAULT_KEY_DIR, metavar="DIR",
                   help=f"where to write them (default {DEFAULT_KEY_DIR}); run as the user that runs the station")
    k.add_argument("--only", choices=("signing", "site"),
                   help="make only the signing pair, or only the site roster key (rotating one of them)")
    k.set_defaults(handler=cmd_keygen)


def cmd_publish(args: argparse.Namespace) -> int:
    from firmware_py.station.config import load_station_config, with_overrides
    from firmware_py.station.roster.publish import publish_roster

    cfg = with_overrides(load_station_config(args.config), broker=args.broker, protocol=args.protocol)
    print(publish_roster(cfg, args.file, site=args.site, valid_for_days=args.valid_for), flush=True)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from firmware_py.station.roster.keys import KINDS, make_keys

    made = make_keys(args.directory, kinds=(args.only,) if args.only else KINDS)
    for path in made.written:
        print(f"wrote {path} ({path.stat().st_mode & 0o777:04o})")
    if made.public_key_id:
        print(f"station public key fingerprint {made.public_key_id}")
    if made.site_key_id:
        print(f"site roster key id {made.site_key_id}")
    print("next: name them in the station's [roster] (signing_key, site_key); install the public key and the "
          "site roster key on every door (deploy/install.sh --station-public-key FILE --site-key FILE); back "
          "them up (docs/commissioning.md, 'Roster keys'). `accessctl doctor` at a door shows the same "
          "fingerprints.", flush=True)
    return 0


def cmd_pin_hash(args: argparse.Namespace) -> int:
    from firmware_py.core.pin import PinError, hash_pin
    from firmware_py.errors import RosterError

    if sys.stdin.isatty():
        pin = getpass.getpass("PIN (not shown): ")
        if getpass.getpass("the PIN again: ") != pin:
            raise RosterError("the two PINs differ; no hash was made")
    else:
        pin = sys.stdin.readline()
    try:
        print(hash_pin(pin.strip()), flush=True)
    except PinError as exc:
        raise RosterError(f"no hash was made: {exc}") from None
    return 0
