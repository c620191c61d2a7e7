"""Scenario files (DESIGN.md "Scenario files"): reading and checking them.

A scenario is a simulated start time, a config, a roster, and steps. A step
either does something at the door (``do``) or checks what has happened since
the previous check (``expect``). Every mistake in a file is reported with the
file and the step number, before anything runs.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from firmware_py.core.events import CATEGORY_OF, REASONS
from firmware_py.errors import ScenarioError

REPO = Path(__file__).resolve().parent.parent

# action -> {parameter: (type, default)}; a default of ... means required
ACTIONS: dict[str, dict[str, tuple[type | tuple[type, ...], object]]] = {
    "present_id_card": {"person": (str, None), "id_number": (str, None), "name": (str, "测试访客"),
                        "side": (str, "outside")},
    "present_badge": {"person": (str, None), "uid": (str, None), "side": (str, "outside")},
    "walk_through": {"metal": (bool, False), "persons": (int, 1)},
    "open_door": {},
    "close_door": {},
    "press_exit": {},
    "advance": {"by": (str, ...)},
    "broker_down": {},
    "broker_up": {},
    "restart_controller": {},
    # beyond DESIGN.md's list (reported to the product side): what lockdown, clock and
    # fault scenarios need to happen at a door
    "command": {"action": (str, ...), "person_id": (str, None), "reason": (str, None), "from_seq": (int, None)},
    "set_clock": {"to": (str, ...)},
    "tamper": {"device": (str, ...), "active": (bool, True)},
    "reader_silent": {"side": (str, "outside"), "silent": (bool, True)},
    # the supervisor's time beacon on simulated time (beacons from a real broker are not taken)
    "time_beacon": {"offset_s": ((int, float), 0)},
    # the second factor (GB/T 37078 §6.3-6.4): a technician sets a PIN (`accessctl roster pin set`),
    # a person types one on the keypad reader (ended with '#' unless end = false)
    "set_pin": {"person": (str, ...), "pin": (str, ...), "duress": (bool, False)},
    "enter_pin": {"pin": (str, ...), "side": (str, "outside"), "end": (bool, True)},  # pin: the keys, '*' too
    # the station's signed roster bundle reaching the door, with the hours it sets: the rows of `roster`
    # (default the scenario's), the groups' weekly windows and the holiday calendar (each defaults to the
    # door config's); applied by the door's own receiver, as from the broker
    "roster_bundle": {"roster": (str, None), "schedules": (dict, None), "holidays": (list, None),
                      "working_days": (list, None), "adjusted_day_schedule": (str, None)},
}
EXPECT_KEYS = ("type", "person", "reason", "direction", "category")


@dataclass(frozen=True)
class Step:
    number: int  # 1-based, as a person counts [[step]] tables in the file
    at: datetime | None
    do: str | None
    params: dict = field(default_factory=dict)
    expect: tuple[dict, ...] | None = None

    def describe(self) -> str:
        if self.do:
            params = dict(self.params)
            if params.get("person"):
                params.pop("name", None)  # the roster's name is used, not the default
            if params.get("pin"):
                params["pin"] = "*" * len(params["pin"])  # a PIN is not printed, even a made-up one
            args = ", ".join(f"{k}={v!r}" for k, v in params.items() if v is not None)
            return f"step {self.number}: {self.do}({args})"
        return f"step {self.number}: expect"


@dataclass(frozen=True)
class Scenario:
    path: Path
    name: str
    start: datetime
    config: Path
    roster: Path | None
    steps: tuple[Step, ...]


_OFFSET = re.compile(r"^\+(\d+):([0-5]\d):([0-5]\d)$")


def parse_offset(text: str) -> timedelta | None:
    m = _OFFSET.match(text)
    return timedelta(hours=int(m[1]), minutes=int(m[2]), seconds=int(m[3])) if m else None


def _resolve(base: Path, name: str) -> Path:
    for candidate in (base / name, REPO / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(name)


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    problems: list[str] = []
    head = data.get("scenario")
    if not isinstance(head, dict):
        raise ScenarioError(f"{path}: [scenario] table is missing (name, start, config, roster)")
    unknown = set(data) - {"scenario", "step"}
    if unknown:
        problems.append(f"{path}: unknown top-level table(s) {', '.join(sorted(unknown))}: "
                        "only [scenario] and [[step]]")
    for key in set(head) - {"name", "start", "config", "roster"}:
        problems.append(f"{path}: [scenario] {key}: is not a known setting")
    start = head.get("start")
    if isinstance(start, str):
        try:
            start = datetime.fromisoformat(start)
        except ValueError:
            start = None
    if not isinstance(start, datetime) or start.tzinfo is None:
        problems.append(f"{path}: [scenario] start: must be a time with offset like \"2026-11-23T08:50:00+08:00\"")
        start = datetime(2026, 1, 1).astimezone()
    base = path.parent
    config = roster = None
    try:
        config = _resolve(base, str(head.get("config", "config/venue.example.toml")))
    except FileNotFoundError as exc:
        problems.append(f"{path}: [scenario] config: {exc} not found next to the scenario or in the repo")
    if "roster" in head:
        try:
            roster = _resolve(base, str(head["roster"]))
        except FileNotFoundError as exc:
            problems.append(f"{path}: [scenario] roster: {exc} not found next to the scenario or in the repo")
    steps = []
    raw_steps = data.get("step", [])
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append(f"{path}: no [[step]] tables")
        raw_steps = []
    for number, raw in enumerate(raw_steps, start=1):
        steps.append(_read_step(path, number, raw, start, problems))
    if problems:
        raise ScenarioError("\n".join(problems))
    return Scenario(path, str(head.get("name", path.stem)), start, config, roster, tuple(steps))


def _read_step(path: Path, number: int, raw: dict, start: datetime, problems: list[str]) -> Step:
    where = f"{path}: step {number}"
    at = None
    if "at" in raw:
        value = raw["at"]
        offset = parse_offset(value) if isinstance(value, str) else None
        if offset is not None:
            at = start + offset
        else:
            try:
                at = datetime.fromisoformat(value) if isinstance(value, str) else value
            except ValueError:
                at = None
            if not isinstance(at, datetime) or at.tzinfo is None:
                problems.append(f"{where}: at: {value!r} is neither an offset like \"+00:05:00\" "
                                "nor a time with offset")
                at = None
    has_do, has_expect = "do" in raw, "expect" in raw
    if has_do == has_expect:
        problems.append(f"{where}: a step has either `do` or `expect`, not {'both' if has_do else 'neither'}")
        return Step(number, at, None)
    if has_expect:
        for key in set(raw) - {"expect", "at"}:
            problems.append(f"{where}: {key}: is not a key of an expect step")
        expect = raw["expect"]
        if not isinstance(expect, list) or not all(isinstance(e, dict) for e in expect):
            problems.append(f"{where}: expect: must be a list of tables like [{{type = \"access_granted\"}}]")
            return Step(number, at, None, expect=())
        for e in expect:
            for key in set(e) - set(EXPECT_KEYS):
                problems.append(f"{where}: expect: {key!r} is not one of {', '.join(EXPECT_KEYS)}")
            if "type" in e and e["type"] not in CATEGORY_OF:
                problems.append(f"{where}: expect: type {e['type']!r} is not an event type of DESIGN.md")
            if "reason" in e and e["reason"] not in REASONS:
                problems.append(f"{where}: expect: reason {e['reason']!r} is not a denial reason of DESIGN.md")
        return Step(number, at, None, expect=tuple(expect))
    action = raw["do"]
    if action not in ACTIONS:
        problems.append(f"{where}: do: {action!r} is not one of {', '.join(ACTIONS)}")
        return Step(number, at, None)
    spec = ACTIONS[action]
    params = {}
    for key in set(raw) - {"do", "at"} - set(spec):
        problems.append(f"{where}: {key}: is not a parameter of {action} (allowed: {', '.join(spec) or 'none'})")
    for key, (kind, default) in spec.items():
        if key in raw:
            value = raw[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                problems.append(f"{where}: {key}: {value!r} has the wrong type for {action}")
            params[key] = value
        elif default is ...:
            problems.append(f"{where}: {key}: is required for {action}")
        else:
            params[key] = default
    if params.get("side") not in (None, "outside", "inside"):
        problems.append(f"{where}: side: {params['side']!r} is not outside or inside")
    if action == "present_id_card" and not (params.get("person") or params.get("id_number")):
        problems.append(f"{where}: present_id_card needs person (from the roster) or id_number")
    if action == "present_badge" and not (params.get("person") or params.get("uid")):
        problems.append(f"{where}: present_badge needs person (from the roster) or uid")
    if action == "time_beacon" and not (isinstance(params["offset_s"], (int, float))
                                        and not isinstance(params["offset_s"], bool)
                                        and abs(params["offset_s"]) <= 10 * 365 * 86400):
        problems.append(f"{where}: offset_s: {params['offset_s']!r} is not a number of seconds "
                        "(within ten years) the supervisor's clock is ahead of the door's")
    keys = "0123456789*" if action == "enter_pin" else "0123456789"  # '*' on the keypad starts again
    if action in ("set_pin", "enter_pin") and not (isinstance(params.get("pin"), str) and params["pin"]
                                                   and set(params["pin"]) <= set(keys)):
        problems.append(f"{where}: pin: must be digits in quotes, like \"2580\""
                        + (" ('*' starts again)" if action == "enter_pin" else ""))
    if action == "roster_bundle":
        _check_bundle_step(path, where, params, problems)
    if action == "advance" and parse_offset(params.get("by", "")) is None:
        problems.append(f"{where}: by: {params.get('by')!r} is not a duration like \"+00:10:00\"")
    return Step(number, at, action, params)


def _check_bundle_step(path: Path, where: str, params: dict, problems: list[str]) -> None:
    """A ``roster_bundle`` step's roster found and its hours as a door would take them (dates as ISO text)."""
    from firmware_py.errors import BundleError
    from firmware_py.link.roster_bundle import bundle_calendar

    if params.get("roster") is not None:
        try:
            params["roster"] = str(_resolve(path.parent, params["roster"]))
        except FileNotFoundError as exc:
            problems.append(f"{where}: roster: {exc} not found next to the scenario or in the repo")
    for key in ("holidays", "working_days"):
        if params.get(key) is not None:
            params[key] = [d.isoformat() if isinstance(d, date) else d for d in params[key]]
    calendar = {k: params[k] for k in ("holidays", "working_days", "adjusted_day_schedule")
                if params.get(k) is not None}
    try:
        bundle_calendar(params["schedules"] or {"any": {}}, calendar)
    except BundleError as exc:
        problems.append(f"{where}: {str(exc).replace('calendar ', '', 1)}")
