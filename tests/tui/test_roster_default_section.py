"""The roster inspector agrees with the plan on course-only rows (issue 10 rule 5): they are in
sync only with an enrollment in the course's default section."""

from __future__ import annotations

from canvas_tui.engine.roster_match import DefaultSection
from canvas_tui.engine.state import RecordRow
from canvas_tui.records import State
from canvas_tui.tui.roster_model import Verdict, compare


def _row(record_id: int, user: str) -> RecordRow:
    return RecordRow(
        record_id=record_id,
        source="e.csv",
        line=record_id + 1,
        key="",
        user=f"sis_user_id:{user}",
        course="sis_course_id:C1",
        section=None,
        role="student",
        status="active",
        state=State.DONE,
        action="create",
        attempts=1,
        category=None,
        message=None,
        error_report_id=None,
        canvas_enrollment_id=None,
    )


def _enrollment(user_id: int, user: str, section_id: int) -> dict[str, object]:
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
    enrollments = [_enrollment(1, "S1", 10), _enrollment(2, "S2", 11)]  # 10 is the default
    diff = compare(enrollments, records, DefaultSection(10))
    assert {(line.user, line.verdict) for line in diff.lines} == {
        ("S1", Verdict.OK),
        ("S2", Verdict.MISSING),  # Canvas creates it in the default section, as the plan says
        ("S2", Verdict.EXTRA),  # its enrollment in section 11 is not the row's
    }
