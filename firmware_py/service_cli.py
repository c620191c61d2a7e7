"""`accessctl run`: the controller service, on the Pi's hardware or on the simulator's."""

from __future__ import annotations

import logging
import sys

from .errors import AccessCtlError

log = logging.getLogger(__name__)


def add_commands(subparsers, common) -> None:
    p = subparsers.add_parser("run", help="run the door controller service")
    common(p)
    p.add_argument("--simulate", action="store_true",
                   help="run on emulated hardware (mock pins, pseudo-terminal ID readers, vpcd badge readers)")
    p.set_defaults(handler=cmd_run)


def cmd_run(args) -> int:
    from .cli import open_config
    from .sdnotify import Notifier
    from .service import build_service, install_signal_handlers

    cfg = open_config(args)
    try:
        if args.simulate:
            from simulator.door_sim import SimulatedDoor
            from simulator.pcsc_stack import badge_stack

            stack = badge_stack()
            badges = stack.__enter__()
            if not badges.available:
                log.warning("badge readers not simulated: %s", badges.why)
            from .clock import SystemClock

            service = SimulatedDoor(cfg, clock=SystemClock(cfg.site.timezone), badges=badges.available).service
            service.closers.insert(0, lambda: stack.__exit__(None, None, None))
        else:
            service = build_service(cfg)
    except AccessCtlError:
        raise
    except Exception as exc:
        # A device that is missing or busy: say which and what to check, not a traceback.
        raise AccessCtlError(f"cannot start the door's devices: {exc}\n"
                             f"check the wiring and [hardware] in {cfg.path}; `accessctl doctor` tests each device") from exc
    install_signal_handlers(service)
    service.run(Notifier.from_env())
    return 0
