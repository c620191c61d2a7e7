"""The door service on the simulator's hardware: what ``accessctl run --simulate`` runs.

The composition root chooses the door's hardware: :func:`~firmware_py.service.bootstrap.build_service`
the Pi's, this module the simulator's (the real drivers on gpiozero's mock pins, the resident ID
readers on pseudo-terminals, and the badge readers behind this process's own pcscd and vpcd
where that stack runs). The command line asks the service for it, so ``firmware_py/cli`` and
``simulator/`` never import each other.
"""

from __future__ import annotations

import logging

from firmware_py.config.schema import Config
from firmware_py.core.clock import SystemClock
from firmware_py.service.loop import Service

log = logging.getLogger(__name__)


def build_simulated_service(cfg: Config, *, badges: bool = True) -> Service:
    """The service of ``cfg``'s door on simulated hardware and the system clock; its closers stop the
    PC/SC stack it started. ``badges=False`` leaves the badge readers out (no pcscd is started)."""
    from simulator.door_sim import SimulatedDoor

    if not badges:
        return SimulatedDoor(cfg, clock=SystemClock(cfg.site.timezone), badges=False).service
    from simulator.pcsc_stack import badge_stack

    stack = badge_stack()
    stacked = stack.__enter__()
    try:
        if not stacked.available:
            log.warning("badge readers not simulated: %s", stacked.why)
        service = SimulatedDoor(cfg, clock=SystemClock(cfg.site.timezone), badges=stacked.available).service
    except BaseException:
        stack.__exit__(None, None, None)
        raise
    service.closers.insert(0, lambda: stack.__exit__(None, None, None))
    return service
