"""Issue 10, rules 1 and 5, as the simulator must answer them: what a re-POST resets and where a
course-only create lands (Course#enroll_user and Course#default_section, app/models/course.rb)."""

from __future__ import annotations

import httpx

from canvas_tui.simulator import Simulator
from canvas_tui.simulator.world import BUILT_IN_ROLE_IDS

DOC_COURSE_PATH = "/api/v1/courses/sis_course_id:E411208/enrollments"


def form(**fields: str) -> dict[str, str]:
    return {f"enrollment[{k}]": v for k, v in fields.items()}


async def test_repost_without_the_fields_resets_section_limit_and_dates(
    client: httpx.AsyncClient, app: Simulator
) -> None:
    """`limit_privileges_to_course_section = opts[...] || false`, `e.start_at = start_at` and
    `e.end_at = end_at` run on a reused enrollment too: absent means false and nil."""
    base = {"user_id": "sis_user_id:01103", "type": "TaEnrollment", "enrollment_state": "active",
            "course_section_id": "sis_section_id:1B"}  # fmt: skip
    dated = {"start_at": "2026-09-01T08:00:00Z", "end_at": "2026-12-20T17:00:00Z"}
    limited = form(**base, **dated, limit_privileges_to_course_section="true")
    first = await client.post(DOC_COURSE_PATH, data=limited)
    body = first.json()
    assert body["limit_privileges_to_course_section"] is True
    assert (body["start_at"], body["end_at"]) == ("2026-09-01T08:00:00Z", "2026-12-20T17:00:00Z")

    again = (await client.post(DOC_COURSE_PATH, data=form(**base))).json()
    assert again["id"] == body["id"]  # the same row, reused...
    assert again["limit_privileges_to_course_section"] is False  # ...with its limit off
    assert again["start_at"] is None and again["end_at"] is None  # ...and its dates gone
    stored = app.world.enrollments[body["id"]]
    assert (
        stored.role_id == BUILT_IN_ROLE_IDS["TaEnrollment"]
        and not stored.limit_privileges_to_course_section
    )


async def test_repost_with_the_values_changes_nothing(
    client: httpx.AsyncClient, app: Simulator
) -> None:
    fields = form(user_id="sis_user_id:01103", type="TaEnrollment", enrollment_state="active",
                  course_section_id="sis_section_id:1B", limit_privileges_to_course_section="true",
                  start_at="2026-09-01T08:00:00Z", end_at="2026-12-20T17:00:00Z")  # fmt: skip
    first = (await client.post(DOC_COURSE_PATH, data=fields)).json()
    again = (await client.post(DOC_COURSE_PATH, data=fields)).json()
    assert again == first  # not even updated_at moves: nothing changed, nothing saved


async def test_course_only_create_lands_in_the_default_section_beside_another(
    client: httpx.AsyncClient, app: Simulator
) -> None:
    """`section ||= self.default_section`: an enrollment in another section is not reused (the
    section is part of the key), so the user ends up in both sections."""
    user = {"user_id": "sis_user_id:01103", "enrollment_state": "active"}
    in_1b = (
        await client.post(DOC_COURSE_PATH, data=form(**user, course_section_id="sis_section_id:1B"))
    ).json()
    course_only = (await client.post(DOC_COURSE_PATH, data=form(**user))).json()
    assert course_only["id"] != in_1b["id"]
    default = app.world.sections[course_only["course_section_id"]]
    assert default.default and default.sis_section_id is None
    assert default.course_id == in_1b["course_id"]
    again = (await client.post(DOC_COURSE_PATH, data=form(**user))).json()
    assert again["id"] == course_only["id"]  # re-found, within the default section


async def test_a_deleted_default_section_is_replaced(
    client: httpx.AsyncClient, app: Simulator
) -> None:
    """Course#default_section looks among *active* sections; with none flagged, it makes one."""
    course = app.world.find_course("sis_course_id:E411208")
    assert course is not None
    old = app.world.default_section(course)
    old.workflow_state = "deleted"
    created = (await client.post(DOC_COURSE_PATH, data=form(user_id="sis_user_id:01103"))).json()
    assert created["course_section_id"] != old.id
    assert app.world.sections[created["course_section_id"]].default
