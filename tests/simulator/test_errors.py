"""Every error shape the simulator produces, byte for byte as CANVAS_API.md §0/§5 gives them."""

from __future__ import annotations

import httpx

from canvas_tui.simulator import NO_PERMISSION_TOKEN, Simulator, build_app
from canvas_tui.simulator.faults import FaultRates
from canvas_tui.simulator.world import COMPLETED_COURSE, DELETED_COURSE, SOFT_CONCLUDED_COURSE
from tests.helpers import fast_config
from tests.simulator.conftest import BASE, client_for

NOT_FOUND = {"errors": [{"message": "The specified resource does not exist."}]}
DOC_COURSE_PATH = "/api/v1/courses/sis_course_id:E411208/enrollments"


async def test_invalid_token_is_401_with_www_authenticate(app: Simulator) -> None:
    async with client_for(app, token="wrong") as client:
        response = await client.get("/api/v1/users/self")
    assert response.status_code == 401
    assert response.json() == {"errors": [{"message": "Invalid access token."}]}
    assert response.headers["www-authenticate"] == 'Bearer realm="canvas-lms"'


async def test_no_token_is_401_unauthenticated(app: Simulator) -> None:
    async with client_for(app, token=None) as client:
        response = await client.get("/api/v1/users/self")
    assert response.status_code == 401
    assert response.json() == {
        "status": "unauthenticated",
        "errors": [{"message": "user authorization required"}],
    }
    assert "www-authenticate" in response.headers


async def test_missing_permission_is_401_without_www_authenticate(app: Simulator) -> None:
    async with client_for(app, token=NO_PERMISSION_TOKEN) as client:
        create = await client.post(
            DOC_COURSE_PATH, data={"enrollment[user_id]": "sis_user_id:01103"}
        )
        listing = await client.get(DOC_COURSE_PATH)
        own = await client.get("/api/v1/users/self")
    unauthorized = {
        "status": "unauthorized",
        "errors": [{"message": "user not authorized to perform that action"}],
    }
    for response in (create, listing):
        assert response.status_code == 401
        assert response.json() == unauthorized
        assert "www-authenticate" not in response.headers
    assert own.status_code == 200


async def test_not_found_shapes(client: httpx.AsyncClient) -> None:
    responses = [
        await client.get("/api/v1/courses/sis_course_id:NOPE"),
        await client.get(f"/api/v1/courses/sis_course_id:{DELETED_COURSE}"),
        await client.get("/api/v1/users/sis_user_id:NOPE"),
        await client.get("/api/v1/courses/not-an-id"),
        await client.get("/api/v1/no/such/route"),
        await client.post(DOC_COURSE_PATH, data={"enrollment[user_id]": "sis_user_id:NOPE"}),
        await client.post(DOC_COURSE_PATH, data={"enrollment[user_id]": "10",
                                                 "enrollment[course_section_id]": "sis_section_id:NOPE"}),
        await client.post("/api/v1/sections/sis_section_id:NOPE/enrollments", data={"enrollment[user_id]": "10"}),
    ]  # fmt: skip
    for response in responses:
        assert response.status_code == 404, response.request.url
        assert response.json() == NOT_FOUND


async def test_bad_input_is_400_message(client: httpx.AsyncClient) -> None:
    ta = await client.post(DOC_COURSE_PATH, data={"enrollment[user_id]": "10",
                                                  "enrollment[type]": "TAEnrollment"})  # fmt: skip
    assert ta.status_code == 400 and ta.json() == {"message": "Invalid type"}
    empty = await client.post(DOC_COURSE_PATH, data={"other": "1"})
    assert empty.status_code == 400 and empty.json() == {"message": "No parameters given"}
    no_user = await client.post(DOC_COURSE_PATH, data={"enrollment[type]": "StudentEnrollment"})
    assert no_user.json() == {
        "message": "Can't create an enrollment without a user. Include enrollment[user_id] to create an enrollment"
    }
    both = await client.post(DOC_COURSE_PATH, data={"enrollment[type]": "PandaEnrollment"})
    assert both.json()["message"].startswith("Invalid type, Can't create an enrollment")


async def test_concluded_courses_refuse_with_400(client: httpx.AsyncClient) -> None:
    for sis in (COMPLETED_COURSE, SOFT_CONCLUDED_COURSE):
        response = await client.post(
            f"/api/v1/courses/sis_course_id:{sis}/enrollments", data={"enrollment[user_id]": "10"}
        )
        assert response.status_code == 400
        assert response.json() == {"message": "Can't add an enrollment to a concluded course."}
    soft = await client.get(f"/api/v1/courses/sis_course_id:{SOFT_CONCLUDED_COURSE}")
    assert soft.json()["workflow_state"] == "available"  # soft conclusion is invisible there


async def test_validation_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.post(DOC_COURSE_PATH, data={
        "enrollment[user_id]": "10", "enrollment[type]": "ObserverEnrollment",
        "enrollment[associated_user_id]": "10"})  # fmt: skip
    assert response.status_code == 400
    message = "Cannot observe yourself"
    assert response.json() == {
        "errors": {
            "associated_user_id": [
                {"attribute": "associated_user_id", "type": message, "message": message}
            ]
        }
    }


async def test_500_carries_error_report_id() -> None:
    app = build_app(fast_config(faults=FaultRates(error_500=1.0)))
    async with client_for(app) as client:
        first = await client.post(DOC_COURSE_PATH, data={"enrollment[user_id]": "10"})
        second = await client.get("/api/v1/users/self")
    assert first.status_code == second.status_code == 500
    body = first.json()
    assert body["errors"] == [
        {"message": "An error occurred.", "error_code": "internal_server_error"}
    ]
    assert isinstance(body["error_report_id"], int)
    assert second.json()["error_report_id"] != body["error_report_id"]
    assert "x-rate-limit-remaining" in first.headers
    assert app.stats()["enrollments_created"] == 0  # the write did not happen


async def test_request_without_user_agent_is_403_json(app: Simulator) -> None:
    async with httpx.AsyncClient(
        transport=client_for(app)._transport, base_url=BASE,
        headers={"Authorization": "Bearer demo-admin-token"},
    ) as client:  # fmt: skip
        del client.headers["user-agent"]
        response = await client.get("/api/v1/users/self")
    assert response.status_code == 403
    assert response.json()["error"] == "Forbidden"
    assert "user agent" in response.json()["message"]
    assert b"Rate Limit Exceeded" not in response.content  # never confused with the throttle


async def test_malformed_json_body_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        DOC_COURSE_PATH, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["error_code"] == "bad_request"


async def test_invalid_state_in_own_user_context(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/users/self/enrollments", params={"state[]": "bogus"})
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid state bogus"}


async def test_an_observer_cannot_observe_the_one_observing_them(
    client: httpx.AsyncClient,
) -> None:
    """app/models/enrollment.rb `cant_observe_observer`: user 11 observes 10 in the course, so
    10 may not observe 11 there."""

    def link(user: str, observed: str) -> dict[str, str]:
        return {
            "enrollment[user_id]": user,
            "enrollment[type]": "ObserverEnrollment",
            "enrollment[associated_user_id]": observed,
            "enrollment[enrollment_state]": "active",
        }

    assert (await client.post(DOC_COURSE_PATH, data=link("11", "10"))).status_code == 200
    response = await client.post(DOC_COURSE_PATH, data=link("10", "11"))
    assert response.status_code == 400
    (error,) = response.json()["errors"]["associated_user_id"]
    assert error["message"] == "Cannot observe observer observing self"
