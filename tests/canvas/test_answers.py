"""A success answer is believed only when it has the shape Canvas gives, and it arrives whole
within the request's deadline. Both faults come from the simulator over a real socket: a gateway's
200 with `{}`, `[]` or `{"id": null}`, and Canvas's own answer dripped one byte at a time."""

from __future__ import annotations

import asyncio

import pytest

from canvas_tui.canvas.client import AttemptEvent, CanvasClient
from canvas_tui.canvas.errors import CanvasError, Category
from canvas_tui.canvas.shapes import enrollment_problem, list_of, object_problem
from canvas_tui.simulator import ADMIN_TOKEN, FaultRates, build_app
from canvas_tui.simulator.faults import BAD_SHAPES
from canvas_tui.simulator.testing import serve_in_thread
from canvas_tui.simulator.world import DOC_COURSE, World
from tests.canvas.conftest import Sleeps, sim_config, sis_students


@pytest.mark.parametrize("body", BAD_SHAPES, ids=repr)
def test_no_wrong_shape_passes_for_an_enrollment_or_a_page(body: object) -> None:
    assert enrollment_problem(body)
    assert object_problem(body)
    assert list_of(enrollment_problem)([body])


async def test_wrong_shape_success_is_retried_then_a_failure_with_the_body() -> None:
    world = World.generate(7, users=800, courses=20)
    app = build_app(sim_config(faults=FaultRates(bad_shape=1.0)), world)
    user = sis_students(world, 1)[0]
    events: list[AttemptEvent] = []
    with serve_in_thread(app) as base_url:
        async with CanvasClient(base_url, ADMIN_TOKEN, sleep=Sleeps(), max_attempts=3) as client:
            with pytest.raises(CanvasError) as caught:
                await client.create_enrollment(
                    user=user,
                    course=f"sis_course_id:{DOC_COURSE}",
                    section=None,
                    enrollment_type="StudentEnrollment",
                    observer=events.append,
                )
    error = caught.value
    assert error.category is Category.BAD_ANSWER and error.retryable
    assert error.status == 200 and "body: " in error.message
    assert [e.category for e in events] == ["bad_answer"] * 3
    assert [e.will_retry for e in events] == [True, True, False]
    # the gateway answered; Canvas never saw the create
    assert app.stats()["enrollments_created"] == 0


async def test_wrong_shape_then_a_real_answer_is_done() -> None:
    world = World.generate(7, users=800, courses=20)
    app = build_app(sim_config(faults=FaultRates(bad_shape=0.5), seed=3), world)
    users = sis_students(world, 12)
    with serve_in_thread(app) as base_url:
        async with CanvasClient(base_url, ADMIN_TOKEN, sleep=Sleeps(), max_attempts=20) as client:
            created = [
                await client.create_enrollment(
                    user=user,
                    course=f"sis_course_id:{DOC_COURSE}",
                    section=None,
                    enrollment_type="StudentEnrollment",
                )
                for user in users
            ]
    assert app.stats()["faults"]["bad_shape"] > 0
    assert all(world.enrollments[e["id"]].workflow_state == "active" for e in created)
    assert app.stats()["enrollments_created"] == len(users)


async def test_a_dripped_answer_ends_at_the_deadline() -> None:
    """The answer arrives one byte every 0.1 s: no single read waits long enough to time out,
    but the whole request may not outlast `timeout`."""
    world = World.generate(7, users=800, courses=20)
    app = build_app(
        sim_config(time_scale=1.0, faults=FaultRates(drip=1.0, drip_seconds=0.1)), world
    )
    with serve_in_thread(app) as base_url:
        async with CanvasClient(base_url, ADMIN_TOKEN, timeout=0.5, max_attempts=1) as client:
            # a guard, not a measurement: without a deadline the answer takes over 20 s
            async with asyncio.timeout(15):
                with pytest.raises(CanvasError) as caught:
                    await client.whoami()
    assert caught.value.category is Category.NETWORK
    assert "deadline" in caught.value.message
    assert app.stats()["faults"]["drip"] == 1
