"""Enrollment create, delete and reactivate semantics (CANVAS_API.md §2.3-§2.7)."""

from __future__ import annotations

import httpx

from canvas_tui.simulator import Simulator
from canvas_tui.simulator.world import (
    AUDITOR_ROLE_ID,
    GRADER_ROLE_ID,
    UNPUBLISHED_COURSE,
)
from tests.simulator.conftest import DOC_COURSE_PATH, form


async def test_create_returns_200_and_defaults_to_invited(client: httpx.AsyncClient) -> None:
    response = await client.post(DOC_COURSE_PATH, data=form(user_id="sis_user_id:01103"))
    assert response.status_code == 200
    body = response.json()
    assert body["enrollment_state"] == "invited"
    assert body["type"] == "StudentEnrollment" and body["role"] == "StudentEnrollment"
    assert body["sis_course_id"] == "E411208" and body["sis_user_id"] == "01103"
    assert "user" not in body  # create responses carry no nested user


async def test_json_body_is_accepted(client: httpx.AsyncClient, app: Simulator) -> None:
    payload = {
        "enrollment": {
            "user_id": "sis_user_id:13834",
            "type": "StudentEnrollment",
            "enrollment_state": "active",
            "course_section_id": "sis_section_id:2A",
        }
    }
    response = await client.post(DOC_COURSE_PATH, json=payload)
    assert response.status_code == 200
    body = response.json()
    assert body["enrollment_state"] == "active"
    assert body["sis_section_id"] == "2A"


async def test_same_user_type_role_section_is_idempotent(
    client: httpx.AsyncClient, app: Simulator
) -> None:
    fields = form(user_id="sis_user_id:01103", type="StudentEnrollment",
                  enrollment_state="active", course_section_id="sis_section_id:1B")  # fmt: skip
    first = await client.post(DOC_COURSE_PATH, data=fields)
    second = await client.post(DOC_COURSE_PATH, data=fields)
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    stats = app.stats()
    assert stats["enrollments_created"] == 1
    assert stats["reposts"] == 1
    assert stats["duplicates"] == 0


async def test_another_section_makes_a_second_enrollment(
    client: httpx.AsyncClient, app: Simulator
) -> None:
    base = {"user_id": "sis_user_id:01103", "enrollment_state": "active"}
    one = await client.post(
        DOC_COURSE_PATH, data=form(**base, course_section_id="sis_section_id:1B")
    )
    two = await client.post(
        DOC_COURSE_PATH, data=form(**base, course_section_id="sis_section_id:2A")
    )
    assert one.json()["id"] != two.json()["id"]
    assert app.stats()["duplicates"] == 1  # same user+course+role twice: what a sync must avoid


async def test_repost_active_reactivates_a_deleted_enrollment(client: httpx.AsyncClient) -> None:
    fields = form(user_id="sis_user_id:01103", enrollment_state="active")
    created = (await client.post(DOC_COURSE_PATH, data=fields)).json()
    deleted = await client.delete(f"/api/v1/courses/{created['course_id']}/enrollments/{created['id']}",
                                  params={"task": "delete"})  # fmt: skip
    assert deleted.status_code == 200 and deleted.json()["enrollment_state"] == "deleted"
    again = await client.delete(
        f"/api/v1/courses/{created['course_id']}/enrollments/{created['id']}"
    )
    assert again.status_code == 404  # deleted rows are invisible to DELETE
    back = (await client.post(DOC_COURSE_PATH, data=fields)).json()
    assert back["id"] == created["id"]
    assert back["enrollment_state"] == "active"


async def test_repost_never_deactivates(client: httpx.AsyncClient) -> None:
    created = (
        await client.post(DOC_COURSE_PATH, data=form(user_id="10", enrollment_state="active"))
    ).json()
    again = await client.post(DOC_COURSE_PATH, data=form(user_id="10", enrollment_state="inactive"))
    assert again.json()["id"] == created["id"]
    assert again.json()["enrollment_state"] == "active"


async def test_delete_tasks_and_reactivate(client: httpx.AsyncClient) -> None:
    created = (
        await client.post(DOC_COURSE_PATH, data=form(user_id="11", enrollment_state="active"))
    ).json()
    url = f"/api/v1/courses/sis_course_id:E411208/enrollments/{created['id']}"
    concluded = await client.delete(url)
    assert concluded.json()["enrollment_state"] == "completed"
    not_inactive = await client.put(f"{url}/reactivate")
    assert not_inactive.status_code == 400
    assert not_inactive.json() == {"error": "enrollment not inactive"}
    inactive = await client.delete(url, params={"task": "deactivate"})
    assert inactive.json()["enrollment_state"] == "inactive"
    active = await client.put(f"{url}/reactivate")
    assert active.status_code == 200 and active.json()["enrollment_state"] == "active"
    other_course = await client.delete(
        f"/api/v1/courses/sis_course_id:ART%2F210-F26/enrollments/{created['id']}"
    )
    assert other_course.status_code == 404


async def test_unpublished_course_states(client: httpx.AsyncClient) -> None:
    path = f"/api/v1/courses/sis_course_id:{UNPUBLISHED_COURSE}/enrollments"
    student = await client.post(path, data=form(user_id="10"))
    teacher = await client.post(path, data=form(user_id="11", type="TeacherEnrollment"))
    invited = await client.post(path, data=form(user_id="12", enrollment_state="invited"))
    observer = await client.post(path, data=form(user_id="13", type="ObserverEnrollment"))
    assert student.json()["enrollment_state"] == "creation_pending"
    assert teacher.json()["enrollment_state"] == "invited"
    assert invited.json()["enrollment_state"] == "creation_pending"
    assert observer.json()["enrollment_state"] == "active"


async def test_custom_role_by_id_and_by_name(client: httpx.AsyncClient) -> None:
    by_id = await client.post(DOC_COURSE_PATH, data=form(user_id="10", role_id=str(GRADER_ROLE_ID)))
    by_name = await client.post(DOC_COURSE_PATH, data=form(user_id="11", role="Grader"))
    for response in (by_id, by_name):
        assert response.status_code == 200
        assert response.json()["type"] == "TaEnrollment"
        assert response.json()["role"] == "Grader"
        assert response.json()["role_id"] == GRADER_ROLE_ID
    mismatch = await client.post(
        DOC_COURSE_PATH, data=form(user_id="12", role="Grader", type="StudentEnrollment")
    )
    assert mismatch.json() == {
        "message": "The specified type must match the base type for the role"
    }
    inactive = await client.post(
        DOC_COURSE_PATH, data=form(user_id="12", role_id=str(AUDITOR_ROLE_ID))
    )
    assert inactive.json() == {
        "message": "Cannot create an enrollment with this role because it is inactive."
    }
    unknown = await client.post(DOC_COURSE_PATH, data=form(user_id="12", role="Wizard"))
    assert unknown.json() == {"message": "Invalid role"}


async def test_section_route_wins_over_course_section_id(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/sections/sis_section_id:2A/enrollments",
        data=form(user_id="sis_user_id:13aa3", type="TeacherEnrollment",
                  course_section_id="sis_section_id:1B"),
    )  # fmt: skip
    assert response.status_code == 200
    assert response.json()["sis_section_id"] == "2A"
    assert response.json()["type"] == "TeacherEnrollment"


async def test_list_filters(client: httpx.AsyncClient) -> None:
    await client.post(
        DOC_COURSE_PATH, data=form(user_id="sis_user_id:01103", enrollment_state="active")
    )
    await client.post(DOC_COURSE_PATH, data=form(user_id="sis_user_id:13aa3", type="TeacherEnrollment",
                                                 enrollment_state="active"))  # fmt: skip
    await client.post(DOC_COURSE_PATH, data=form(user_id="sis_user_id:13834", role="Grader"))
    by_sis = await client.get(DOC_COURSE_PATH, params={"sis_user_id[]": ["01103", "nope"]})
    assert [e["user"]["sis_user_id"] for e in by_sis.json()] == ["01103"]
    by_user = await client.get(DOC_COURSE_PATH, params={"user_id": "sis_user_id:13aa3"})
    assert [e["type"] for e in by_user.json()] == ["TeacherEnrollment"]
    by_role = await client.get(DOC_COURSE_PATH, params={"role[]": "Grader", "per_page": 100})
    assert [e["role"] for e in by_role.json()] == ["Grader"]
    by_type = await client.get(DOC_COURSE_PATH, params={"type[]": "TaEnrollment", "per_page": 100})
    assert [e["role"] for e in by_type.json()] == ["Grader"]  # custom roles match their base type
    invited = await client.get(DOC_COURSE_PATH, params={"state[]": "invited", "per_page": 100})
    assert {e["enrollment_state"] for e in invited.json()} == {"invited"}
    bad_role = await client.get(DOC_COURSE_PATH, params={"role[]": "Wizard"})
    assert bad_role.status_code == 400
    section = await client.get(
        "/api/v1/sections/sis_section_id:1B/enrollments", params={"per_page": 100}
    )
    assert {e["sis_section_id"] for e in section.json()} <= {"1B"}
    mine = await client.get("/api/v1/users/sis_user_id:01103/enrollments")
    assert [e["sis_course_id"] for e in mine.json()] == ["E411208"]


async def test_show_endpoints(client: httpx.AsyncClient) -> None:
    course = await client.get("/api/v1/courses/sis_course_id:E411208")
    assert course.json()["workflow_state"] == "available"
    sections = await client.get("/api/v1/courses/sis_course_id:E411208/sections")
    assert {s["sis_section_id"] for s in sections.json()} >= {"1B", "2A"}
    section = await client.get("/api/v1/sections/sis_section_id:1B")
    assert section.json()["sis_course_id"] == "E411208"
    nested = await client.get("/api/v1/courses/sis_course_id:E411208/sections/sis_section_id:2A")
    assert nested.json()["name"] == "Section 2A"
    me = await client.get("/api/v1/users/self")
    assert me.json()["id"] == 1
    roles = await client.get("/api/v1/accounts/self/roles", params={"per_page": 100})
    labels = {r["label"]: r["base_role_type"] for r in roles.json()}
    assert labels["Grader"] == "TaEnrollment"
    assert "Auditor" not in labels  # inactive roles only with state[]=inactive
    account = await client.get("/api/v1/accounts/sis_account_id:SCI")
    assert account.json()["name"] == "Sciences"
    dot_json = await client.get("/api/v1/courses/sis_course_id:E411208.json")
    assert dot_json.json()["id"] == course.json()["id"]
