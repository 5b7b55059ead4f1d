"""Retry behaviour against the simulator's real faults, with an instant sleep."""

from __future__ import annotations

import random
from typing import Any

import pytest

from canvas_tui.canvas.client import AttemptEvent, CanvasClient
from canvas_tui.canvas.errors import CanvasError, Category
from canvas_tui.canvas.governor import Governor
from canvas_tui.canvas.retry import RetryPolicy
from canvas_tui.simulator import ADMIN_TOKEN, FaultRates, Simulator, build_app
from canvas_tui.simulator.testing import free_port
from canvas_tui.simulator.world import DOC_COURSE, World
from tests.canvas.conftest import ManualClock, Sleeps, make_client, sim_config, sis_students

COURSE = f"sis_course_id:{DOC_COURSE}"


async def create_many(
    app: Simulator, count: int, **client_kwargs: object
) -> tuple[list[AttemptEvent], Sleeps]:
    events: list[AttemptEvent] = []
    sleeps = Sleeps()
    async with make_client(app, sleep=sleeps, **client_kwargs) as client:  # type: ignore[arg-type]
        for user in sis_students(app.world, count):
            created = await client.create_enrollment(
                user=user,
                course=COURSE,
                section=None,
                enrollment_type="StudentEnrollment",
                observer=events.append,
            )
            assert created["enrollment_state"] == "active"
    return events, sleeps


async def test_500s_and_html_503s_are_retried(app: Simulator) -> None:
    app.set_faults(FaultRates(error_500=0.25, html_503=0.15))
    events, sleeps = await create_many(app, 60)
    failed = [e for e in events if e.category is not None]
    assert {e.status for e in failed} == {500, 503}
    assert all(e.category == "server_error" and e.will_retry and e.wait for e in failed)
    assert any(e.error_report_id for e in failed if e.status == 500)
    assert any("503 Service Unavailable" in (e.message or "") for e in failed)
    assert len(sleeps.waits) == len(failed)
    assert sum(e.category is None for e in events) == 60
    assert app.stats()["duplicates"] == 0


async def test_resets_before_and_after_the_write_create_no_duplicate(app: Simulator) -> None:
    app.set_faults(FaultRates(reset_before=0.2, reset_after=0.2))
    events, _ = await create_many(app, 60)
    resets = [e for e in events if e.category == "network"]
    assert resets and all(e.status is None and e.will_retry for e in resets)
    stats = app.stats()
    assert stats["faults"].get("reset_after", 0) > 0
    assert stats["reposts"] >= stats["faults"]["reset_after"] > 0  # the re-sent POST found its row
    assert stats["duplicates"] == 0


async def test_backoff_grows_and_gives_up(app: Simulator) -> None:
    app.set_faults(FaultRates(error_500=1.0))
    sleeps = Sleeps()
    events: list[AttemptEvent] = []
    policy = RetryPolicy(max_attempts=4, initial=0.5, maximum=3.0, jitter=0.0)
    async with make_client(app, sleep=sleeps, retry_policy=policy) as client:
        with pytest.raises(CanvasError) as caught:
            await client.whoami(observer=events.append)
    assert caught.value.category is Category.SERVER and caught.value.status == 500
    assert sleeps.waits == [0.5, 1.0, 2.0]
    assert [e.will_retry for e in events] == [True, True, True, False]
    assert [e.wait for e in events] == [0.5, 1.0, 2.0, None]
    assert app.stats()["requests"] == 4


async def test_an_unreachable_canvas_fails_in_seconds_a_reached_one_gets_the_full_budget(
    app: Simulator,
) -> None:
    """Before Canvas has ever answered, a connection failure is retried briefly (a wrong URL
    or a blocked network should not cost the operator a minute of silence); once it has
    answered, the same failure is a blip and gets every attempt."""
    sleeps = Sleeps()
    nowhere = CanvasClient(f"http://127.0.0.1:{free_port()}", ADMIN_TOKEN, sleep=sleeps)
    async with nowhere:
        with pytest.raises(CanvasError) as caught:
            await nowhere.whoami()
    assert caught.value.category is Category.NETWORK and not caught.value.request_sent
    assert len(sleeps.waits) == RetryPolicy().unreached_attempts - 1

    sleeps = Sleeps()
    policy = RetryPolicy(max_attempts=5, jitter=0.0)
    async with make_client(app, sleep=sleeps, retry_policy=policy) as client:
        await client.whoami()  # Canvas answered
        app.set_faults(FaultRates(reset_before=1.0))
        with pytest.raises(CanvasError) as caught:
            await client.whoami()
    assert caught.value.category is Category.NETWORK
    assert len(sleeps.waits) == policy.max_attempts - 1


async def test_backoff_is_capped_with_jitter() -> None:
    policy = RetryPolicy(initial=1.0, maximum=5.0, jitter=0.5)
    error = CanvasError(Category.NETWORK, "x")
    waits = [policy.backoff(error, n, random.Random(n)) for n in range(1, 10)]
    assert all(1.0 <= w <= 5.0 for w in waits) and waits[-1] == 5.0


async def test_no_retry_for_400_404_401(client: object, app: Simulator) -> None:
    sleeps = Sleeps()
    async with make_client(app, sleep=sleeps) as c:
        for kwargs in (
            {"enrollment_type": "TAEnrollment", "user": sis_students(app.world, 1)[0]},
            {"enrollment_type": "StudentEnrollment", "user": "sis_user_id:NOBODY"},
        ):
            with pytest.raises(CanvasError) as caught:
                await c.create_enrollment(course=COURSE, section=None, **kwargs)  # type: ignore[arg-type]
            assert not caught.value.retryable
    assert sleeps.waits == []


@pytest.mark.parametrize("status", [429, 403])
async def test_throttle_refusal_waits_until_the_bucket_has_room(world: World, status: int) -> None:
    clock = ManualClock()
    app = build_app(sim_config(time_scale=1.0, clock=clock, throttle_status=status), world)
    governor = Governor(clock=clock)  # real Canvas leak, 10 units/s of the shared clock
    events: list[AttemptEvent] = []
    async with make_client(app, sleep=clock.sleep, governor=governor) as client:
        await client.whoami()  # the governor learns the bucket
        app.storm(fill=590.0)  # another job filled our bucket
        me = await client.whoami(observer=events.append)
    assert me["id"] == 1
    refused, accepted = events
    assert refused.status == status and refused.category == "throttled" and refused.will_retry
    assert refused.remaining is not None and refused.wait is not None
    # The retry waited for the leak to make room for one reservation (plus the margin) ...
    needed = (governor.up_front + governor.margin - refused.remaining) / governor.leak
    assert refused.wait >= needed > 1.0
    # ... so it went through at once, not into a second refusal.
    assert accepted.status == 200 and app.stats()["throttled"] == 1
    assert governor.throttled == 1


async def enroll_one(client: CanvasClient, app: Simulator) -> dict[str, Any]:
    return await client.create_enrollment(
        user=sis_students(app.world, 1)[0],
        course=COURSE,
        section=None,
        enrollment_type="StudentEnrollment",
    )


def fault_until_first_retry(client: CanvasClient, app: Simulator, faults: FaultRates) -> None:
    """Every request meets `faults` until the client's first retry wait, then none does."""
    app.set_faults(faults)

    async def calm_after_first_failure(_seconds: float) -> None:
        app.set_faults(FaultRates())

    client.sleep = calm_after_first_failure


async def test_delete_after_a_reset_that_hid_the_write(app: Simulator) -> None:
    """A `delete` re-sent after a reset answers 404 (the row is already deleted): re-read = done."""

    async with make_client(app) as client:
        created = await enroll_one(client, app)
        fault_until_first_retry(client, app, FaultRates(reset_after=1.0))
        events: list[AttemptEvent] = []
        result = await client.delete_enrollment(
            COURSE, created["id"], "delete", observer=events.append
        )
    assert result["id"] == created["id"] and result["enrollment_state"] == "deleted"
    assert [(e.status, e.category) for e in events[:2]] == [(None, "network"), (404, "not_found")]


async def test_reactivate_after_a_reset_that_hid_the_write(app: Simulator) -> None:
    async with make_client(app) as client:
        created = await enroll_one(client, app)
        await client.delete_enrollment(COURSE, created["id"], "inactivate")
        fault_until_first_retry(client, app, FaultRates(reset_after=1.0))
        events: list[AttemptEvent] = []
        result = await client.reactivate_enrollment(COURSE, created["id"], observer=events.append)
    assert result["enrollment_state"] == "active"
    assert events[1].status == 400 and "not inactive" in (events[1].message or "")


async def test_a_real_refusal_after_a_reset_still_fails(app: Simulator) -> None:
    """Reactivating a concluded row is refused; a reset before that must not turn it into success."""
    async with make_client(app) as client:
        created = await enroll_one(client, app)
        await client.delete_enrollment(COURSE, created["id"], "conclude")
        fault_until_first_retry(client, app, FaultRates(reset_before=1.0))
        with pytest.raises(CanvasError) as caught:
            await client.reactivate_enrollment(COURSE, created["id"])
    assert caught.value.status == 400
