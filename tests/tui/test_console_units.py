"""Pure pieces of the console: filter syntax, roster comparison, text helpers (no Textual app)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from canvas_tui.engine.plan.verdict import Verdict, compare, course_ref, role_key
from canvas_tui.engine.roster_match import DefaultSection
from canvas_tui.engine.state import RecordRow
from canvas_tui.records import State
from canvas_tui.tui import format as fmt
from canvas_tui.tui.actions import ACTIONS, check_keymap, effective_key
from canvas_tui.tui.screens.stepper import redact
from canvas_tui.tui.widgets.queue import QueueFilter, parse_filter


def test_filter_syntax_splits_state_from_text() -> None:
    f = parse_filter("state:failed course:BIO-101 smith", QueueFilter(order="-updated_at"))
    assert f == QueueFilter(State.FAILED, "BIO-101 smith", "-updated_at")
    assert parse_filter("", f) == QueueFilter(None, None, "-updated_at")
    assert parse_filter("state:in-flight", f).state is State.IN_FLIGHT


def test_filter_names_the_unknown_state() -> None:
    with pytest.raises(ValueError, match="unknown state 'broken'"):
        parse_filter("state:broken", QueueFilter())


def test_course_ref_digits_are_canvas_ids() -> None:
    assert course_ref("42") == "42"
    assert course_ref("BIO-101") == "sis_course_id:BIO-101"
    assert course_ref(" sis_course_id:X ") == "sis_course_id:X"


def test_role_words_map_to_canvas_types() -> None:
    assert role_key("student") == "StudentEnrollment"
    assert role_key("Teacher") == "TeacherEnrollment"
    assert role_key("Grader") == "Grader"


def _row(
    record_id: int,
    user: str,
    role: str = "student",
    status: str = "active",
    section: str | None = None,
) -> RecordRow:
    return RecordRow(
        record_id=record_id,
        source="e.csv",
        line=record_id + 1,
        key="",
        user=f"sis_user_id:{user}",
        course="sis_course_id:C1",
        section=None if section is None else f"sis_section_id:{section}",
        role=role,
        status=status,
        state=State.DONE,
        action="create",
        attempts=1,
        category=None,
        message=None,
        error_report_id=None,
        canvas_enrollment_id=None,
    )


def _enrollment(
    user: str, role: str = "StudentEnrollment", state: str = "active", section: str = "C1-01"
) -> dict[str, object]:
    return {
        "sis_user_id": user,
        "role": role,
        "type": role,
        "enrollment_state": state,
        "sis_section_id": section,
        "user": {"name": user.lower()},
    }


def test_roster_comparison_finds_missing_extra_and_differing() -> None:
    records = [
        _row(1, "S1"),  # in sync
        _row(2, "S2"),  # missing in Canvas
        _row(3, "S3", status="inactive"),  # Canvas still active: differs
        _row(4, "S4", status="deleted"),  # gone from Canvas as asked: in sync
        _row(5, "S5", section="C1-02"),  # Canvas has S5 in another section: missing + extra
        _row(6, "T1", role="teacher"),
    ]
    enrollments = [
        _enrollment("S1"),
        _enrollment("S3"),
        _enrollment("S5"),
        _enrollment("T1", role="TeacherEnrollment", state="invited"),
        _enrollment("X9"),
    ]
    diff = compare(enrollments, records)
    verdicts = {(line.user, line.verdict) for line in diff.lines}
    assert verdicts == {
        ("S1", Verdict.OK),
        ("S2", Verdict.MISSING),
        ("S3", Verdict.DIFFERS),
        ("S4", Verdict.OK),
        ("S5", Verdict.MISSING),
        ("S5", Verdict.EXTRA),
        ("T1", Verdict.OK),
        ("X9", Verdict.EXTRA),
    }
    assert [line.record_id for line in diff.missing] == [2, 5]
    assert (diff.canvas_count, diff.sis_count) == (5, 6)


def test_roster_read_in_every_state_matches_completed_and_ignores_deleted_history() -> None:
    records = [
        _row(1, "S1", status="completed"),  # Canvas row is completed: in sync, not missing
        _row(2, "S2"),  # an old deleted row and a live one: the live one matches
    ]
    enrollments = [
        _enrollment("S1", state="completed"),
        _enrollment("S2", state="deleted"),
        _enrollment("S2"),
        _enrollment("X9", state="deleted"),  # history of someone the SIS does not name
    ]
    diff = compare(enrollments, records)
    assert {(line.user, line.verdict) for line in diff.lines} == {
        ("S1", Verdict.OK),
        ("S2", Verdict.OK),
    }
    assert diff.missing == [] and diff.canvas_count == 2


def _canvas(user_id: int, section_id: int, **fields: object) -> dict[str, object]:
    """A roster row as Canvas returns it, with the ids the SIS can name it by."""
    return {
        "id": 900 + user_id,
        "user_id": user_id,
        "course_section_id": section_id,
        "sis_section_id": "C1-01",
        "role": "StudentEnrollment",
        "type": "StudentEnrollment",
        "enrollment_state": "active",
        **fields,
    }


def test_roster_matches_a_section_named_by_its_canvas_id() -> None:
    # (E) the SIS names the section by its Canvas id: in place, as the plan sees it
    records = [
        replace(_row(1, "S1"), section="55"),
        replace(_row(2, "S2"), section="56"),  # another section: missing, and S2's row is extra
    ]
    enrollments = [
        _canvas(1, 55, sis_user_id="S1", user={"name": "one"}),
        _canvas(2, 55, sis_user_id="S2", user={"name": "two"}),
    ]
    diff = compare(enrollments, records)
    assert {(line.user, line.verdict) for line in diff.lines} == {
        ("S1", Verdict.OK),
        ("S2", Verdict.MISSING),
        ("S2", Verdict.EXTRA),
    }
    (ok,) = [line for line in diff.lines if line.verdict is Verdict.OK]
    assert (ok.record_id, ok.name, ok.section) == (1, "one", "C1-01")


def test_roster_matches_a_user_named_by_any_api_id() -> None:
    # (F) Canvas id, login id (case-insensitive) and integration id all name the same user
    user = {"name": "ann", "sis_user_id": "S1", "login_id": "Ann@X.edu", "integration_id": "I-1"}
    records = [
        replace(_row(1, "S1"), user="7", section="sis_section_id:C1-01"),
        replace(_row(2, "S1"), user="sis_login_id:ann@x.edu", role="teacher"),
        replace(_row(3, "S1"), user="sis_integration_id:I-1", role="ta", status="inactive"),
        replace(_row(4, "S1"), user="sis_integration_id:I-2"),  # nobody in Canvas
    ]
    enrollments = [
        _canvas(7, 55, user=user),
        _canvas(7, 55, user=user, role="TeacherEnrollment", type="TeacherEnrollment"),
        _canvas(7, 55, user=user, role="TaEnrollment", type="TaEnrollment"),
    ]
    diff = compare(enrollments, records)
    by_record = {line.record_id: line.verdict for line in diff.lines}
    assert by_record == {
        1: Verdict.OK,
        2: Verdict.OK,
        3: Verdict.DIFFERS,  # the TA row is active, the SIS says inactive
        4: Verdict.MISSING,
    }
    assert [line.record_id for line in diff.missing] == [4]
    assert (diff.canvas_count, diff.sis_count) == (3, 4)


def test_keymap_check_names_unknown_actions() -> None:
    assert check_keymap({"pause": "space"}) == []
    (problem,) = check_keymap({"pasue": "space"})
    assert "pasue" in problem and "pause" in problem


def test_help_shows_remapped_keys() -> None:
    pause = next(a for a in ACTIONS if a.id == "pause")
    assert effective_key(pause, {}) == "p"
    assert effective_key(pause, {"pause": "space"}) == "space"
    help_ = next(a for a in ACTIONS if a.id == "help")
    assert effective_key(help_, {}) == "?"


def test_text_helpers() -> None:
    assert fmt.duration(75) == "1m15s"
    assert fmt.duration(3725) == "1h02m"
    assert fmt.duration(None) == "--"
    assert fmt.bar(0.5, 4) == "██  "
    assert fmt.category_title("user_not_found") == "User not found"
    assert (
        redact("https://x/api?access_token=abc&a=1") == "https://x/api?access_token=[redacted]&a=1"
    )


def test_config_keys_table_reaches_the_console(tmp_path: Path) -> None:
    from canvas_tui.config import load_config

    path = tmp_path / "canvas-tui.toml"
    path.write_text('[keys]\npause = "space"\nretry_all = "ctrl+r"\n', encoding="utf-8")
    config = load_config(path, env={})
    assert dict(config.keys) == {"pause": "space", "retry_all": "ctrl+r"}
    assert check_keymap(config.keys) == []


def _default_section_enrollment(user_id: int, user: str, section_id: int) -> dict[str, object]:
    return {
        "id": 900 + user_id,
        "user_id": user_id,
        "sis_user_id": user,
        "course_section_id": section_id,
        "type": "StudentEnrollment",
        "role": "StudentEnrollment",
        "enrollment_state": "active",
        "user": {"name": user.lower()},
    }


def test_a_course_only_row_is_missing_when_the_user_is_only_in_another_section() -> None:
    records = [_row(1, "S1"), _row(2, "S2")]
    enrollments = [
        _default_section_enrollment(1, "S1", 10),
        _default_section_enrollment(2, "S2", 11),
    ]  # 10 is the default
    diff = compare(enrollments, records, DefaultSection(10))
    assert {(line.user, line.verdict) for line in diff.lines} == {
        ("S1", Verdict.OK),
        ("S2", Verdict.MISSING),  # Canvas creates it in the default section, as the plan says
        ("S2", Verdict.EXTRA),  # its enrollment in section 11 is not the row's
    }
