"""Free egress while a PIN is checked (DESIGN.md): the door's real service loop, its SQLite roster and event
log and the PIN worker thread; a PIN hashed at the highest cost the door accepts makes the check slow, and the
exit button pressed meanwhile must release the lock long before the check ends."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from firmware_py.config.schema import load_config
from firmware_py.core import pin
from firmware_py.core.inputs import BadgeRead, ExitButtonPressed, KeypadKeys
from firmware_py.service.bootstrap import build_service
from firmware_py.storage import roster
from simulator.fleet_door import DarkIndicators
from tests.fixtures.constants import REPO
from tests.system.test_keypad_service import BADGE, DURESS_PIN, PIN, door_config

SLOW_N = 2**17  # the most a stored hash may ask for (firmware_py.core.pin._MAX_N)


class TimedLock:
    """The lock relay, noting when it was released (monotonic time)."""

    def __init__(self):
        self.released_at: float | None = None
        self.is_released = False

    def release(self) -> None:
        self.released_at = self.released_at or time.monotonic()
        self.is_released = True

    def secure(self) -> None:
        self.is_released = False


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the door did not get there in time"
        time.sleep(0.002)


@pytest.fixture
def door(tmp_path, monkeypatch):
    cfg = load_config(door_config(tmp_path, "/dev/null"))
    cfg = replace(cfg, storage=replace(cfg.storage, database=tmp_path / "events.db"),
                  hardware=replace(cfg.hardware, keypad_readers=()))
    lock = TimedLock()
    service = build_service(cfg, hardware=lambda post: (lock, DarkIndicators(), []))
    roster.import_csv(service.db, service.event_log.store, REPO / "config" / "roster.example.csv",
                      secret=service.controller.secret, schedule_groups=cfg.calendar.schedules,
                      tz=cfg.site.timezone)
    with monkeypatch.context() as slow:
        slow.setattr(pin, "SCRYPT_N", SLOW_N)
        roster.set_pin(service.db, service.event_log.store, "P001", PIN)
        roster.set_pin(service.db, service.event_log.store, "P001", DURESS_PIN, duress=True)
    loop = threading.Thread(target=service.run, name="door-loop")
    loop.start()
    try:
        yield service, lock
    finally:
        service.request_stop()
        loop.join(20)


def types(service) -> list[str]:
    return [row[0] for row in service.db.execute("SELECT type FROM events ORDER BY seq")]


def test_the_exit_button_releases_at_once_while_a_slow_pin_check_runs(door):
    service, lock = door
    person = roster.get(service.db, "P001")
    started = time.monotonic()
    pin.judge_pin(PIN, person.pin_hash, person.duress_pin_hash)
    check_s = time.monotonic() - started

    service.inputs.put(BadgeRead("outside", BADGE))
    wait_until(lambda: service.controller.state == "pin")
    service.inputs.put(KeypadKeys("outside", PIN + "#"))
    wait_until(service.inputs.empty)  # the loop took the '#': the check has begun
    time.sleep(0.05)
    pressed = time.monotonic()
    service.inputs.put(ExitButtonPressed())
    wait_until(lambda: lock.released_at is not None)
    release_s = lock.released_at - pressed
    print(f"PIN check {check_s * 1000:.0f} ms; exit button to release {release_s * 1000:.1f} ms")
    assert check_s > 0.3 and release_s < check_s / 5

    # The verdict (the right PIN) comes after the exit button ended the wait: it changes nothing.
    # Waited for, not slept: on a busy machine the check in the worker takes longer than it did here.
    wait_until(lambda: "access_denied" in types(service), timeout=max(30.0, 20 * check_s))
    wait_until(lambda: "exit_button" in types(service))
    assert service.controller.state == "released" and service.controller.passage.via == "exit_button"
    assert "access_granted" not in types(service)
    assert service.db.execute("SELECT json_extract(body, '$.reason') FROM events WHERE type = 'access_denied'"
                              ).fetchall() == [("door_busy",)]
