"""Doors killed and restarted on purpose: the crash campaign and the child processes it and the tests run.

``campaign`` kills :mod:`simulator.crash.door_child` (the real controller on simulated hardware) at
random moments and checks the log after each restart; ``link_child`` runs the door's MQTT link alone
on a prepared outbox. The test suite (tests/system/test_crash_safety.py, test_mqtt_link.py …) and the
benchmarks (bench/crash.py, bench/backlog.py) both use them.
"""

from zoneinfo import ZoneInfo

from simulator.scenario import REPO

EXAMPLE = REPO / "config" / "venue.example.toml"  # the example door configuration the children start from
PEOPLE = REPO / "scenarios" / "people.csv"  # the synthetic roster of the scenarios
TZ = ZoneInfo("Asia/Shanghai")  # the example site's zone
