"""A busy working day at one door of the simulated fleet: its roster and its mix of actions.

Everything here is synthetic: the people are invented, their resident ID numbers have a valid
check digit (:func:`firmware_py.core.idnumber.check_digit`) and belong to nobody. Each door draws its
day from its own seeded :class:`random.Random`, so a run with the same ``--seed`` plays the same
day at every door.

The mix (weights of :data:`MIX`) is what a digitisation room sees on a busy day: mostly staff
going in and out through the metal-detector gate, some cards that are refused (unknown, not a
valid number, expired, training incomplete), and now and then an alarm (metal at the gate, two
people in one passage, a door forced or held open), plus exits by the request-to-exit button.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

from firmware_py.core.idnumber import check_digit

ROSTER_COLUMNS = ("person_id", "name", "id_number", "badge_uids", "role", "organisation", "employer_type",
                  "review_date", "training_hours", "commitment_date", "valid_from", "valid_until", "schedule_group")
STAFF = 24  # office hours
SUPERVISORS = 4  # extended hours
SURNAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张"
GIVEN = ("一", "二", "三", "四", "五", "六", "七", "八", "九", "十")

# action -> weight; the events each one stores are listed in docs/fleet.md ("The simulated day")
MIX: dict[str, float] = {
    "visit": 0.62,          # entry or exit: access_granted, passage
    "exit_button": 0.08,    # exit_button, passage
    "unknown_card": 0.07,   # access_denied unknown_credential
    "invalid_card": 0.03,   # access_denied invalid_id_number
    "expired": 0.03,        # access_denied expired
    "untrained": 0.03,      # access_denied training_incomplete
    "metal": 0.05,          # access_denied metal_detected, screening_alarm
    "tailgating": 0.03,     # access_denied tailgating, tailgating
    "door_forced": 0.03,    # door_forced
    "held_open": 0.03,      # exit_button, door_held_open (twice: open and closed), passage
}


@dataclass(frozen=True)
class Person:
    person_id: str
    name: str
    id_number: str


@dataclass(frozen=True)
class Roster:
    """The synthetic people one door knows, and the cards it must refuse."""

    path: Path
    staff: tuple[Person, ...]  # may enter: office staff and supervisors
    expired: Person
    untrained: Person
    strangers: tuple[str, ...]  # valid ID numbers of nobody on the roster
    invalid: tuple[str, ...]  # numbers whose check digit is wrong


def id_number(rng: random.Random) -> str:
    """A synthetic resident ID number with a valid check digit (region 430102, born 1970-1999)."""
    first17 = (f"430102{rng.randint(1970, 1999)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
               f"{rng.randint(0, 999):03d}")
    return first17 + check_digit(first17)


def _wrong_digit(number: str) -> str:
    digits = "0123456789X"
    return number[:17] + digits[(digits.index(number[17]) + 1) % len(digits)]


def write_roster(path: Path, seed: int) -> Roster:
    """Write the fleet's synthetic roster CSV to ``path`` (the same for every door) and describe it."""
    rng = random.Random(f"fleet-roster-{seed}")
    numbers: list[str] = []
    while len(numbers) < STAFF + SUPERVISORS + 2 + 20:
        n = id_number(rng)
        if n not in numbers:
            numbers.append(n)
    rows, staff = [], []

    def add(pid: str, role: str, group: str, *, training: int = 48, until: str = "2027-12-31") -> Person:
        i = len(rows)
        person = Person(pid, f"{SURNAMES[i % len(SURNAMES)]}{GIVEN[i % len(GIVEN)]}{i:02d}", numbers[i])
        rows.append({"person_id": pid, "name": person.name, "id_number": person.id_number, "badge_uids": "",
                     "role": role, "organisation": "示例档案馆数字化室", "employer_type": "own",
                     "review_date": "2026-01-10", "training_hours": str(training), "commitment_date": "2026-01-12",
                     "valid_from": "2026-01-01", "valid_until": until, "schedule_group": group})
        return person

    for i in range(STAFF):
        staff.append(add(f"F{i + 1:03d}", "staff", "office"))
    for i in range(SUPERVISORS):
        staff.append(add(f"S{i + 1:03d}", "supervisor", "extended"))
    expired = add("X001", "staff", "office", until="2026-06-30")
    untrained = add("X002", "staff", "office", training=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROSTER_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    strangers = tuple(numbers[len(rows):])
    return Roster(path, tuple(staff), expired, untrained, strangers, tuple(_wrong_digit(n) for n in strangers))


def choose_action(rng: random.Random) -> str:
    return rng.choices(list(MIX), weights=list(MIX.values()))[0]
