"""A Canvas client nobody here wrote (ucfopen/canvasapi) against the simulator over loopback.

Proof that the simulator speaks Canvas, not our own dialect: canvasapi pages with its own Link
parsing, and maps the simulator's statuses onto its own exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from canvasapi import Canvas
from canvasapi.exceptions import (
    InvalidAccessToken,
    RateLimitExceeded,
    ResourceDoesNotExist,
    Unauthorized,
)

from canvas_tui.simulator import ADMIN_TOKEN, NO_PERMISSION_TOKEN, Simulator, build_app
from canvas_tui.simulator.testing import serve_in_thread
from tests.helpers import fast_config
from tests.simulator.conftest import roster_world


def canvas(base: str, token: str = ADMIN_TOKEN) -> Canvas:
    with pytest.warns(UserWarning, match="HTTP"):  # canvasapi rightly dislikes plain http
        return Canvas(base, token)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Simulator, str]]:
    world, _ = roster_world(120)  # canvasapi parses dates slowly (arrow): keep it small
    app = build_app(fast_config(), world)
    with serve_in_thread(app) as base:
        yield app, base


def test_canvasapi_pages_a_roster(served: tuple[Simulator, str]) -> None:
    app, base = served
    app.reset_stats()
    course = canvas(base).get_course("BIG-100", use_sis_id=True)
    assert course.sis_course_id == "BIG-100"
    enrollments = list(course.get_enrollments())
    assert len(enrollments) == 120
    assert len({e.id for e in enrollments}) == 120
    assert (
        app.stats()["requests_by_endpoint"]["list_enrollments"] == 2
    )  # per_page=100: it followed rel="next"


def test_canvasapi_raises_its_own_not_found(served: tuple[Simulator, str]) -> None:
    _, base = served
    with pytest.raises(ResourceDoesNotExist):
        canvas(base).get_course("NOPE", use_sis_id=True)


def test_canvasapi_raises_rate_limit_exceeded_on_429(served: tuple[Simulator, str]) -> None:
    app, base = served
    app.storm(fill=800, token=ADMIN_TOKEN)
    try:
        with pytest.raises(RateLimitExceeded):
            canvas(base).get_course("BIG-100", use_sis_id=True)
    finally:
        app.storm(fill=0, token=ADMIN_TOKEN)


def test_canvasapi_tells_invalid_token_from_no_permission(served: tuple[Simulator, str]) -> None:
    _, base = served
    with pytest.raises(InvalidAccessToken):
        canvas(base, "not-a-token").get_course("BIG-100", use_sis_id=True)
    with pytest.raises(Unauthorized):
        canvas(base, NO_PERMISSION_TOKEN).get_course("BIG-100", use_sis_id=True)


def test_canvasapi_enrolls_idempotently(served: tuple[Simulator, str]) -> None:
    app, base = served
    course = canvas(base).get_course("BIG-100", use_sis_id=True)
    user = canvas(base).get_user("S900002", "sis_user_id")  # Ngọc Đặng
    fields = {"type": "StudentEnrollment", "enrollment_state": "active"}
    first = course.enroll_user(user.id, enrollment=fields)
    again = course.enroll_user(user.id, enrollment=fields)
    assert first.id == again.id
    assert first.enrollment_state == "active" and first.user_id == user.id
    assert app.stats()["duplicates"] == 0
