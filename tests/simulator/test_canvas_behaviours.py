"""Canvas behaviours behind issue 10's rules, pinned in the simulator (docs/canvas-semantics.md).

Each test names the instructure/canvas-lms file that shows the behaviour.
"""

from __future__ import annotations

import httpx

from canvas_tui.simulator import NO_PERMISSION_TOKEN, NO_SIS_TOKEN, Simulator
from canvas_tui.simulator.world import ADMIN_USER_ID, GRADER_ROLE_ID, World
from tests.simulator.conftest import DOC_COURSE_PATH, client_for, form

# ---- rule 2: associated_user_id is an integer column ------------------------------------------


async def test_associated_user_id_is_cast_like_rails_never_resolved(
    client: httpx.AsyncClient, world: World
) -> None:
    """app/controllers/enrollments_api_controller.rb (create) passes associated_user_id to
    Course#enroll_user unresolved; the integer column casts `sis_user_id:S9` to 0, no validation
    in app/models/enrollment.rb refuses 0 for an observer, and the foreign key to users does:
    an unhandled error, 500."""
    student = world.find_user("sis_user_id:13834")
    assert student is not None
    observer = form(user_id="sis_user_id:01103", type="ObserverEnrollment")
    by_sis = await client.post(DOC_COURSE_PATH, data={**observer, **form(
        associated_user_id="sis_user_id:13834")})  # fmt: skip
    assert by_sis.status_code == 500
    assert by_sis.json()["errors"][0]["error_code"] == "internal_server_error"

    # Ruby's String#to_i reads leading digits: "<id>abc" is that id.
    by_id = await client.post(DOC_COURSE_PATH, data={**observer, **form(
        associated_user_id=f"{student.id}abc")})  # fmt: skip
    assert by_id.status_code == 200
    assert by_id.json()["associated_user_id"] == student.id

    not_observer = await client.post(DOC_COURSE_PATH, data=form(
        user_id="sis_user_id:13aa3", associated_user_id=str(student.id)))  # fmt: skip
    assert not_observer.status_code == 400
    message = "only ObserverEnrollments may have an associated_user_id"
    assert not_observer.json() == {"errors": {"associated_user_id": [
        {"attribute": "associated_user_id", "type": "inclusion", "message": message}]}}  # fmt: skip


# ---- rule 6: type and role_id ----------------------------------------------------------------


async def test_type_must_match_the_base_type_of_role_id(client: httpx.AsyncClient) -> None:
    """enrollments_api_controller.rb create: a live course role and a type that is not its base
    type -> 400 "The specified type must match the base type for the role"; role_id alone
    takes the role's base type."""
    mismatch = await client.post(DOC_COURSE_PATH, data=form(
        user_id="10", role_id=str(GRADER_ROLE_ID), type="StudentEnrollment"))  # fmt: skip
    assert mismatch.status_code == 400
    assert mismatch.json() == {
        "message": "The specified type must match the base type for the role"
    }
    alone = await client.post(DOC_COURSE_PATH, data=form(user_id="10", role_id=str(GRADER_ROLE_ID)))
    assert alone.status_code == 200
    assert (alone.json()["type"], alone.json()["role_id"]) == ("TaEnrollment", GRADER_ROLE_ID)


# ---- rule 7: SIS fields need read_sis / manage_sis --------------------------------------------

SIS_KEYS = {"sis_user_id", "sis_section_id", "sis_course_id", "sis_account_id", "sis_import_id"}


async def test_a_token_without_sis_rights_sees_no_sis_fields(app: Simulator) -> None:
    """lib/api/v1/enrollment.rb: sis_* and *_integration_id need read_sis (user_can_read_sis_data?),
    sis_import_id needs manage_sis; lib/api/v1/user.rb likewise for the nested user. The keys are
    absent, not null. Users are still found by SIS id (api_find), and SIS filters need the right
    (enrollments_api_controller.rb check_sis_permissions)."""
    async with client_for(app) as admin, client_for(app, NO_SIS_TOKEN) as plain:
        full = (await admin.get(DOC_COURSE_PATH, params={"per_page": "5"})).json()
        hidden = (await plain.get(DOC_COURSE_PATH, params={"per_page": "5"})).json()
        assert full and len(full) == len(hidden)
        assert set(full[0]) >= SIS_KEYS and "sis_user_id" in full[0]["user"]
        for enrollment in hidden:
            assert not SIS_KEYS & set(enrollment)
            assert "sis_user_id" not in enrollment["user"]
            assert "integration_id" not in enrollment["user"]
        assert [e["id"] for e in hidden] == [e["id"] for e in full]

        user = await plain.get("/api/v1/users/sis_user_id:13834")
        assert user.status_code == 200
        assert isinstance(user.json()["id"], int) and "sis_user_id" not in user.json()
        section = await plain.get("/api/v1/sections/sis_section_id:1B")
        assert section.status_code == 200 and "sis_section_id" not in section.json()

        filtered = await plain.get(DOC_COURSE_PATH, params={"sis_user_id[]": "13834"})
        assert filtered.status_code == 400
        assert filtered.json() == {"message": "Insufficient permissions to filter by SIS fields"}


# ---- rule 8: the token's own enrollments -------------------------------------------------------


async def test_listing_your_own_enrollments_refuses_state_deleted(
    app: Simulator, world: World
) -> None:
    """enrollments_api_controller.rb user_index_enrollments: for the caller's own user only
    active, inactive, rejected, invited, creation_pending, pending_*, completed and the
    current_* words are valid; `deleted` -> 400 {"error": "Invalid state deleted"}. A course
    listing given `user_id` goes through the same method."""
    section = world.find_section("sis_section_id:1B")
    teacher = world.built_in_role("TeacherEnrollment")
    assert section is not None and teacher is not None
    world.add_enrollment(world.users[ADMIN_USER_ID], section, teacher)
    states = {"state[]": ["active", "deleted"]}
    async with client_for(app) as client:
        own = await client.get("/api/v1/users/self/enrollments", params=states)
        in_course = await client.get(
            DOC_COURSE_PATH, params={**states, "user_id": str(ADMIN_USER_ID)}
        )
        other = await client.get(DOC_COURSE_PATH, params={**states, "user_id": "sis_user_id:13834"})
        without_deleted = await client.get(
            DOC_COURSE_PATH, params={"state[]": ["active"], "user_id": str(ADMIN_USER_ID)}
        )
    for response in (own, in_course):
        assert response.status_code == 400
        assert response.json() == {"error": "Invalid state deleted"}
    assert other.status_code == 200
    assert [e["user_id"] for e in without_deleted.json()] == [ADMIN_USER_ID]


# ---- GET /api/v1/accounts/:account_id/enrollments/:id ------------------------------------------


async def test_account_enrollment_show_finds_deleted_rows(app: Simulator, world: World) -> None:
    """enrollments_api_controller.rb show: `@context.all_enrollments.find(id)` (deleted rows
    included; a sub-account holds none), own enrollment or read_roster."""
    section = world.find_section("sis_section_id:1B")
    student = world.built_in_role("StudentEnrollment")
    user = world.find_user("sis_user_id:13834")
    assert section is not None and student is not None and user is not None
    gone = world.add_enrollment(user, section, student, state="deleted")
    async with client_for(app) as admin, client_for(app, NO_PERMISSION_TOKEN) as stranger:
        found = await admin.get(f"/api/v1/accounts/self/enrollments/{gone.id}")
        sub_account = await admin.get(f"/api/v1/accounts/2/enrollments/{gone.id}")
        unknown = await admin.get("/api/v1/accounts/self/enrollments/999999999")
        refused = await stranger.get(f"/api/v1/accounts/self/enrollments/{gone.id}")
    assert found.status_code == 200
    assert (found.json()["id"], found.json()["enrollment_state"]) == (gone.id, "deleted")
    assert sub_account.status_code == unknown.status_code == 404
    assert refused.status_code == 401


# ---- rules 3 and 4: what a create + DELETE leaves ---------------------------------------------


async def test_create_inactive_then_conclude_leaves_a_concluded_enrollment(
    client: httpx.AsyncClient,
) -> None:
    """The REST form of the SIS importer's "completed row with no enrollment" (lib/sis/
    enrollment_importer.rb creates it completed): create inactive, then DELETE task=conclude.
    A re-POST revives a deleted row (app/models/course.rb enroll_user searches all_enrollments)."""
    created = await client.post(DOC_COURSE_PATH, data=form(
        user_id="sis_user_id:13aa3", enrollment_state="inactive"))  # fmt: skip
    assert created.json()["enrollment_state"] == "inactive"
    enrollment_id = created.json()["id"]
    concluded = await client.delete(
        f"{DOC_COURSE_PATH}/{enrollment_id}", params={"task": "conclude"}
    )
    assert concluded.json()["enrollment_state"] == "completed"
    await client.delete(f"{DOC_COURSE_PATH}/{enrollment_id}", params={"task": "delete"})
    again = await client.post(DOC_COURSE_PATH, data=form(
        user_id="sis_user_id:13aa3", enrollment_state="inactive"))  # fmt: skip
    assert (again.json()["id"], again.json()["enrollment_state"]) == (enrollment_id, "inactive")
