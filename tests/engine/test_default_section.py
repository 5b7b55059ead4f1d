"""Which section a course-only row acts on (issue 10 rule 5): Canvas's default section, inferred
from the course's sections because no API answer flags it (roster_match.DefaultSection)."""

from __future__ import annotations

from canvas_tui.engine.roster_match import DefaultSection, default_section_from, names_enrollment


def _section(section_id: int, sis: str | None) -> dict[str, object]:
    return {"id": section_id, "name": f"s{section_id}", "sis_section_id": sis}


def test_the_one_section_without_an_sis_id_is_the_default() -> None:
    found = default_section_from([_section(1, "BIO-01"), _section(2, None), _section(3, "BIO-02")])
    assert found == DefaultSection(2) and found.known
    assert found.holds({"course_section_id": 2}) and not found.holds({"course_section_id": 1})


def test_only_sis_sections_mean_canvas_has_no_default_section_yet() -> None:
    found = default_section_from([_section(1, "BIO-01")])
    assert found == DefaultSection(None) and found.known
    assert not found.holds({"course_section_id": 1})  # Canvas would make a new one


def test_two_sections_without_an_sis_id_cannot_be_told_apart() -> None:
    found = default_section_from([_section(1, None), _section(2, None), _section(3, "X")])
    assert not found.known and found.candidates == (1, 2)
    assert found.holds({"course_section_id": 2}) and not found.holds({"course_section_id": 3})
    assert "2 sections without an SIS id" in found.describe("BIO")


def test_a_course_only_row_names_only_its_default_sections_enrollment() -> None:
    enrollment = {
        "user_id": 7,
        "sis_user_id": "S1",
        "type": "StudentEnrollment",
        "role": "StudentEnrollment",
        "course_section_id": 1,
    }

    def names(default: DefaultSection | None) -> bool:
        return names_enrollment(
            enrollment,
            user="sis_user_id:S1",
            role="student",
            enrollment_type="StudentEnrollment",
            section=None,
            default=default,
        )

    assert names(None)  # no default given: any section
    assert not names(DefaultSection(2))
    assert names(DefaultSection(1))


def test_the_plan_matches_course_only_rows_in_the_default_section_and_never_guesses() -> None:
    from canvas_tui.config import PlanConfig
    from canvas_tui.engine.plan.diff import build_plan
    from canvas_tui.engine.plan.rosters import Roster
    from canvas_tui.records import EnrollmentRecord, Provenance, SisStatus

    def record(user: str, line: int) -> EnrollmentRecord:
        return EnrollmentRecord(
            f"sis_user_id:{user}",
            "sis_course_id:C1",
            None,
            "student",
            "StudentEnrollment",
            SisStatus.ACTIVE,
            Provenance("in.csv", line),
        )

    def enrollment(user_id: int, user: str, section: int) -> dict[str, object]:
        return {
            "id": 100 + user_id,
            "user_id": user_id,
            "course_id": 1,
            "sis_user_id": user,
            "type": "StudentEnrollment",
            "role": "StudentEnrollment",
            "course_section_id": section,
            "enrollment_state": "active",
        }

    items = [record("S1", 2), record("S2", 3)]
    roster = [enrollment(1, "S1", 10), enrollment(2, "S2", 11)]
    known = Roster("course/sis_course_id:C1", roster, 1, default=DefaultSection(10))
    plan = build_plan(items, {known.scope: known}, PlanConfig())
    assert [(s.user, s.action) for s in plan.steps if s.kind == "record"] == [
        ("S1", "none"),
        ("S2", "create"),  # active in section 11 only: Canvas creates it in the default one
    ]
    unsure = Roster(known.scope, roster, 1, default=DefaultSection(None, (10, 11)))
    plan = build_plan(items, {unsure.scope: unsure}, PlanConfig())
    steps = [s for s in plan.steps if s.kind == "record"]
    assert {s.via for s in steps} == {"lookup"}  # decided (and refused) when sent, not guessed
    assert "Canvas does not say which is its default section" in steps[0].reason
