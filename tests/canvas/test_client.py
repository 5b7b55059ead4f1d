"""The client against the real simulator (in process): pagination, ids, errors, 404 attribution."""

from __future__ import annotations

import pytest

from canvas_tui.canvas.client import USER_AGENT, AttemptEvent, CanvasClient
from canvas_tui.canvas.errors import CanvasError, Category
from canvas_tui.simulator import ADMIN_TOKEN, NO_PERMISSION_TOKEN, Simulator, build_app
from canvas_tui.simulator.world import (
    COMPLETED_COURSE,
    DELETED_COURSE,
    DOC_COURSE,
    NON_ASCII_USER,
    SLASH_COURSE,
    SLASH_SECTION,
    SLASH_USER,
)
from tests.canvas.conftest import Sleeps, make_client, sim_config, sis_students


async def test_create_returns_enrollment_and_is_idempotent(
    client: CanvasClient, app: Simulator
) -> None:
    user = sis_students(app.world, 1)[0]
    events: list[AttemptEvent] = []
    first = await client.create_enrollment(
        user=user,
        course=f"sis_course_id:{DOC_COURSE}",
        section=None,
        enrollment_type="StudentEnrollment",
        observer=events.append,
    )
    again = await client.create_enrollment(
        user=user,
        course=f"sis_course_id:{DOC_COURSE}",
        section=None,
        enrollment_type="StudentEnrollment",
    )
    assert first["id"] == again["id"] and first["enrollment_state"] == "active"
    assert app.stats()["duplicates"] == 0
    (event,) = events
    assert event.status == 200 and event.category is None and not event.will_retry
    assert event.method == "POST" and event.url.endswith(
        f"/courses/sis_course_id:{DOC_COURSE}/enrollments"
    )
    assert '"enrollment":{' in (event.request_body or "")
    assert '"notify":false' in (event.request_body or "")
    assert event.cost is not None and event.remaining is not None


async def test_section_route_and_slash_ids_survive(client: CanvasClient, app: Simulator) -> None:
    created = await client.create_enrollment(
        user=f"sis_user_id:{SLASH_USER}",
        course=None,
        section=f"sis_section_id:{SLASH_SECTION}",
        enrollment_type="StudentEnrollment",
    )
    section = app.world.find_section(f"sis_section_id:{SLASH_SECTION}")
    assert section is not None and created["course_section_id"] == section.id
    course = await client.get_course(f"sis_course_id:{SLASH_COURSE}")
    assert course["sis_course_id"] == SLASH_COURSE
    user = await client.get_user(f"sis_user_id:{NON_ASCII_USER}")
    assert user["name"] == "Zoë Ångström-Núñez"


async def test_hex_form_reaches_the_right_course(app: Simulator) -> None:
    app.world.add_course("Question course", "Q?1.json", course_id=555)
    async with make_client(app) as client:
        course = await client.get_course("sis_course_id:Q?1.json")
    assert course["id"] == 555


async def test_pagination_follows_every_bookmark_page(app: Simulator) -> None:
    course = app.world.find_course(f"sis_course_id:{DOC_COURSE}")
    assert course is not None
    users = sis_students(app.world, 230)
    async with make_client(app) as client:
        for user in users:
            await client.create_enrollment(
                user=user, course=str(course.id), section=None, enrollment_type="StudentEnrollment"
            )
        pages: list[tuple[int, int]] = []
        events: list[AttemptEvent] = []
        found = await client.list_enrollments(
            course=f"sis_course_id:{DOC_COURSE}",
            on_page=lambda p, n: pages.append((p, n)),
            observer=events.append,
        )
    expected = len(app.world.enrollments_in_course(course.id))
    assert len(found) == expected >= 230
    assert len({e["id"] for e in found}) == expected
    assert len(pages) == -(-expected // 100) and pages[-1][1] == expected
    assert "per_page=100" in events[0].url
    assert all("page=bookmark:" in e.url for e in events[1:])


async def test_list_filters(client: CanvasClient, app: Simulator) -> None:
    user = sis_students(app.world, 1)[0]
    await client.create_enrollment(
        user=user,
        course=f"sis_course_id:{DOC_COURSE}",
        section=None,
        enrollment_type="TeacherEnrollment",
    )
    found = await client.list_enrollments(
        course=f"sis_course_id:{DOC_COURSE}", types=["TeacherEnrollment"], user_filter=user
    )
    assert [e["type"] for e in found] == ["TeacherEnrollment"]


async def test_each_error_category_from_the_simulator(client: CanvasClient, app: Simulator) -> None:
    user = sis_students(app.world, 1)[0]

    async def create(**kw: str | None) -> CanvasError:
        args: dict[str, str | None] = {
            "user": user,
            "course": f"sis_course_id:{DOC_COURSE}",
            "section": None,
            "enrollment_type": "StudentEnrollment",
        }
        args.update(kw)
        with pytest.raises(CanvasError) as caught:
            await client.create_enrollment(**args)  # type: ignore[arg-type]
        return caught.value

    assert (await create(enrollment_type="TAEnrollment")).category is Category.INVALID_ROLE
    assert (await create(enrollment_type=None, role="NoSuchRole")).category is Category.INVALID_ROLE
    concluded = await create(course=f"sis_course_id:{COMPLETED_COURSE}")
    assert concluded.category is Category.CONCLUDED and concluded.status == 400
    assert (await create(course="sis_course_id:NOPE-404")).category is Category.COURSE_NOT_FOUND
    assert (
        await create(course=f"sis_course_id:{DELETED_COURSE}")
    ).category is Category.COURSE_NOT_FOUND
    assert (
        await create(course=None, section="sis_section_id:NOPE")
    ).category is Category.SECTION_NOT_FOUND
    missing_user = await create(user="sis_user_id:NOBODY")
    assert missing_user.category is Category.USER_NOT_FOUND and missing_user.status == 404
    with pytest.raises(CanvasError) as caught:
        await client.get_user("sis_user_id:NOBODY")
    assert caught.value.category is Category.USER_NOT_FOUND


async def test_404_attribution_checks_the_course_once(client: CanvasClient, app: Simulator) -> None:
    before = app.stats()["requests_by_endpoint"].get("get_course", 0)
    seen: list[list[tuple[str, int | None]]] = []
    for name in ("NOBODY1", "NOBODY2", "NOBODY3"):
        events: list[AttemptEvent] = []
        with pytest.raises(CanvasError) as caught:
            await client.create_enrollment(
                user=f"sis_user_id:{name}",
                course=f"sis_course_id:{DOC_COURSE}",
                section=None,
                enrollment_type="StudentEnrollment",
                observer=events.append,
            )
        assert caught.value.category is Category.USER_NOT_FOUND
        seen.append([(e.method, e.status) for e in events])
    assert app.stats()["requests_by_endpoint"].get("get_course", 0) - before == 1
    # the check is an attempt the record shows, once; later records reuse its answer
    assert seen == [[("POST", 404), ("GET", 200)], [("POST", 404)], [("POST", 404)]]


async def test_permission_is_not_auth(app: Simulator) -> None:
    async with make_client(app, NO_PERMISSION_TOKEN) as client:
        with pytest.raises(CanvasError) as caught:
            await client.create_enrollment(
                user=sis_students(app.world, 1)[0],
                course=f"sis_course_id:{DOC_COURSE}",
                section=None,
                enrollment_type="StudentEnrollment",
            )
    assert caught.value.category is Category.PERMISSION and not caught.value.fatal
    assert caught.value.status == 401


async def test_invalid_token_is_fatal_after_one_request(app: Simulator) -> None:
    sleeps = Sleeps()
    events: list[AttemptEvent] = []
    async with make_client(app, "not-a-real-token", sleep=sleeps) as client:
        with pytest.raises(CanvasError) as caught:
            await client.whoami(observer=events.append)
    assert caught.value.category is Category.AUTH and caught.value.fatal
    assert app.stats()["requests"] == 1 and sleeps.waits == []
    assert [(e.status, e.category, e.will_retry) for e in events] == [(401, "auth", False)]


async def test_user_agent_and_bearer_are_sent(app: Simulator) -> None:
    async with make_client(app) as client:
        me = await client.whoami()
    assert me["id"] == 1
    assert USER_AGENT.startswith("canvas-tui/")


async def test_delete_and_reactivate(client: CanvasClient, app: Simulator) -> None:
    user = sis_students(app.world, 1)[0]
    course = f"sis_course_id:{DOC_COURSE}"
    created = await client.create_enrollment(
        user=user, course=course, section=None, enrollment_type="StudentEnrollment"
    )
    inactive = await client.delete_enrollment(course, created["id"], "inactivate")
    assert inactive["enrollment_state"] == "inactive"
    active = await client.reactivate_enrollment(course, created["id"])
    assert active["enrollment_state"] == "active"
    deleted = await client.delete_enrollment(course, created["id"], "delete")
    assert deleted["enrollment_state"] == "deleted"
    with pytest.raises(CanvasError) as caught:  # a deleted row is gone from this lookup: a real 404
        await client.delete_enrollment(course, created["id"], "delete")
    assert caught.value.status == 404


async def test_sections_and_roles(client: CanvasClient) -> None:
    sections = await client.list_course_sections(f"sis_course_id:{DOC_COURSE}")
    assert {"1B", "2A"} <= {s["sis_section_id"] for s in sections}
    roles = await client.list_roles()
    assert {"StudentEnrollment", "TaEnrollment"} <= {r.get("base_role_type") for r in roles}


def test_refuses_plain_http_to_a_remote_host() -> None:
    with pytest.raises(CanvasError) as caught:
        CanvasClient("http://canvas.example.edu", ADMIN_TOKEN)
    assert caught.value.category is Category.UNSAFE and caught.value.fatal
    assert ADMIN_TOKEN not in str(caught.value)


async def test_in_process_simulator_uses_fast_config() -> None:
    app = build_app(sim_config())
    async with make_client(app) as client:
        assert (await client.whoami())["id"] == 1


async def test_a_section_of_another_course_is_refused_not_enrolled(
    client: CanvasClient, app: Simulator
) -> None:
    user = sis_students(app.world, 1)[0]
    course = app.world.find_course(f"sis_course_id:{DOC_COURSE}")
    other = next(
        s
        for s in app.world.sections.values()
        if course and s.course_id != course.id and s.sis_section_id
    )
    before = app.stats()["enrollments_created"]
    with pytest.raises(CanvasError) as caught:
        await client.create_enrollment(
            user=user,
            course=f"sis_course_id:{DOC_COURSE}",
            section=f"sis_section_id:{other.sis_section_id}",
            enrollment_type="StudentEnrollment",
        )
    assert caught.value.category is Category.SECTION_NOT_FOUND
    assert app.stats()["enrollments_created"] == before
