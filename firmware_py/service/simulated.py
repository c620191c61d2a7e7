"""The door service on the simulator's hardware: what ``accessctl run --simulate`` runs.

The composition root chooses the door's hardware: :func:`~firmware_py.service.bootstrap.build_service`
the Pi's, this module the simulator's (the real drivers on gpiozero's mock pins, the resident ID
readers on pseudo-terminals, and the badge readers behind this process's own pcscd and vpcd
where that stack runs). The OSDP keypad readers of ``[[hardware.keypad_reader]]`` are the real
driver on the configured port, as on the Pi: in a simulation that port is the pseudo-terminal
of a reader emulator (:class:`simulator.osdp_device.OsdpReaderDevice`) run beside the service.
The command line asks the service for it, so ``firmware_py/cli`` and
``simulator/`` never import each other.
"""

from __future__ import annotations

import logging

from firmware_py.config.schema import Config
from firmware_py.core.clock import SystemClock
from firmware_py.service.keypads import IndicatorsWithKeypads, build_keypad_readers
from firmware_py.service.loop import Service

log = logging.getLogger(__name__)


def build_simulated_service(cfg: Config, *, badges: bool = True) -> Service:
    """The service of ``cfg``'s door on simulated hardware and the system clock; its closers stop the
    PC/SC stack it started. ``badges=False`` leaves the badge readers out (no pcscd is started)."""
    from simulator.door_sim import SimulatedDoor

    if not badges:
        return _with_keypads(SimulatedDoor(cfg, clock=SystemClock(cfg.site.timezone), badges=False).service, cfg)
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
    try:
        return _with_keypads(service, cfg)
    except BaseException:
        for close in reversed(service.closers):  # not started yet: only the devices to close
            close()
        raise


def _with_keypads(service: Service, cfg: Config) -> Service:
    """The configured keypad readers started on ``service``'s queue, showing the door's patterns."""
    keypads = build_keypad_readers(cfg.hardware.keypad_readers, service.inputs.put)
    if keypads:
        controller = service.controller
        controller.indicators = IndicatorsWithKeypads(controller.indicators, keypads)
        service.closers.extend(k.close for k in keypads)  # closed first, after the controller has stopped
    return service
