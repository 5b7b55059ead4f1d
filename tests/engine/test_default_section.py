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
    common = {"user": "sis_user_id:S1", "role": "student", "enrollment_type": "StudentEnrollment"}
    assert names_enrollment(enrollment, section=None, **common)  # no default given: any section
    assert not names_enrollment(enrollment, section=None, default=DefaultSection(2), **common)
    assert names_enrollment(enrollment, section=None, default=DefaultSection(1), **common)
