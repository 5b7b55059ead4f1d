"""What a plan reads before it sends: the section list only where a course-only row could match
(auto mode's estimate of those reads: test_plan_units)."""

from __future__ import annotations

from canvas_tui.engine.plan.executor import compute_plan, read_items
from canvas_tui.engine.plan.rosters import needs_default
from canvas_tui.sources import CsvSource
from tests.plan.conftest import Arena


def _course_only(arena: Arena, *indexes: int) -> list[list[str]]:
    assert arena.course.sis_course_id
    return [
        [arena.course.sis_course_id, str(arena.users[i].sis_user_id), "student", "", "active"]
        for i in indexes
    ]


async def _plan_and_section_reads(arena: Arena, rows: list[list[str]]) -> tuple[str, int]:
    session = arena.session(arena.csv(rows), arena.config(), "preview")
    arena.app.reset_stats()
    try:
        assert session.client is not None
        items = read_items(CsvSource(arena.tmp / "in.csv"))
        plan = await compute_plan(session.client, items, session.config)
    finally:
        await session.close()
    reads = arena.app.stats()["requests_by_endpoint"].get("list_sections", 0)
    return plan.steps[0].action, reads


async def test_a_course_only_row_whose_user_is_not_in_the_roster_reads_no_sections(
    arena: Arena,
) -> None:
    action, reads = await _plan_and_section_reads(arena, _course_only(arena, 0, 1))
    assert action == "create"  # in no section of the course: a create whatever the default
    assert reads == 0


async def test_a_course_only_row_whose_user_is_in_the_roster_reads_the_sections(
    arena: Arena,
) -> None:
    arena.enroll(arena.users[0])  # in the SIS section, not the default one
    action, reads = await _plan_and_section_reads(arena, _course_only(arena, 0, 1))
    # the row names the default section's enrollment, which does not exist: not the 01 one
    assert action == "create"
    assert reads == 1


def test_needs_default_when_the_roster_cannot_show_the_user_is_absent() -> None:
    shown = [{"user_id": 5, "sis_user_id": "S5"}]
    assert not needs_default(shown, ["sis_user_id:S9", "9"])
    assert needs_default(shown, ["sis_user_id:S5"])
    assert needs_default(shown, ["5"])
    # a token without read_sis: the roster carries no sis_user_id, so S9 may be user 5
    assert needs_default([{"user_id": 5}], ["sis_user_id:S9"])
    # login and integration ids ride on the user object only when Canvas includes it
    assert needs_default(shown, ["sis_login_id:s9"])
    assert not needs_default([], ["sis_login_id:s9"])  # an empty roster holds nobody
