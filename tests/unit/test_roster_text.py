"""Roster text fields: control characters are refused at import and add, naming row and field.

A name with a newline or an ESC sequence would otherwise travel into every event, the console,
the monitor and the register; a bidi override would make a name read backwards on screen.
"""

import pytest

from firmware_py.errors import RosterError
from firmware_py.storage import roster
from tests.fixtures.roster import id_number
from tests.unit.test_roster_import import import_csv, row

ZHAO = id_number("43010219850312123")


def quoted_row(name, *, org="示例档案馆", pid="P001"):
    """A row whose name and organisation are quoted CSV fields (so they may hold a line break)."""
    cells = row(pid=pid, name="NAME", org="ORG").split(",")
    cells[1], cells[5] = '"' + name.replace('"', '""') + '"', '"' + org.replace('"', '""') + '"'
    return ",".join(cells)


@pytest.mark.parametrize("name, code", [
    ("赵一\x1b[2J", "U+001B"),          # ESC: clears a terminal
    ("赵一\nP999 granted", "U+000A"),    # a fake second line
    ("赵一\r", "U+000D"),
    ("赵\x7f一", "U+007F"),              # DEL
    ("赵\x9b一", "U+009B"),              # C1 CSI
    ("\u202e一赵", "U+202E"),            # right-to-left override
    ("赵\u2066一", "U+2066"),            # left-to-right isolate
])
def test_an_import_with_a_control_character_in_a_name_is_refused_naming_line_and_field(roster_world, name, code):
    path = roster_world.write_csv(row(), quoted_row(name, pid="P002"))
    with pytest.raises(RosterError) as caught:
        import_csv(roster_world, path)
    message = str(caught.value)
    assert "line 3, name: contains a control character" in message and code in message
    assert "\x1b" not in message and "\u202e" not in message and "P999 granted" not in message
    assert roster_world.count("persons") == 0


def test_a_control_character_in_the_organisation_is_refused_too(roster_world):
    path = roster_world.write_csv(quoted_row("赵一", org="示例\x07档案馆"))
    with pytest.raises(RosterError, match=r"line 2, organisation: contains a control character "
                                          r"\(U\+0007 at position 3\)"):
        import_csv(roster_world, path)


def test_adding_a_person_whose_name_holds_an_escape_sequence_is_refused(roster_world):
    with pytest.raises(RosterError, match=r"name: contains a control character \(U\+001B at position 1\)"):
        roster.add(roster_world.db, roster_world.store, secret=roster_world.secret,
                   schedule_groups=roster_world.config.calendar.schedules, person_id="P001",
                   name="\x1b]0;owned\x07赵一", id_number=ZHAO, role="staff", employer_type="own",
                   valid_from="2026-01-01", valid_until="2026-12-31", schedule_group="office")
    assert roster_world.count("persons") == 0


def test_names_with_ordinary_spaces_and_a_middle_dot_are_still_accepted(roster_world):
    qian = id_number("43010319900715202")
    path = roster_world.write_csv(row(name="阿依古丽·买买提"), row("P002", "Anna Maria Li", qian, "04A1B2C4"))
    assert import_csv(roster_world, path).count == 2
