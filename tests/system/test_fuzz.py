"""Fuzzing with hypothesis: arbitrary and mutated inputs to everything that parses what the outside world sends.

Badge UIDs (``uid_from_response``), supervisor commands (``commands.parse``), the
configuration file (``load_config``) and the roster CSV (``roster.import_csv``)
get random and mutated input: no exception but the documented one, no hang, a
message that names what is wrong, and nothing half-written to the database. The
GA 467 frame parser has its own property test in tests/unit/test_ga467.py.

The bound is small so the file runs in seconds; ``FUZZ_EXAMPLES=N`` runs N examples
per property (the long mode, e.g. ``FUZZ_EXAMPLES=20000``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import tomllib
from dataclasses import replace
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.badge_reader import UID_LENGTHS, BadgeResponseError, uid_from_response
from firmware_py.config.schema import load_config
from firmware_py.core import commands
from firmware_py.core.clock import SimulatedClock
from firmware_py.core.events import canonical, refuse_full_id_numbers
from firmware_py.core.inputs import BadgeRead, RemoteCommand
from firmware_py.errors import ConfigError, RosterError
from firmware_py.storage import roster
from firmware_py.storage.db import open_db
from firmware_py.storage.eventstore import EventStore
from simulator.crash.link_child import account_config
from simulator.door_sim import SimulatedDoor
from simulator.lab_broker import SUPERVISOR
from simulator.runner import prepare_database
from simulator.scenario import Scenario
from tests.fixtures.constants import PEOPLE, REPO, TZ
from tests.fixtures.waiting import wait_until

EXAMPLE_CONFIG = REPO / "config" / "venue.example.toml"
SQLITE_MAX_INT = 2**63 - 1


def examples(default: int) -> int:
    return int(os.environ.get("FUZZ_EXAMPLES", default))


FAST = settings(max_examples=examples(300), deadline=None)
SLOW = settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------- badge UID


responses = st.one_of(
    st.binary(max_size=40),
    st.binary(max_size=24).map(lambda b: b + b"\x90\x00"),
    st.sampled_from(UID_LENGTHS).flatmap(lambda n: st.binary(min_size=n, max_size=n)).map(lambda b: b + b"\x90\x00"),
)


@FAST
@given(responses)
def test_a_badge_response_gives_an_upper_hex_uid_or_a_badge_response_error(data):
    for response in (data, list(data)):  # pyscard hands the driver a list of ints
        try:
            uid = uid_from_response(response)
        except BadgeResponseError as exc:
            assert str(exc)
            assert not (data[-2:] == b"\x90\x00" and len(data) - 2 in UID_LENGTHS)
        else:
            assert re.fullmatch(r"[0-9A-F]+", uid) and len(uid) // 2 in UID_LENGTHS
            assert bytes.fromhex(uid) + b"\x90\x00" == data


# ---------------------------------------------------------------------- supervisor commands


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=300))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
command_ids = st.text(min_size=1, max_size=128)
valid_commands = st.one_of(
    st.builds(lambda i, a: {"id": i, "action": a}, command_ids,
              st.sampled_from(["lockdown", "release_lockdown", "status"])),
    st.builds(lambda i, p, r: {"id": i, "action": "revoke", "person_id": p, "reason": r},
              command_ids, st.text(max_size=20), st.text(max_size=300)),
    st.builds(lambda i, n: {"id": i, "action": "replay", "from_seq": n},
              command_ids, st.integers(min_value=1, max_value=SQLITE_MAX_INT)),
)


def mutated(draw_data, command: dict) -> dict:
    """The command with one random change: a key dropped, retyped or given a random value, or one added."""
    how = draw_data.draw(st.sampled_from(["none", "drop", "value", "add", "by"]))
    key = draw_data.draw(st.sampled_from(sorted(command)))
    out = dict(command)
    if how == "drop":
        del out[key]
    elif how == "value":
        out[key] = draw_data.draw(json_values)
    elif how == "add":
        out[draw_data.draw(st.text(max_size=10))] = draw_data.draw(json_values)
    elif how == "by":
        out["by"] = draw_data.draw(json_values)
    return out


def expected_problem(payload: bytes) -> str | None:
    """The contract (docs/contracts.md "Commands"), independently: None if acceptable, else the field to name."""
    if len(payload) > commands.MAX_PAYLOAD:
        return "bytes"
    try:  # strict JSON: NaN and Infinity are refused (stored events are strict JSON)
        data = json.loads(payload.decode("utf-8"), parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "JSON"
    if not isinstance(data, dict):
        return "JSON object"
    cid = data.get("id")
    if not (isinstance(cid, str) and 0 < len(cid) <= 128):
        return "'id'"
    action = data.get("action")
    if not isinstance(action, str) or action not in commands.ACTIONS:
        return "action"
    for name, kind in commands.ACTIONS[action].items():
        value = data.get(name)
        if name not in data or isinstance(value, bool) or not isinstance(value, kind):
            return repr(name)
        # strings of 1 to 256 characters (a revocation names its person and its reason); seqs SQLite can hold
        if (kind is str and not 0 < len(value) <= 256) or (kind is int and not 1 <= value <= SQLITE_MAX_INT):
            return repr(name)
    extra = set(data) - set(commands.ACTIONS[action]) - {"id", "action", "by"}
    if extra:
        return sorted(extra)[0]
    by = data.get("by")
    if by is not None and not (isinstance(by, str) and 0 < len(by) <= 256):
        return "'by'"
    return None


def _not_json(name: str):
    raise ValueError(name)


def check_parse(payload: bytes) -> None:
    cmd = commands.parse(payload, claimed_by="fuzz")
    assert isinstance(cmd, RemoteCommand)
    problem = expected_problem(payload)
    if problem is None:
        assert cmd.error is None, (payload, cmd.error)
        # what execute() will read must be there: an accepted command is carried out, never dropped midway
        assert set(commands.ACTIONS[cmd.action]) <= set(cmd.args), (payload, cmd.args)
    else:
        assert cmd.error, (payload, problem)
        assert problem.removeprefix("either ") in cmd.error, (payload, problem, cmd.error)
    # whatever came, its audit can be stored: strict JSON, UTF-8, no full ID number
    body = canonical({"detail": commands.audit_detail(cmd, cmd.error is None, cmd.error)})
    refuse_full_id_numbers(body)
    body.encode("utf-8")


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_a_command_are_refused_with_a_reason_and_never_raise(payload):
    check_parse(payload)


@FAST
@given(st.data())
def test_a_mutated_command_is_accepted_exactly_when_valid_and_a_refusal_names_the_field(data):
    command = mutated(data, data.draw(valid_commands))
    check_parse(json.dumps(command, ensure_ascii=data.draw(st.booleans())).encode("utf-8"))


# ID-number-looking values (valid check digit or not) anywhere a command can carry them
id_like = st.one_of(st.integers(min_value=10**17, max_value=10**18 - 1),
                    st.from_regex(r"\A[a-z ]{0,4}\d{17}[0-9X][a-z ]{0,4}\Z"))


@FAST
@given(st.data())
def test_the_audit_of_any_command_is_strict_json_without_a_full_id_number(data):
    command = mutated(data, data.draw(valid_commands))
    field = data.draw(st.sampled_from(["id", "by", "reason", "from_seq", "extra", "key"]))
    value = data.draw(id_like)
    if field == "key":
        command[str(value)] = 1
    else:
        command[field] = value
    claimed = data.draw(st.one_of(st.none(), id_like.map(str)))
    cmd = commands.parse(json.dumps(command).encode("utf-8"), claimed_by=claimed)
    detail = commands.audit_detail(cmd, cmd.error is None, cmd.error)
    body = canonical({"detail": detail})  # raises ValueError for NaN or Infinity
    refuse_full_id_numbers(body)  # raises LeakError for a full ID number


def test_a_command_whose_action_is_not_a_string_is_refused_naming_the_action():
    check_parse(b'{"id": "c1", "action": ["lockdown"]}')


def test_a_revoke_with_a_long_reason_is_carried_whole_or_refused_naming_the_reason():
    check_parse(json.dumps({"id": "c2", "action": "revoke", "person_id": "P001", "reason": "x" * 300}).encode())


def test_a_replay_from_beyond_what_sqlite_can_hold_is_refused_or_carried_whole():
    check_parse(json.dumps({"id": "c3", "action": "replay", "from_seq": 2**70}).encode())
    check_parse(json.dumps({"id": "c4", "action": "replay", "from_seq": 10**300}).encode())


def test_a_revoke_with_a_long_reason_is_answered_and_the_door_keeps_working(tmp_path):
    door, clock = plain_door(tmp_path)
    with door:
        door.inputs.put(commands.parse(json.dumps({"id": "c5", "action": "revoke", "person_id": "P001",
                                                   "reason": "x" * 300}).encode(), claimed_by="fuzz"))
        door.pump()
        last = door.events()[-1]
        assert (last["type"], last["detail"]["id"]) == ("command", "c5")
        door.inputs.put(BadgeRead("outside", "04A1B2C4"))  # P002 comes in afterwards
        door.pump()
        door.walk_through()
        assert door.events()[-1]["type"] == "access_granted"


def test_a_replay_from_beyond_any_seq_leaves_the_mqtt_sender_working(mosquitto_broker, tmp_path, caplog):
    cfg = account_config(mosquitto_broker, mosquitto_broker.door("scan-room"), tmp_path / "events.db")
    door, clock = plain_door(tmp_path, cfg)
    supervisor = mosquitto_broker.connect(SUPERVISOR)
    supervisor.subscribe(mosquitto_broker.topic("scan-room", "events", "#"))
    supervisor.subscribe(mosquitto_broker.topic("scan-room", "status"))
    with door, caplog.at_level(logging.ERROR, logger="firmware_py.link.door_link"):
        # the link subscribes to cmd before it publishes its status: once the status is in, cmd is heard
        wait_until(lambda: (door.pump(), supervisor.received(mosquitto_broker.topic("scan-room", "status")))[1],
                   what="the door's status", timeout=15)
        supervisor.publish(mosquitto_broker.topic("scan-room", "cmd"),
                           json.dumps({"id": "c6", "action": "replay", "from_seq": 2**70}))
        door.pump(until=RemoteCommand)
        door.press_exit()  # an event after the replay request must still go out
        exit_seq = door.events()[-1]["seq"]
        events = mosquitto_broker.topic("scan-room", "events", "#")
        wait_until(lambda: exit_seq in {json.loads(m.payload)["seq"] for m in supervisor.received(events)},
                   what="the exit event", timeout=15)
        time.sleep(1.5)  # the sender's retry interval
    failures = [r.getMessage() for r in caplog.records if "sender failed" in r.getMessage()]
    assert failures == []


def plain_door(tmp_path: Path, cfg=None):
    """A door on simulated hardware with the scenarios' roster; without MQTT unless ``cfg`` has it."""
    if cfg is None:
        cfg = load_config(EXAMPLE_CONFIG)
        cfg = replace(cfg, storage=replace(cfg.storage, database=tmp_path / "events.db",
                                           secret=tmp_path / "device.key"),
                      mqtt=replace(cfg.mqtt, enabled=False))
    clock = SimulatedClock(datetime(2026, 11, 23, 9, tzinfo=TZ))
    prepare_database(cfg, Scenario(tmp_path / "s", "fuzz", clock.now(), cfg.path, PEOPLE, ()), clock)
    return SimulatedDoor(cfg, clock=clock, badges=False), clock


# ---------------------------------------------------------------------- the configuration file


def toml_text(data: dict) -> str:
    """A minimal TOML writer for what tomllib reads back from the example config (and mutations of it)."""
    lines: list[str] = []

    def key(k: str) -> str:
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False).replace("\x7f", "\\u007f")

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            if isinstance(v, float) and not math.isfinite(v):
                return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
        if isinstance(v, (datetime, date, dtime)):
            return v.isoformat()
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(type(v))

    def table(path: list[str], d: dict, header: str | None) -> None:
        if header:
            lines.append(header)
        subs = []
        for k, v in d.items():
            if isinstance(v, dict) and v:
                subs.append(("table", k, v))
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                subs.append(("array", k, v))
            else:
                lines.append(f"{key(k)} = {value(v)}")
        for kind, k, v in subs:
            name = ".".join(key(p) for p in [*path, k])
            if kind == "table":
                table([*path, k], v, f"[{name}]")
            else:
                for item in v:
                    table([*path, k], item, f"[[{name}]]")

    table([], data, None)
    return "\n".join(lines) + "\n"


# Keys without control characters: a key holding a line break is reported raw and breaks the one-problem-
# per-line layout of the message (cosmetic; noted for the product side, not asserted here).
KEY_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=8)
EXAMPLE = tomllib.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
INTERESTING_STRINGS = ["", " ", "Asia", "Asia/", "UTC", "~nobody-here/events.db", "../x", "/", "a\x00b",
                       "mqtt://h:1883", "mqtts://:8883", "fail_safe", "08:30-12:00", "24:00-25:00", "12:00-08:00",
                       "2026-02-30", "nan", "#", "+", "/prefix"]
config_values = st.one_of(
    st.none().map(lambda _: "__delete__"), st.booleans(), st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.floats(), st.text(max_size=30), st.sampled_from(INTERESTING_STRINGS), st.dates(), st.times(),
    st.datetimes(), st.lists(st.one_of(st.integers(), st.text(max_size=12), st.dates()), max_size=3),
    st.dictionaries(KEY_TEXT, st.integers(), max_size=2),
)


def paths(d, prefix=()):
    """Every (path, value) in the parsed config: tables, keys, array-of-tables items."""
    for k, v in d.items():
        yield (*prefix, k), v
        if isinstance(v, dict):
            yield from paths(v, (*prefix, k))
        elif isinstance(v, list):
            for i, item in enumerate(v):
                if isinstance(item, dict):
                    yield (*prefix, k, i), item
                    yield from paths(item, (*prefix, k, i))


ALL_PATHS = [p for p, _ in paths(EXAMPLE)]


def set_path(d, path, new):
    for p in path[:-1]:
        d = d[p]
    if new == "__delete__":
        del d[path[-1]]
    else:
        d[path[-1]] = new


@SLOW
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), config_values), min_size=1, max_size=3))
def test_a_mutated_config_loads_or_raises_a_config_error_naming_the_file_and_the_key(mutations):
    data = tomllib.loads(toml_text(EXAMPLE))  # a deep copy
    for path, new in mutations:
        try:
            set_path(data, path, new)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced the parent
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "venue.toml"
        path.write_text(toml_text(data), encoding="utf-8")
        tomllib.loads(path.read_text(encoding="utf-8"))  # the writer itself made valid TOML
        try:
            load_config(path)
        except ConfigError as exc:
            lines = str(exc).splitlines()
            assert lines
            for line in lines:
                assert line.startswith(f"{path}: "), line
                where = line[len(f"{path}: "):].split(": ", 1)[0]
                assert re.search(r"\[.+\]|[a-z_]+\.[a-z_.]+", where), line


def test_a_time_zone_that_names_a_region_is_refused_naming_timezone(tmp_path):
    data = tomllib.loads(toml_text(EXAMPLE))
    data["site"]["timezone"] = "Asia"
    check_config_error(tmp_path, data, "[site] timezone")


def test_a_database_path_under_an_unknown_users_home_is_refused_naming_database(tmp_path):
    data = tomllib.loads(toml_text(EXAMPLE))
    data["storage"]["database"] = "~nobody-here/events.db"
    check_config_error(tmp_path, data, "[storage] database")


def check_config_error(tmp_path: Path, data: dict, where: str) -> None:
    path = tmp_path / "venue.toml"
    path.write_text(toml_text(data), encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert f"{path}: {where}" in str(exc)
    else:
        raise AssertionError(f"{where}: accepted")


# ---------------------------------------------------------------------- the roster importer


with open(PEOPLE, encoding="utf-8", newline="") as _f:
    ROSTER_ROWS = list(csv.reader(_f))
SECRET = bytes(range(32))
GROUPS = {"office", "extended"}
CELL_VALUES = st.one_of(
    st.text(max_size=25), st.sampled_from(["", " ", "P001", "04A1B2C3", "04A1B2C4", "43010219880512011X",
                                           "430104199208030228", "2026-02-30", "9999-12-31", "nan", "-1", "1e9",
                                           "visitor", "agency", "nightshift", '"', "a,b", "line\nbreak", "\ufeff"]))


@st.composite
def mutated_rosters(draw) -> tuple[bytes, list[int]]:
    rows = [list(r) for r in ROSTER_ROWS]
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(1, len(rows) - 1))
        how = draw(st.sampled_from(["cell", "cell", "drop_cell", "add_cell", "duplicate", "swap_badge", "blank"]))
        row = rows[i]
        if how == "cell":
            row[draw(st.integers(0, len(row) - 1))] = draw(CELL_VALUES)
        elif how == "drop_cell":
            del row[draw(st.integers(0, len(row) - 1))]
        elif how == "add_cell":
            row.append(draw(CELL_VALUES))
        elif how == "duplicate":
            rows.insert(i + 1, list(row))
        elif how == "swap_badge":
            other = rows[draw(st.integers(1, len(rows) - 1))]
            row[3] = other[3]
        else:
            rows[i] = [""] * len(row)
        lines.append(i + 1)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    text = out.getvalue()
    if draw(st.integers(0, 9)) == 0:  # now and then a byte that is not UTF-8
        raw = bytearray(text.encode("utf-8"))
        raw.insert(draw(st.integers(0, len(raw))), 0xFF)
        return bytes(raw), lines
    return text.encode("utf-8"), lines


def snapshot(db) -> dict:
    return {table: db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("persons", "badges", "events", "outbox", "meta")}


@SLOW
@given(mutated_rosters())
def test_a_mutated_roster_imports_entirely_or_is_refused_naming_lines_with_nothing_written(roster_file):
    data, _ = roster_file
    tmp = Path(tempfile.mkdtemp())
    try:
        db = open_db(tmp / "events.db")
        store = EventStore(db, site="hn-archive-1", door="scan-room",
                           clock=SimulatedClock(datetime(2026, 11, 23, 9, tzinfo=TZ)))
        roster.import_csv(db, store, PEOPLE, secret=SECRET, schedule_groups=GROUPS, tz=TZ)  # someone is already there
        before = snapshot(db)
        path = tmp / "roster.csv"
        path.write_bytes(data)
        try:
            result = roster.import_csv(db, store, path, secret=SECRET, schedule_groups=GROUPS, tz=TZ)
        except RosterError as exc:
            message = str(exc)
            assert snapshot(db) == before, "a refused import changed the database"
            assert "nothing was written" in message
            named = [int(n) for n in re.findall(r"line (\d+)", message)]
            assert named, message
            assert all(1 <= n <= data.count(b"\n") + 1 for n in named), message
        else:
            after = snapshot(db)
            assert len(after["events"]) == len(before["events"]) + 1
            assert {p.person_id for p in roster.list_persons(db)} >= set(result.added) | set(result.updated)
        assert not db.conn.in_transaction
        db.conn.close()
    finally:
        shutil.rmtree(tmp)
