"""How the scenario runner reports bad files and failed expectations."""

from pathlib import Path

import pytest

from simulator.runner import ScenarioRunner
from simulator.scenario import ScenarioError, load_scenario

HEAD = """
[scenario]
name = "t"
start = "2026-11-23T09:00:00+08:00"
config = "config/venue.example.toml"
roster = "scenarios/people.csv"
"""


def scenario_file(tmp_path, steps: str):
    path = tmp_path / "s.toml"
    path.write_text(HEAD + steps, encoding="utf-8")
    return path


def test_an_unknown_action_is_reported_with_file_and_step(tmp_path):
    path = scenario_file(tmp_path, '[[step]]\ndo = "present_card"\n')
    with pytest.raises(ScenarioError, match=r"s.toml: step 1: do: 'present_card' is not one of present_id_card"):
        load_scenario(path)


def test_a_wrong_parameter_is_reported_with_what_is_allowed(tmp_path):
    path = scenario_file(tmp_path, '[[step]]\ndo = "walk_through"\nmetals = true\n')
    with pytest.raises(ScenarioError, match=r"step 1: metals: is not a parameter of walk_through \(allowed: metal, persons\)"):
        load_scenario(path)


def test_an_expectation_of_an_unknown_event_type_is_reported(tmp_path):
    path = scenario_file(tmp_path, '[[step]]\nexpect = [{type = "acess_granted"}]\n')
    with pytest.raises(ScenarioError, match=r"step 1: expect: type 'acess_granted' is not an event type"):
        load_scenario(path)


def test_every_problem_of_a_file_is_reported_together(tmp_path):
    path = scenario_file(tmp_path, '[[step]]\ndo = "fly"\n[[step]]\nat = "soon"\ndo = "open_door"\n')
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert "step 1: do: 'fly'" in str(err.value) and "step 2: at: 'soon'" in str(err.value)


def test_a_failed_expectation_names_the_step_and_what_happened(tmp_path, pcscd):
    path = scenario_file(tmp_path, '[[step]]\ndo = "press_exit"\n[[step]]\nexpect = [{type = "door_forced"}]\n')
    result = ScenarioRunner(load_scenario(path), workdir=tmp_path, out=lambda _: None).run()
    assert not result.ok
    assert "step 2: expected {type=door_forced}" in result.failures[0]
    assert "出门按钮 exit button" in result.failures[0]


def test_a_scenario_runs_with_another_config_and_publishes_to_the_broker(tmp_path, pcscd, mosquitto_broker):
    import json

    from simulator.cli import run_scenarios
    from tests.mqtt_link_child import account_config

    # the example config with the test broker's door account in [mqtt]
    cfg = account_config(mosquitto_broker, mosquitto_broker.door("scan-room"), tmp_path / "unused.db")
    example = (Path(__file__).parent.parent / "config" / "venue.example.toml").read_text(encoding="utf-8")
    m = cfg.mqtt
    for key, value in (("username", m.username), ("password_file", m.password_file), ("ca_file", m.ca_file),
                       ("cert_file", m.cert_file), ("key_file", m.key_file)):
        old = next(line for line in example.splitlines() if line.startswith(f"{key} ="))
        example = example.replace(old, f'{key} = "{value}"')
    config = tmp_path / "venue.toml"
    config.write_text(example, encoding="utf-8")
    supervisor = mosquitto_broker.connect()
    supervisor.subscribe(mosquitto_broker.topic("scan-room", "events", "#"))
    path = scenario_file(tmp_path, '[[step]]\ndo = "press_exit"\n[[step]]\ndo = "broker_down"\n'
                                   '[[step]]\ndo = "open_door"\n[[step]]\ndo = "close_door"\n[[step]]\ndo = "broker_up"\n'
                                   '[[step]]\nexpect = [{type = "exit_button"}, {type = "passage"}]\n')
    assert run_scenarios([path], broker=mosquitto_broker.url, config=config) == 0
    supervisor.wait_for_messages(count=3, timeout=15)
    types = [json.loads(m.payload)["type"] for m in supervisor.received()]
    assert {"exit_button", "passage", "controller_started"} <= set(types)
