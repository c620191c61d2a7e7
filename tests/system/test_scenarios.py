"""The scenarios in scenarios/: the real controller and drivers on simulated hardware.

Each scenario is a test: the ID cards go through a pseudo-terminal speaking
GA 467 frames, badges through the real pcscd with vpcd, the pins are
gpiozero MockFactory pins driven from below.
"""


import pytest

from simulator.runner import ScenarioRunner
from simulator.scenario import load_scenario
from tests.fixtures.constants import REPO

SCENARIOS = sorted((REPO / "scenarios").glob("*.toml"))


@pytest.fixture(scope="module")
def results(pcscd, memory_path_factory):
    """Each scenario run once (they take seconds each); the tests below read the results.

    The scenarios check the door's rules, not its disk: their databases are in memory (tmpfs)."""
    runs = {}
    for path in SCENARIOS:
        lines: list[str] = []
        result = ScenarioRunner(load_scenario(path), workdir=memory_path_factory.mktemp(path.stem),
                                out=lines.append).run()
        runs[path] = (result, lines)
    return runs


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_holds_every_expectation(path, results):
    result, lines = results[path]
    assert result.ok, "\n".join(result.failures + ["", "output:"] + lines)


def test_the_scenarios_cover_every_denial_reason_and_alarm(results):
    from firmware_py.core.events import REASONS, TYPES

    seen_reasons, seen_types = set(), set()
    for result, _ in results.values():
        for event in result.events:
            seen_types.add(event["type"])
            if event.get("reason"):
                seen_reasons.add(event["reason"])
    # Link loss and clock drift need a broker: tests/system/test_gb50396.py covers them against Mosquitto.
    later_reasons: set = set()
    later_types = {"link_down", "link_up", "clock_drift"}
    assert set(REASONS) - later_reasons - seen_reasons == set()
    assert set(TYPES["alarm"]) - later_types - seen_types == set()
