"""roster_match: the one rule for "this record names this enrollment" (plan, actions, inspector)."""

from __future__ import annotations

from canvas_tui.engine.roster_match import base_type, names_enrollment

ENROLLMENT = {
    "user_id": 7,
    "sis_user_id": "S1",
    "user": {"login_id": "Ann@X.edu", "integration_id": "I-1"},
    "course_section_id": 55,
    "sis_section_id": "C1-01",
    "role": "Grader",
    "role_id": 19,
    "type": "TaEnrollment",
}


def _names(
    user: str, role: str = "Grader", section: str | None = None, role_id: str | None = None
) -> bool:
    return names_enrollment(
        ENROLLMENT,
        user=user,
        role=role,
        section=section,
        enrollment_type=base_type(role),
        role_id=role_id,
    )


def test_any_user_id_form_names_the_user() -> None:
    for user in ("7", "sis_user_id:S1", "sis_login_id:ann@x.EDU", "sis_integration_id:I-1"):
        assert _names(user), user
    for user in ("8", "sis_user_id:s1", "sis_integration_id:i-1", "sis_login_id:bob@x.edu"):
        assert not _names(user), user


def test_section_by_canvas_or_sis_id_and_role_by_name_or_id() -> None:
    assert _names("7", section="55") and _names("7", section="sis_section_id:C1-01")
    assert not _names("7", section="56") and not _names("7", section="sis_section_id:C1-02")
    assert not _names("7", role="ta")  # a custom role on a TA base is not the built-in TA role
    assert _names("7", role="whatever", role_id="19") and not _names("7", role_id="20")
