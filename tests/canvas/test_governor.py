"""The governor: bucket arithmetic on a fake clock, then concurrency against the simulator."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.governor import Governor
from canvas_tui.simulator import ADMIN_TOKEN, LatencyModel, build_app
from canvas_tui.simulator.world import DOC_COURSE, World
from tests.canvas.conftest import BASE, ManualClock, make_client, sim_config, sis_students
from tests.helpers import eventually_async, never_within_async


def headers(remaining: float | None, cost: float | None = 0.1) -> dict[str, str]:
    found = {}
    if remaining is not None:
        found["X-Rate-Limit-Remaining"] = str(remaining)
    if cost is not None:
        found["X-Request-Cost"] = str(cost)
    return found


async def answer(governor: Governor, remaining: float | None, *, throttled: bool = False) -> None:
    async with governor.slot() as slot:
        slot.report(headers(remaining), throttled=throttled)


async def test_probe_then_eleven_on_an_idle_bucket() -> None:
    governor = Governor(clock=ManualClock())
    assert governor.limit == 1  # nothing known yet: one request probes the bucket
    await answer(governor, 599.9)
    assert governor.limit == 11  # ceil((600 - margin) / 50) - 1
    state = governor.state()
    assert state.remaining == 599.9 and state.in_flight == 0 and state.limit == 11


async def test_a_larger_hosted_hwm_is_inferred_from_remaining() -> None:
    governor = Governor(clock=ManualClock())
    await answer(governor, 699.9)
    assert governor.limit == 13 and governor.state().high_water_mark == pytest.approx(699.9)


async def test_remaining_counts_the_other_requests_reservations() -> None:
    clock = ManualClock()
    governor = Governor(clock=clock)
    await answer(governor, 599.9)
    slots = [governor.slot() for _ in range(5)]
    held = [await s.__aenter__() for s in slots]
    # base 200 + four other requests holding 50 each -> remaining 200
    held[0].report(headers(200.0, cost=1.0), throttled=False)
    assert governor.free() == pytest.approx(400.0)
    assert governor.limit == 7  # ceil((400 - 15) / 50) - 1
    for s in slots:
        await s.__aexit__(None, None, None)
    clock.now += 10  # the bucket leaks 10 units a second
    assert governor.free() == pytest.approx(500.0)
    assert governor.limit == 9


async def test_free_never_exceeds_the_hwm() -> None:
    governor = Governor(clock=ManualClock())
    await answer(governor, 599.9)
    slots = [governor.slot() for _ in range(3)]
    held = [await s.__aenter__() for s in slots]
    # two "others" the server has not seen yet would suggest 700 free: never above the hwm
    held[0].report(headers(599.9), throttled=False)
    free = governor.free()
    assert free is not None and 599.0 < free <= 600.0
    for s in slots:
        await s.__aexit__(None, None, None)


async def test_requests_not_yet_at_the_server_cannot_open_the_gate() -> None:
    """`remaining` plus 50 per request we count in flight is only an upper bound on the room
    (some may not have reached Canvas yet); the cost-and-leak model keeps the bucket level."""
    governor = Governor(clock=ManualClock())
    await answer(governor, 300.0)  # nothing else in flight: the bucket is exactly at 300
    assert governor.free() == pytest.approx(300.0) and governor.limit == 5
    slots = [governor.slot() for _ in range(5)]
    held = [await s.__aenter__() for s in slots]
    # four others counted, none seen by Canvas yet: read naively this says 500 are free
    held[0].report(headers(300.0 - 0.1), throttled=False)
    assert governor.free() == pytest.approx(300.0 - 0.1)
    assert governor.limit == 5
    for s in slots:
        await s.__aexit__(None, None, None)


async def test_full_bucket_waits_for_the_leak() -> None:
    clock = ManualClock()
    governor = Governor(clock=clock)
    await answer(governor, 30.0)
    assert governor.limit == 0
    assert governor.refill_wait() == pytest.approx((50 + 15 - 30) / 10, abs=0.01)
    clock.now += 3.6
    assert governor.limit == 1 and governor.refill_wait() == 0.0


async def test_throttle_halves_once_per_burst_then_recovers() -> None:
    clock = ManualClock()
    governor = Governor(clock=clock)
    await answer(governor, 599.9)
    slots = [governor.slot() for _ in range(8)]
    held = [await s.__aenter__() for s in slots]
    for slot in held[:3]:  # three refusals from the same burst
        slot.report(headers(400.0, cost=None), throttled=True)
    for s in slots:
        await s.__aexit__(None, None, None)
    assert governor.throttled == 3
    assert governor.limit == 4  # halved once, from 8 in flight
    for _ in range(100):  # additive increase: about +1 per round trip of answers
        await answer(governor, 599.9)
    assert governor.limit == 11  # the ceiling grew back and handed control to the model


async def test_without_headers_starts_low_and_probes_upward() -> None:
    governor = Governor(clock=ManualClock(), fallback_limit=4, max_limit=20)
    await answer(governor, None)
    assert governor.limit == 4
    for _ in range(60):
        await answer(governor, None)
    assert 8 <= governor.limit <= 20
    await answer(governor, None, throttled=True)
    assert governor.limit < 8


async def test_operator_cap() -> None:
    governor = Governor(clock=ManualClock())
    await answer(governor, 599.9)
    governor.set_cap(3)
    assert governor.limit == 3 and governor.state().cap == 3
    governor.set_cap(None)
    assert governor.limit == 11


async def test_slot_blocks_at_the_limit_and_wakes_on_release() -> None:
    governor = Governor()
    governor.set_cap(2)
    await answer(governor, 599.9)
    release = asyncio.Event()
    peak = 0

    async def hold() -> None:
        nonlocal peak
        async with governor.slot():
            peak = max(peak, governor.in_flight)
            await release.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(5)]
    await eventually_async(lambda: governor.in_flight == 2, what="two callers holding slots")
    await never_within_async(lambda: governor.in_flight > 2, 0.05, what="a third slot given")
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 2 and governor.max_in_flight == 2 and governor.in_flight == 0


@pytest.mark.parametrize("status", [429, 403])
@pytest.mark.parametrize("post_cost", [0.1, 1.0])
async def test_concurrent_creates_stay_under_the_limit(status: int, post_cost: float) -> None:
    """60 concurrent callers; the governor keeps the simulator's bucket from refusing them."""
    world = World.generate(7, users=800, courses=20)
    scale = 50.0
    config = sim_config(
        time_scale=scale,
        throttle_status=status,
        post_cost=post_cost,
        latency=LatencyModel(create=0.25, list=0.1, show=0.1, write=0.1, jitter=0.4),
        cost_jitter=0.2,
    )
    app = build_app(config, world)
    users = sis_students(world, 400)
    async with make_client(app) as client:
        queue = list(users)

        async def worker() -> None:
            while queue:
                user = queue.pop()
                await client.create_enrollment(
                    user=user,
                    course=f"sis_course_id:{DOC_COURSE}",
                    section=None,
                    enrollment_type="StudentEnrollment",
                )

        await asyncio.gather(*(worker() for _ in range(60)))
    stats = app.stats()
    assert stats["enrollments_created"] == 400 and stats["duplicates"] == 0
    assert stats["max_in_flight"] <= 11
    assert stats["throttled"] <= 0.01 * stats["requests"]
    if post_cost == 0.1:
        assert stats["max_in_flight"] >= 9  # latency-bound: it does use the room there is


class StripThrottleHeaders:
    """A proxy that drops X-Rate-Limit-Remaining / X-Request-Cost (some gateways do)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def strip(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (k, v)
                    for k, v in message["headers"]
                    if k.lower() not in (b"x-rate-limit-remaining", b"x-request-cost")
                ]
            await send(message)

        await self.inner(scope, receive, strip)


@pytest.mark.parametrize("status", [429, 403])
async def test_without_headers_aimd_finishes_everything(status: int) -> None:
    world = World.generate(7, users=800, courses=20)
    config = sim_config(
        time_scale=50.0,
        throttle_status=status,
        post_cost=1.0,
        latency=LatencyModel(create=0.25, list=0.1, show=0.1, write=0.1, jitter=0.4),
    )
    app = build_app(config, world)
    governor = Governor(leak=10.0 * 50.0)
    transport = httpx.ASGITransport(app=StripThrottleHeaders(app))
    users = sis_students(world, 200)
    limits: list[int] = []
    async with CanvasClient(
        BASE, ADMIN_TOKEN, transport=transport, governor=governor, sleep=asyncio.sleep
    ) as client:
        queue = list(users)

        async def worker() -> None:
            while queue:
                user = queue.pop()
                limits.append(governor.limit)
                await client.create_enrollment(
                    user=user,
                    course=f"sis_course_id:{DOC_COURSE}",
                    section=None,
                    enrollment_type="StudentEnrollment",
                )

        await asyncio.gather(*(worker() for _ in range(30)))
    stats = app.stats()
    assert stats["enrollments_created"] == 200 and stats["duplicates"] == 0
    assert governor.state().remaining is None  # it really never saw the headers
    assert limits[0] == 1 and 4 in limits  # a probe, then the conservative fallback ...
    assert max(limits) > 4  # ... which probes upward
    assert stats["throttled"] <= 0.2 * stats["requests"]


async def test_only_a_leaking_bucket_raises_the_limit_unannounced() -> None:
    clock = ManualClock()
    governor = Governor(clock=clock)
    assert not governor.leak_raises_limit()  # the probe: only the first answer raises it
    await answer(governor, 30.0)  # a nearly full bucket: the leak opens room
    assert governor.limit == 0 and governor.leak_raises_limit()
    clock.now += 60  # leaked empty: nothing but an answer or a cap raises the limit now
    assert governor.limit == 11 and not governor.leak_raises_limit()
    await answer(governor, 300.0)
    governor.set_cap(2)  # the cap binds, not the bucket
    assert governor.limit == 2 and not governor.leak_raises_limit()


async def test_listeners_hear_each_answer_until_stopped() -> None:
    governor = Governor(clock=ManualClock())
    heard: list[int] = []
    stop = governor.listen(lambda: heard.append(governor.limit))
    await answer(governor, 599.9)
    assert heard == [11]
    stop()
    stop()  # twice is harmless
    await answer(governor, 599.9)
    assert heard == [11]
