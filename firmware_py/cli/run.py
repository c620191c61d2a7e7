"""`accessctl run`: the controller service, on the Pi's hardware or on the simulator's."""

from __future__ import annotations

import sys
import warnings

from firmware_py.errors import AccessCtlError


def add_commands(subparsers, common) -> None:
    p = subparsers.add_parser("run", help="run the door controller service")
    common(p)
    p.add_argument("--simulate", action="store_true",
                   help="run on emulated hardware (mock pins, pseudo-terminal ID readers, vpcd badge readers)")
    p.set_defaults(handler=cmd_run)

    p = subparsers.add_parser("lockdown",
                              help="put the door in lockdown, or release it (the running service applies it)")
    common(p)
    p.add_argument("state", choices=("on", "off"))
    p.add_argument("--by", default=None, help="who orders it (recorded in the command event; default: your user name)")
    p.add_argument("--wait", type=float, default=5.0, metavar="SECONDS",
                   help="how long to wait for the service to confirm (default 5)")
    p.set_defaults(handler=cmd_lockdown)


def cmd_lockdown(args) -> int:
    import getpass

    from firmware_py.cli.arguments import open_config
    from firmware_py.storage import local_commands
    from firmware_py.storage.db import open_db

    cfg = open_config(args)
    db = open_db(cfg.storage.database)
    by = args.by or getpass.getuser()
    action = "lockdown" if args.state == "on" else "release_lockdown"
    command_id = local_commands.enqueue(db, {"action": action, "by": by}, client=f"local:{by}")
    event = local_commands.wait_for_result(db, command_id, args.wait)
    if event is None:
        print(f"lockdown {args.state}: queued, but no running controller took it within {args.wait:g} s; "
              "it applies when `accessctl run` (accessctl.service) runs", file=sys.stderr)
        return 1
    if not event["detail"]["ok"]:
        print(f"lockdown {args.state}: refused: {event['detail'].get('error')}", file=sys.stderr)
        return 1
    print(f"lockdown {args.state}: done (event {event['seq']})")
    return 0


def cmd_run(args) -> int:
    from firmware_py.cli.arguments import open_config
    from firmware_py.service.bootstrap import build_service, install_signal_handlers
    from firmware_py.service.sdnotify import Notifier

    cfg = open_config(args)
    # gpiozero warns once per pin library it cannot load; the one that matters is reported below.
    warnings.filterwarnings("ignore", message="Falling back from")
    try:
        if args.simulate:
            from firmware_py.service.simulated import build_simulated_service

            service = build_simulated_service(cfg)
        else:
            service = build_service(cfg)
    except AccessCtlError:
        raise
    except Exception as exc:
        if type(exc).__name__ == "BadPinFactory":
            raise AccessCtlError("no GPIO on this machine: gpiozero found no pin library (on a Raspberry Pi: "
                                 "apt-get install python3-lgpio). To try the controller without hardware: "
                                 "accessctl run --simulate") from exc
        # A device that is missing or busy: say which and what to check, not a traceback.
        raise AccessCtlError(f"cannot start the door's devices: {exc}\n"
                             f"check the wiring and [hardware] in {cfg.path}; "
                             "`accessctl doctor` tests each device") from exc
    install_signal_handlers(service)
    service.run(Notifier.from_env())
    return 0
