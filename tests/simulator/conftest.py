"""Helpers for simulator tests: an in-process client; `fast_config` runs fast and exact."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from canvas_tui.simulator import ADMIN_TOKEN, Simulator, build_app
from canvas_tui.simulator.testing import asgi_transport
from canvas_tui.simulator.world import BUILT_IN_ROLE_IDS, World
from tests.helpers import fast_config

USER_AGENT = "canvas-tui-tests/1.0"
BASE = "http://canvas.test"
DOC_COURSE_PATH = "/api/v1/courses/sis_course_id:E411208/enrollments"


class FrozenClock:
    """The simulator's clock, still until a test moves `now`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def client_for(app: Simulator, token: str | None = ADMIN_TOKEN, **kwargs: Any) -> httpx.AsyncClient:
    headers = {"User-Agent": USER_AGENT}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(
        transport=asgi_transport(app), base_url=BASE, headers=headers, **kwargs
    )


@pytest.fixture
def world() -> World:
    return World.generate(7)


@pytest.fixture
def app(world: World) -> Simulator:
    return build_app(fast_config(), world)


@pytest.fixture
async def client(app: Simulator) -> Any:
    async with client_for(app) as c:
        yield c


def form(**fields: str) -> dict[str, str]:
    return {f"enrollment[{k}]": v for k, v in fields.items()}


def roster_world(size: int) -> tuple[World, str]:
    world = World.generate(11, users=size + 20, courses=3, students_per_course=0)
    course = world.add_course("Big Lecture", "BIG-100")
    section = world.default_section(course)
    student = world.roles[BUILT_IN_ROLE_IDS["StudentEnrollment"]]
    users = [u for u in world.users.values() if u.id >= 1000][:size]
    for user in users:
        world.add_enrollment(user, section, student)
    return world, "/api/v1/courses/sis_course_id:BIG-100/enrollments"
