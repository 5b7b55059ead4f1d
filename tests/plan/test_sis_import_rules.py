"""Issue 10: each row ends as a real SIS Import would leave it, in full mode and in plan mode.

One test per rule (docs/canvas-semantics.md), the engine against the in-process simulator, which
behaves as the Canvas source cited there.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from canvas_tui.config import Secret
from canvas_tui.engine.plan.executor import SyncDecision, prepare_sync
from canvas_tui.engine.state import Phase, RunState
from canvas_tui.records import State
from canvas_tui.simulator import NO_SIS_TOKEN
from canvas_tui.simulator.world import (
    BUILT_IN_ROLE_IDS,
    GRADER_ROLE_ID,
    ROOT_ACCOUNT_ID,
    Enrollment,
    Role,
    Token,
    User,
)
from tests.helpers import write_rows
from tests.plan.conftest import HEADER, Arena

MODES = pytest.mark.parametrize("plan", [False, True], ids=["full", "plan"])


async def _sync(
    arena: Arena,
    rows: list[list[str]],
    journal: str,
    *,
    plan: bool,
    header: list[str] = HEADER,
    token: str | None = None,
    **policy: object,
) -> tuple[SyncDecision, RunState, list[Any]]:
    """`canvas-tui sync` in full (`plan=False`) or plan mode; the decision, the final state
    and the journal's rows."""
    config = arena.config(**policy)
    if token is not None:
        config = replace(config, canvas=replace(config.canvas, token=Secret(token)))
    path = write_rows(arena.tmp / f"{journal}.csv", rows, header)
    session = arena.session(path, config, journal)
    try:
        decision = await prepare_sync(session, requested=plan, allow_drops=None)
        assert decision.refused is None, decision.refused
        state = await session.run()
        return decision, state, list(session.store.iter_rows())
    finally:
        await session.close()


def _role(arena: Arena, base_type: str) -> Role:
    return arena.world.roles[BUILT_IN_ROLE_IDS[base_type]]


def _enrollments_of(arena: Arena, user: User) -> list[Enrollment]:
    return [
        e
        for e in arena.world.enrollments.values()
        if e.user_id == user.id and e.course_id == arena.course.id
    ]


# ---- rule 2: an observer links to the student's Canvas id ---------------------------------------


@MODES
async def test_an_observer_row_links_to_the_students_canvas_id(arena: Arena, plan: bool) -> None:
    """The API casts an SIS id in associated_user_id to 0 (the simulator then fails as Canvas's
    foreign key does); the engine sends the Canvas id, looked up once per run."""
    kid, parent, other_parent = arena.users[:3]
    arena.enroll(kid)
    rows = [
        [*arena.row(parent, role="observer"), kid.sis_user_id or ""],
        [*arena.row(other_parent, role="observer"), kid.sis_user_id or ""],
    ]
    _, state, _ = await _sync(
        arena, rows, "observers", plan=plan, header=[*HEADER, "associated_user_id"]
    )
    assert state.counts[State.DONE] == 2, state.failures_by_category
    for who in (parent, other_parent):
        (link,) = _enrollments_of(arena, who)
        assert (link.type, link.associated_user_id) == ("ObserverEnrollment", kid.id)
    # the student looked up once for both rows (a full run also GETs users/self first)
    token_check = 0 if plan else 1
    assert arena.app.stats()["requests_by_endpoint"]["get_user"] == 1 + token_check


# ---- rule 3: deleted_last_completed counts every sibling that is not deleted ---------------------


@MODES
@pytest.mark.parametrize("sibling", ["invited", "inactive", "completed", "deleted"])
async def test_deleted_last_completed_deletes_while_a_sibling_is_not_deleted(
    arena: Arena, plan: bool, sibling: str
) -> None:
    """Canvas deletes when `@course.enrollments.active.where(user:, associated_user_id:, role:)`
    has another row, and Enrollment.active means "not deleted"; otherwise it concludes."""
    user = arena.users[0]
    other = arena.world.add_section(arena.course, "Plan Lab 02", "PLAN101-F26-02")
    mine = arena.enroll(user)
    arena.world.add_enrollment(user, other, _role(arena, "StudentEnrollment"), state=sibling)
    _, state, _ = await _sync(
        arena, [arena.row(user, "deleted_last_completed")], f"dlc-{sibling}", plan=plan
    )
    assert state.counts[State.DONE] == 1
    assert arena.state_of(mine) == ("completed" if sibling == "deleted" else "deleted")


# ---- rule 4: completed / deleted with no enrollment create it in that state ----------------------


@MODES
async def test_completed_and_deleted_rows_create_the_enrollment_in_that_state(
    arena: Arena, plan: bool
) -> None:
    """lib/sis/enrollment_importer.rb creates a completed (or deleted) enrollment for such a row:
    a past term's history. Over REST: a create, then a conclude (or delete), one record each;
    sending the rows again changes nothing."""
    done, gone = arena.users[:2]
    rows = [arena.row(done, "completed"), arena.row(gone, "deleted")]
    _, state, journal = await _sync(arena, rows, "history", plan=plan)
    assert state.counts[State.DONE] == 2 and state.total == 2
    assert [e.workflow_state for e in _enrollments_of(arena, done)] == ["completed"]
    assert [e.workflow_state for e in _enrollments_of(arena, gone)] == ["deleted"]
    assert [r.action for r in journal] == ["create_completed", "create_deleted"]

    writes = arena.writes()
    _, state, journal = await _sync(arena, rows, "history-again", plan=plan)
    assert state.counts[State.DONE] == 2
    assert arena.writes() == writes


# ---- rule 6: role_id first, then custom role names, then role words -----------------------------


async def test_role_id_wins_and_a_custom_role_name_comes_before_the_role_words(
    arena: Arena,
) -> None:
    """A type that differs from role_id's base type is a 400 ("The specified type must match the
    base type for the role"); the importer takes the role_id's role. A custom role whose name the
    role words would also read ("Student Worker" starts with "student") is that custom role."""
    arena.world.roles[12] = Role(12, "Student Worker", "TaEnrollment", ROOT_ACCOUNT_ID, "active")
    by_id, by_name = arena.users[:2]
    rows = [
        [*arena.row(by_id, role="student"), str(GRADER_ROLE_ID)],
        [*arena.row(by_name, role="Student Worker"), ""],
    ]
    _, state, _ = await _sync(arena, rows, "roles", plan=False, header=[*HEADER, "role_id"])
    assert state.counts[State.DONE] == 2, state.failures_by_category
    (graded,) = _enrollments_of(arena, by_id)
    assert (graded.type, graded.role_id) == ("TaEnrollment", GRADER_ROLE_ID)
    (worker,) = _enrollments_of(arena, by_name)
    assert (worker.type, worker.role_id) == ("TaEnrollment", 12)


# ---- rule 7: a token without read_sis --------------------------------------------------------------


async def test_without_read_sis_rows_act_on_the_existing_enrollments(arena: Arena) -> None:
    """Enrollments carry no SIS ids to such a token (lib/api/v1/enrollment.rb): the engine
    matches sections by Canvas id instead, and never sees an enrollment as missing."""
    a, b = arena.users[:2]
    to_conclude, to_delete = arena.enroll(a), arena.enroll(b)
    rows = [arena.row(a, "completed"), arena.row(b, "deleted")]
    _, state, journal = await _sync(arena, rows, "no-sis-full", plan=False, token=NO_SIS_TOKEN)
    assert state.counts[State.DONE] == 2
    assert [r.action for r in journal] == ["conclude", "delete"]
    assert arena.state_of(to_conclude) == "completed"
    assert arena.state_of(to_delete) == "deleted"
    assert arena.app.stats()["enrollments_created"] == 0


async def test_without_read_sis_the_plan_matches_by_canvas_id(arena: Arena) -> None:
    """The same plan as with SIS rights: nothing created or dropped because a field is hidden.
    Without manage_sis an SIS-imported enrollment looks manual, and manual ones are kept."""
    kept, ended, new, unlisted = arena.users[:4]
    arena.enroll(kept)
    ending = arena.enroll(ended)
    unclaimed = arena.enroll(unlisted)  # SIS-imported, not in the source
    rows = [arena.row(kept), arena.row(ended, "completed"), arena.row(new)]
    decision, state, _ = await _sync(
        arena, rows, "no-sis-plan", plan=True, token=NO_SIS_TOKEN, drop_policy="conclude"
    )
    assert decision.plan is not None
    actions = {s.user: s.action for s in decision.plan.steps if s.kind == "record"}
    assert actions == {
        kept.sis_user_id: "none",
        ended.sis_user_id: "conclude",
        new.sis_user_id: "create",
    }
    assert not decision.plan.drops
    assert state.phase == Phase.FINISHED and state.counts[State.DONE] == 3
    assert arena.state_of(ending) == "completed"
    assert arena.state_of(unclaimed) == "active"
    assert arena.app.stats()["enrollments_created"] == 1
    assert arena.app.stats()["duplicates"] == 0


# ---- rule 8: the token's own user ---------------------------------------------------------------


async def test_a_row_naming_the_tokens_own_user(arena: Arena) -> None:
    """Listing your own enrollments with state[]=deleted is a 400 "Invalid state deleted"
    (enrollments_api_controller.rb user_index_enrollments); the engine asks again without it."""
    me = arena.world.add_user("Admin Who Teaches", "ADMIN-TEACHES")
    arena.world.tokens["admin-who-teaches"] = Token(me.id, admin=True)
    teaching = arena.world.add_enrollment(me, arena.section, _role(arena, "TeacherEnrollment"))
    rows = [arena.row(me, "inactive", role="teacher")]
    _, state, journal = await _sync(arena, rows, "self", plan=False, token="admin-who-teaches")
    assert state.counts[State.DONE] == 1, [r.message for r in journal]
    assert arena.state_of(teaching) == "inactive"
    assert arena.app.stats()["requests_by_status"].get("400") == 1


@MODES
@pytest.mark.parametrize("status", ["active", "inactive"])
async def test_an_observer_row_for_a_student_new_to_the_course_leaves_the_other_link(
    arena: Arena, plan: bool, status: str
) -> None:
    """A parent already observes one child in the course; the source enrolls a second child,
    new to the course, and links the parent to it. The new child is in no roster, so the plan
    cannot know its Canvas id: it must not take the first child's link for the row's (and call
    it in place, or inactivate it). Canvas matches the link on associated_user_id
    (`Course#enroll_user`, app/models/course.rb)."""
    first, second, parent = arena.users[:3]
    arena.enroll(first)
    link = arena.world.add_enrollment(
        parent,
        arena.section,
        _role(arena, "ObserverEnrollment"),
        state="active",
        associated_user_id=first.id,
    )
    rows = [
        [*arena.row(second), ""],
        [*arena.row(parent, status, role="observer"), second.sis_user_id or ""],
    ]
    _, state, _ = await _sync(
        arena, rows, f"sibling-{status}", plan=plan, header=[*HEADER, "associated_user_id"]
    )
    assert state.counts[State.DONE] == 2, state.failures_by_category
    assert arena.state_of(link) == "active"  # the first child's link is not the row's
    links = {e.associated_user_id: e.workflow_state for e in _enrollments_of(arena, parent)}
    assert links == {first.id: "active", second.id: status}


@MODES
@pytest.mark.parametrize("state_before", ["active", "inactive"])
async def test_an_inactive_row_applies_the_dates_and_flag_it_gives(
    arena: Arena, plan: bool, state_before: str
) -> None:
    """lib/sis/enrollment_importer.rb sets an explicit limit_section_privileges and the dates
    on the enrollment whatever the row's status; an inactive row is no exception. Over REST the
    values go in a POST (which never changes an active enrollment's state, app/models/course.rb
    `enroll_user`), then DELETE task=inactivate."""
    ta = arena.users[0]
    enrollment = arena.enroll(ta, state_before, role="TaEnrollment")
    start, end = "2026-09-01T12:00:00Z", "2026-12-20T12:00:00Z"
    rows = [[*arena.row(ta, "inactive", role="ta"), start, end, "true"]]
    header = [*HEADER, "start_date", "end_date", "limit_section_privileges"]
    _, state, _ = await _sync(arena, rows, f"inactive-{state_before}", plan=plan, header=header)
    assert state.counts[State.DONE] == 1, state.failures_by_category
    assert arena.state_of(enrollment) == "inactive"
    assert (
        enrollment.start_at,
        enrollment.end_at,
        enrollment.limit_privileges_to_course_section,
    ) == (start, end, True)


@MODES
async def test_a_completed_row_in_a_concluded_course_still_concludes(
    arena: Arena, plan: bool
) -> None:
    """Canvas takes no POST into a concluded course (enrollments_api_controller.rb `create`),
    so the dates a completed row gives cannot be set there; the conclusion still is."""
    student = arena.users[0]
    enrollment = arena.enroll(student)
    arena.course.workflow_state = "completed"
    rows = [[*arena.row(student, "completed"), "2026-01-10T12:00:00Z", "2026-05-10T12:00:00Z"]]
    header = [*HEADER, "start_date", "end_date"]
    _, state, journal = await _sync(arena, rows, "concluded", plan=plan, header=header)
    assert state.counts[State.DONE] == 1, state.failures_by_category
    assert arena.state_of(enrollment) == "completed"
    assert "not set: the course is concluded" in (journal[0].message or "")


@MODES
async def test_deleted_last_completed_without_course_id_sees_the_other_sections(
    arena: Arena, plan: bool
) -> None:
    """A section-only deleted_last_completed row for a user with no enrollment in that section
    but an active one in another section of the course: the importer looks course-wide
    (`@course.enrollments.active.where(...)`, lib/sis/enrollment_importer.rb) and so creates
    the enrollment deleted, not as a concluded one in the user's history."""
    user = arena.users[0]
    other = arena.world.add_section(arena.course, "Plan Lab 02", "PLAN101-F26-02")
    kept = arena.world.add_enrollment(user, other, _role(arena, "StudentEnrollment"))
    row = arena.row(user, "deleted_last_completed")
    row[0] = ""  # no course_id: the section names the course
    _, state, _ = await _sync(arena, [row], "dlc-section-only", plan=plan)
    assert state.counts[State.DONE] == 1, state.failures_by_category
    assert arena.state_of(kept) == "active"
    in_section = [
        e for e in _enrollments_of(arena, user) if e.course_section_id == arena.section.id
    ]
    assert [e.workflow_state for e in in_section] in ([], ["deleted"])
