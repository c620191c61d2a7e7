"""How the scenario runner reports bad files and failed expectations, and how it talks to a broker."""

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from firmware_py.errors import ScenarioError
from simulator import cli as sim_cli
from simulator.runner import ScenarioRunner
from simulator.scenario import load_scenario
from tests.fixtures.constants import EXAMPLE, REPO

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
    expected = r"step 1: metals: is not a parameter of walk_through \(allowed: metal, persons\)"
    with pytest.raises(ScenarioError, match=expected):
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
    from simulator.crash.link_child import account_config

    # the example config with the test broker's door account in [mqtt]
    cfg = account_config(mosquitto_broker, mosquitto_broker.door("scan-room"), tmp_path / "unused.db")
    example = (REPO / "config" / "venue.example.toml").read_text(encoding="utf-8")
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
                                   '[[step]]\ndo = "open_door"\n[[step]]\ndo = "close_door"\n'
                                   '[[step]]\ndo = "broker_up"\n'
                                   '[[step]]\nexpect = [{type = "exit_button"}, {type = "passage"}]\n')
    assert run_scenarios([path], broker=mosquitto_broker.url, config=config) == 0
    supervisor.wait_for_messages(count=3, timeout=15)
    types = [json.loads(m.payload)["type"] for m in supervisor.received()]
    assert {"exit_button", "passage", "controller_started"} <= set(types)


# ------------------------------------------------------------------ a plain local broker, as a newcomer runs one


@pytest.fixture
def plain_broker(tmp_path):
    """Mosquitto on a free loopback port, plain MQTT, anonymous: what `mosquitto -p PORT` gives a newcomer."""
    program = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "plain-mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    f"log_dest file {tmp_path / 'plain-mosquitto.log'}\nuser root\n")
    proc = subprocess.Popen([program, "-c", str(conf)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.02)
    yield f"mqtt://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(5)


class Watcher:
    """`mosquitto_sub -t 'accessctl/#'`: every message, by topic."""

    def __init__(self, url: str):
        host, port = url.removeprefix("mqtt://").split(":")
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(host, int(port))
        self.client.subscribe("accessctl/#", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10), "the watcher's subscription was not acknowledged"

    def _on_message(self, client, userdata, message):
        with self._lock:
            self.messages.append((message.topic, message.payload))

    def event_types(self, timeout: float = 10, want: set[str] = frozenset()) -> set[str]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                types = {json.loads(p)["type"] for t, p in self.messages if "/events/" in t}
            if want <= types or time.monotonic() > deadline:
                return types
            time.sleep(0.05)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def watcher(plain_broker):
    w = Watcher(plain_broker)
    yield w
    w.close()


EXIT_AND_PASSAGE = ('[[step]]\ndo = "press_exit"\n[[step]]\ndo = "open_door"\n[[step]]\ndo = "close_door"\n'
                    '[[step]]\nexpect = [{type = "exit_button"}, {type = "passage"}]\n')


def test_a_plain_broker_url_works_without_the_configs_credentials(tmp_path, pcscd, plain_broker, watcher, capsys):
    # the example config names /etc/accessctl/mqtt.password and TLS files that a newcomer does not have
    path = scenario_file(tmp_path, EXIT_AND_PASSAGE)
    assert sim_cli.main(["run", str(path), "--broker", plain_broker]) == 0, capsys.readouterr()
    assert {"controller_started", "exit_button", "passage"} <= watcher.event_types(
        want={"controller_started", "exit_button", "passage"})


def test_a_config_given_without_a_broker_keeps_its_mqtt(tmp_path, pcscd, plain_broker, watcher, capsys):
    text = EXAMPLE.read_text(encoding="utf-8")
    mqtt_section = text[text.index("[mqtt]"):]
    config = tmp_path / "lab.toml"
    config.write_text(text.replace(mqtt_section, f'[mqtt]\nenabled = true\nbroker = "{plain_broker}"\n'),
                      encoding="utf-8")
    path = scenario_file(tmp_path, EXIT_AND_PASSAGE)
    assert sim_cli.main(["run", str(path), "--config", str(config)]) == 0, capsys.readouterr()
    assert {"exit_button", "passage"} <= watcher.event_types(want={"exit_button", "passage"})


@pytest.fixture
def wall_clock_beacons(plain_broker):
    """What `accessctl monitor` beside the simulator does: the supervisor's wall-clock time, retained, often."""
    host, port = plain_broker.removeprefix("mqtt://").split(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(host, int(port))
    client.loop_start()
    stop = threading.Event()
    sent = []

    def publish():
        while not stop.wait(0.1):
            now = datetime.now(UTC).astimezone().isoformat(timespec="milliseconds")
            client.publish("accessctl/hn-archive-1/time", json.dumps({"ts": now}), qos=1, retain=True)
            sent.append(now)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    yield sent
    stop.set()
    thread.join()
    client.publish("accessctl/hn-archive-1/time", b"", qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_a_monitors_wall_clock_beacon_leaves_a_scenarios_outcome_unchanged(pcscd, plain_broker, wall_clock_beacons,
                                                                            watcher, capsys, caplog):
    assert sim_cli.main(["run", str(REPO / "scenarios" / "alarms.toml"), "--broker", plain_broker]) == 0, \
        capsys.readouterr().out
    assert len(wall_clock_beacons) > 5  # beacons were flowing all along
    types = watcher.event_types(want={"door_forced"})
    assert "door_forced" in types and "clock_drift" not in types and "clock_unsynchronised" not in types
    assert caplog.text.count("simulated time") == 1  # said once why the beacons are not taken


def test_a_scenario_tests_the_beacon_on_simulated_time(tmp_path, pcscd):
    path = scenario_file(tmp_path, '[[step]]\ndo = "time_beacon"\noffset_s = -10\n'
                                   '[[step]]\nexpect = [{type = "clock_drift"}]\n'
                                   '[[step]]\ndo = "time_beacon"\noffset_s = 7200\n'
                                   '[[step]]\ndo = "present_id_card"\nperson = "P001"\n'
                                   '[[step]]\nexpect = [{type = "access_denied", person = "P001", '
                                   'reason = "clock_unsynchronised"}]\n')
    result = ScenarioRunner(load_scenario(path), workdir=tmp_path, out=lambda _: None).run()
    assert result.ok, result.failures


@pytest.mark.parametrize("value", ["nan", "inf", "true", '"-10"'])
def test_a_beacon_offset_that_is_not_a_finite_number_is_reported(tmp_path, value):
    path = scenario_file(tmp_path, f'[[step]]\ndo = "time_beacon"\noffset_s = {value}\n')
    with pytest.raises(ScenarioError, match="step 1: offset_s: "):
        load_scenario(path)


@pytest.mark.parametrize("params, why", [
    ('holidays = [2026-02-30]', r"Invalid date|not a real date"),
    ('holidays = ["someday"]', r"step 1: holidays: 'someday' is not a date"),
    ('schedules = {office = {mon = ["12:00-08:00"]}}', r"step 1: schedules office.mon: '12:00-08:00' ends before"),
    ('holidays = [2026-11-27]\nworking_days = [2026-11-27]', r"step 1: calendar: 2026-11-27 is both a holiday"),
    ('roster = "nowhere.csv"', r"step 1: roster: nowhere.csv not found"),
])
def test_a_roster_bundle_step_with_hours_a_door_would_refuse_is_reported(tmp_path, params, why):
    path = scenario_file(tmp_path, f'[[step]]\ndo = "roster_bundle"\n{params}\n')
    with pytest.raises(ScenarioError, match=why):
        load_scenario(path)


# ------------------------------------------------------------------ simulated doors side by side


def in_and_out(person: str, times: int) -> str:
    """A scenario: ``person`` badges in and out ``times`` times."""
    steps = ""
    for _ in range(times):
        for side in ("outside", "inside"):
            steps += (f'[[step]]\ndo = "present_badge"\nperson = "{person}"\nside = "{side}"\n'
                      '[[step]]\ndo = "walk_through"\n[[step]]\ndo = "open_door"\n[[step]]\ndo = "close_door"\n'
                      f'[[step]]\nexpect = [{{type = "access_granted", person = "{person}"}}, {{type = "passage"}}]\n')
    return steps


def access_events(db: Path) -> list[dict]:
    from firmware_py.core.clock import SimulatedClock
    from firmware_py.storage.db import open_db
    from firmware_py.storage.eventstore import EventStore

    store = EventStore(open_db(db), site="hn-archive-1", door="scan-room",
                       clock=SimulatedClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC)))
    try:
        return [e for e in store.events(1) if e["category"] == "access" and e["type"] != "passage"]
    finally:
        store.db.conn.close()


def test_two_simulators_side_by_side_each_read_only_their_own_badges(tmp_path, pcscd):
    runs = {}
    for person in ("P001", "P003"):
        folder = tmp_path / person
        folder.mkdir()
        path = folder / "s.toml"
        path.write_text(HEAD + in_and_out(person, 3), encoding="utf-8")
        runs[person] = (folder / "events.db", subprocess.Popen(
            [str(Path(sys.executable).parent / "accessctl-sim"), "run", str(path), "--db", str(folder / "events.db")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = {person: proc.communicate(timeout=180)[0] for person, (_, proc) in runs.items()}
    for person, (db, proc) in runs.items():
        assert proc.returncode == 0, outputs[person]
        assert "not simulated" not in outputs[person]
        events = access_events(db)
        assert [(e["type"], e["person"]["person_id"]) for e in events] == [("access_granted", person)] * 6, \
            f"{person}'s door saw badges it was not shown:\n{outputs[person]}"


def test_a_scenario_with_commands_runs_twice_on_the_same_database(tmp_path):
    # The door runs a command id at most once, so each run must send fresh ids.
    path = scenario_file(tmp_path, '''
[[step]]
do = "command"
action = "lockdown"
[[step]]
expect = [{type = "lockdown_on"}]
[[step]]
do = "command"
action = "release_lockdown"
[[step]]
expect = [{type = "lockdown_off"}]
''')
    db = tmp_path / "door.db"
    assert sim_cli.run_scenarios([path], db=db) == 0
    assert sim_cli.run_scenarios([path], db=db) == 0
