"""`roster import`: all or nothing, every bad row named, on a real SQLite file."""

import csv

import pytest

from firmware_py.core.idnumber import id_hash, validate
from firmware_py.errors import RosterError
from firmware_py.storage import roster
from firmware_py.storage.eventstore import verify
from tests.fixtures.roster import EXAMPLE_ROSTER, HEADER, START, id_number

ZHAO = id_number("43010219850312123")
QIAN = id_number("43010319900715202")
SUN = id_number("430104197802033019"[:17])


def row(pid="P001", name="赵一", number=ZHAO, badges="04A1B2C3", role="staff", org="示例档案馆", employer="own",
        review="2025-12-10", hours="48", commitment="2025-12-15", valid_from="2026-01-01", valid_until="2026-12-31",
        group="office"):
    return ",".join((pid, name, number, badges, role, org, employer, review, hours, commitment, valid_from,
                     valid_until, group))


GOOD_ROWS = (row(), row("P002", "钱二", QIAN, "04A1B2C4"), row("P003", "孙三", SUN, "04A1B2C5", role="supervisor",
                                                             group="extended"))


def import_csv(world, path):
    return roster.import_csv(world.db, world.store, path, secret=world.secret,
                             schedule_groups=world.config.calendar.schedules, tz=world.config.site.timezone)


def refusal(world, path) -> str:
    with pytest.raises(RosterError) as caught:
        import_csv(world, path)
    return str(caught.value)


# --------------------------------------------------------------------------- the example roster


def test_the_example_roster_imports_cleanly_with_the_example_configs_groups(roster_world):
    result = import_csv(roster_world, EXAMPLE_ROSTER)
    assert result.count == 8
    assert result.added == tuple(f"P00{i}" for i in range(1, 9))
    assert [p.person_id for p in roster.list_persons(roster_world.db)] == list(result.added)
    assert str(verify(roster_world.db)) == "ok 1 events"


def test_the_example_roster_covers_every_role_both_employer_types_and_both_groups(roster_world):
    import_csv(roster_world, EXAMPLE_ROSTER)
    persons = roster.list_persons(roster_world.db)
    assert {p.role for p in persons} == {"staff", "supervisor", "visitor", "inspector"}
    assert {p.employer_type for p in persons} == {"own", "agency"}
    assert {p.schedule_group for p in persons} == {"office", "extended"}
    assert any(p.training_hours < 40 for p in persons)
    assert any(p.commitment_date is None for p in persons)
    assert any(p.valid_until < START.date() for p in persons)


def test_the_example_rosters_id_numbers_are_valid_and_matchable(roster_world):
    import_csv(roster_world, EXAMPLE_ROSTER)
    with EXAMPLE_ROSTER.open(encoding="utf-8-sig") as f:
        for record in csv.DictReader(f):
            number = validate(record["id_number"])
            found = roster.get_by_id_hash(roster_world.db, id_hash(roster_world.secret, number))
            assert found.person_id == record["person_id"]


def test_importing_the_example_warns_about_what_the_policy_will_deny(roster_world):
    result = import_csv(roster_world, EXAMPLE_ROSTER)
    assert "P007: no signed commitment (denied as commitment_missing)" in result.warnings
    assert "P008: the permit ended on 2026-10-31 (denied as expired)" in result.warnings


# --------------------------------------------------------------------------- all or nothing


def test_one_bad_row_among_good_rows_writes_nothing(roster_world):
    path = roster_world.write_csv(GOOD_ROWS[0], row("P002", "钱二", QIAN, "04A1B2C4", role="cleaner"), GOOD_ROWS[2])
    message = refusal(roster_world, path)
    assert "line 3, role: 'cleaner' is not allowed; use one of staff, supervisor, visitor, inspector" in message
    assert roster_world.count("persons") == 0
    assert roster_world.count("badges") == 0
    assert roster_world.events(type=None) == []


def test_a_refused_import_leaves_an_existing_roster_and_log_unchanged(roster_world):
    import_csv(roster_world, roster_world.write_csv(*GOOD_ROWS, name="first.csv"))
    before = (roster.list_persons(roster_world.db), list(roster_world.store.events()))
    path = roster_world.write_csv(row(name="赵一改", badges="04A1B2CC"), row("P009", number=ZHAO[:17] + "0"),
                                  name="second.csv")
    refusal(roster_world, path)
    assert (roster.list_persons(roster_world.db), list(roster_world.store.events())) == before


def test_the_refusal_names_every_bad_row_with_its_line_and_field(roster_world):
    path = roster_world.write_csv(
        GOOD_ROWS[0],
        row("P002", "钱二", QIAN[:17] + ("0" if QIAN[17] != "0" else "1"), "04A1B2C4"),  # line 3: check digit
        GOOD_ROWS[2],
        row("P004", "李四", id_number("43010519951130402"), "", valid_until="2026-02-30"),  # line 5
        row("P005", "周五", id_number("43011119820918503"), "XYZ", hours="-1", group="night"),  # line 6
    )
    message = refusal(roster_world, path)
    assert "nothing was written (5 problems on 3 lines)" in message
    assert "line 3, id_number: ID number 430103********" in message
    assert "line 5, valid_until: 2026-02-30 is not a real date" in message
    assert "line 6, badge_uids: 'XYZ' is not hexadecimal" in message
    assert "line 6, training_hours: '-1' is not a number of hours" in message
    assert "line 6, schedule_group: 'night' is not in the configuration; use one of extended, office" in message


def test_the_refusal_never_shows_a_full_id_number(roster_world):
    bad = QIAN[:17] + ("0" if QIAN[17] != "0" else "1")
    message = refusal(roster_world, roster_world.write_csv(row(number=bad), row("P002", number=ZHAO)))
    assert bad not in message and ZHAO not in message


# --------------------------------------------------------------------------- duplicates and conflicts


def test_a_person_id_twice_in_the_file_is_refused_naming_both_lines(roster_world):
    path = roster_world.write_csv(GOOD_ROWS[0], row(number=QIAN, badges="04A1B2C4"))
    assert "line 3, person_id: P001 is also on line 2" in refusal(roster_world, path)


def test_an_id_number_twice_in_the_file_is_refused_naming_both_lines(roster_world):
    path = roster_world.write_csv(GOOD_ROWS[0], row("P002", badges="04A1B2C4", number=ZHAO.lower()))
    assert "line 3, id_number: 430102********123X is also on line 2 (P001)" in refusal(roster_world, path)


def test_a_badge_twice_in_the_file_is_refused_naming_both_lines(roster_world):
    path = roster_world.write_csv(GOOD_ROWS[0], row("P002", number=QIAN, badges="04:a1:b2:c3"))
    assert "line 3, badge_uids: 04A1B2C3 is also on line 2 (P001)" in refusal(roster_world, path)


def test_duplicates_are_found_even_in_rows_with_other_problems(roster_world):
    path = roster_world.write_csv(GOOD_ROWS[0], row("P002", number=QIAN, badges="XYZ 04A1B2C3", role="boss"))
    message = refusal(roster_world, path)
    assert "line 3, role: 'boss'" in message
    assert "line 3, badge_uids: 04A1B2C3 is also on line 2 (P001)" in message


def test_a_badge_held_by_someone_not_in_the_file_is_refused(roster_world):
    import_csv(roster_world, roster_world.write_csv(GOOD_ROWS[0], name="first.csv"))
    path = roster_world.write_csv(row("P002", number=QIAN, badges="04A1B2C3"), name="second.csv")
    assert "line 2, badge_uids: 04A1B2C3 already belongs to P001" in refusal(roster_world, path)


def test_an_id_number_already_in_the_roster_under_another_person_is_refused(roster_world):
    import_csv(roster_world, roster_world.write_csv(GOOD_ROWS[0], name="first.csv"))
    path = roster_world.write_csv(row("P009", badges=""), name="second.csv")
    assert "line 2, id_number: 430102********123X is already in the roster as P001" in refusal(roster_world, path)


def test_two_persons_in_the_file_may_swap_badges(roster_world):
    import_csv(roster_world, roster_world.write_csv(*GOOD_ROWS[:2], name="first.csv"))
    import_csv(roster_world, roster_world.write_csv(row(badges="04A1B2C4"), row("P002", "钱二", QIAN, "04A1B2C3"),
                                                    name="second.csv"))
    assert roster.get_by_badge(roster_world.db, "04A1B2C3").person_id == "P002"


# --------------------------------------------------------------------------- the file format


def test_a_byte_order_mark_is_accepted(roster_world):
    assert import_csv(roster_world, roster_world.write_csv(*GOOD_ROWS, bom=True)).count == 3


def test_a_gbk_file_is_refused_with_a_hint(roster_world):
    message = refusal(roster_world, roster_world.write_csv(*GOOD_ROWS, encoding="gbk"))
    assert "line 2: the file is not UTF-8 (saved as GBK?" in message


def test_a_missing_column_is_refused(roster_world):
    header = HEADER[: HEADER.rindex(",")]
    path = roster_world.write_csv(row()[: row().rindex(",")], header=header)
    assert "line 1, header: missing column(s) schedule_group" in refusal(roster_world, path)


def test_an_unknown_column_is_refused(roster_world):
    path = roster_world.write_csv(row() + ",x", header=HEADER + ",phone")
    assert "line 1, header: unknown column(s) 'phone'" in refusal(roster_world, path)


def test_columns_may_come_in_any_order(roster_world):
    fields = row().split(",")
    header = "name,person_id," + ",".join(HEADER.split(",")[2:])
    path = roster_world.write_csv(",".join([fields[1], fields[0], *fields[2:]]), header=header)
    import_csv(roster_world, path)
    assert roster.get(roster_world.db, "P001").name == "赵一"


def test_a_row_with_too_few_fields_is_refused(roster_world):
    path = roster_world.write_csv(GOOD_ROWS[0], "P002,钱二")
    assert "line 3, row: has 2 fields, the header has 13" in refusal(roster_world, path)


def test_a_file_with_only_a_header_is_refused(roster_world):
    assert "the file has no persons" in refusal(roster_world, roster_world.write_csv())


def test_blank_lines_are_skipped_and_line_numbers_stay_true(roster_world):
    path = roster_world.write_csv(GOOD_ROWS[0], "", row("P002", number=QIAN, badges="", role="boss"))
    assert "line 4, role: 'boss'" in refusal(roster_world, path)


def test_several_badges_separated_by_semicolons_or_spaces_are_normalised(roster_world):
    import_csv(roster_world, roster_world.write_csv(row(badges="04a1b2c3; 04-a1-b2-c4 04A1B2C5A1B2C3")))
    assert roster.get(roster_world.db, "P001").badge_uids == ("04A1B2C3", "04A1B2C4", "04A1B2C5A1B2C3")


def test_empty_review_and_commitment_dates_are_recorded_as_missing(roster_world):
    import_csv(roster_world, roster_world.write_csv(row(review="", commitment="", hours="")))
    person = roster.get(roster_world.db, "P001")
    assert (person.review_date, person.commitment_date, person.training_hours) == (None, None, 0)


# --------------------------------------------------------------------------- updating


def test_an_import_records_one_roster_changed_event_with_counts_and_no_id_numbers(roster_world):
    path = roster_world.write_csv(*GOOD_ROWS)
    import_csv(roster_world, path)
    [event] = roster_world.events()
    detail = event["detail"]
    assert (detail["action"], detail["count"], detail["added"], detail["file"]) == \
        ("import", 3, ["P001", "P002", "P003"], "roster.csv")
    assert ZHAO not in str(event) and QIAN not in str(event)


def test_reimporting_the_same_file_changes_nothing_but_is_recorded(roster_world):
    path = roster_world.write_csv(*GOOD_ROWS)
    import_csv(roster_world, path)
    result = import_csv(roster_world, path)
    assert (result.added, result.updated, result.unchanged) == ((), (), ("P001", "P002", "P003"))
    assert len(roster_world.events()) == 2


def test_an_import_updates_existing_persons_and_replaces_their_badges(roster_world):
    import_csv(roster_world, roster_world.write_csv(*GOOD_ROWS, name="first.csv"))
    result = import_csv(roster_world, roster_world.write_csv(row(hours="60", badges="04A1B2CC"), name="second.csv"))
    assert result.updated == ("P001",)
    person = roster.get(roster_world.db, "P001")
    assert (person.training_hours, person.badge_uids) == (60, ("04A1B2CC",))
    assert roster.get_by_badge(roster_world.db, "04A1B2C3") is None


def test_persons_missing_from_the_file_are_kept(roster_world):
    import_csv(roster_world, roster_world.write_csv(*GOOD_ROWS, name="first.csv"))
    import_csv(roster_world, roster_world.write_csv(GOOD_ROWS[0], name="second.csv"))
    assert len(roster.list_persons(roster_world.db)) == 3


def test_a_revoked_person_stays_revoked_when_reimported(roster_world):
    path = roster_world.write_csv(*GOOD_ROWS)
    import_csv(roster_world, path)
    roster.revoke(roster_world.db, roster_world.store, "P002", "left the agency", START)
    result = import_csv(roster_world, path)
    assert result.still_revoked == ("P002",)
    assert roster.get(roster_world.db, "P002").status == "revoked"
    assert any("P002: stays revoked" in w for w in result.warnings)


# --------------------------------------------------------------------------- run as root on the service's files


def test_an_import_run_as_root_warns_and_leaves_the_new_secret_readable_to_the_service_user(tmp_path, capsys):
    import os

    from firmware_py.cli.main import main
    from tests.fixtures.roster import EXAMPLE_CONFIG

    assert os.geteuid() == 0, "the suite runs as root"
    service_uid = 65534  # nobody: stands for the accessctl user
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, service_uid, service_uid)
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    text = text.replace('"/var/lib/accessctl/events.db"', f'"{state}/events.db"')
    text = text.replace('"/var/lib/accessctl/device.key"', f'"{state}/device.key"')
    config = tmp_path / "venue.toml"
    config.write_text(text, encoding="utf-8")
    assert main(["roster", "import", str(EXAMPLE_ROSTER), "--config", str(config)]) == 0
    assert "run roster commands as the service user" in capsys.readouterr().err.lower()
    for name in ("device.key", "events.db"):
        assert (state / name).stat().st_uid == service_uid, name
