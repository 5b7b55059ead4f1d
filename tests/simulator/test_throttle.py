"""The leaky bucket, exactly as Canvas's (CANVAS_API.md §1)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from canvas_tui.simulator import ADMIN_TOKEN, LatencyModel, build_app
from canvas_tui.simulator.bucket import BucketSettings, LeakyBucket, ruby_float
from tests.helpers import eventually_async, fast_config
from tests.simulator.conftest import FrozenClock, client_for

COURSE = "/api/v1/courses/sis_course_id:E411208/enrollments"


def test_bucket_arithmetic_follows_increment_bucket() -> None:
    clock = FrozenClock()
    bucket = LeakyBucket(BucketSettings(), clock)
    assert bucket.reserve()
    assert bucket.count == 50
    assert bucket.settle(0.25) == pytest.approx(0.25)
    clock.now += 1.0  # leaks 10 units: below zero first, then the amount is added
    assert bucket.increment(50) == pytest.approx(40.25)
    clock.now += 2.0
    assert bucket.increment(0) == pytest.approx(20.25)
    clock.now += 100.0
    assert bucket.increment(1) == 0  # a long idle leak swallows a small amount (clamped at 0)
    assert bucket.increment(10_000) == 800  # clamped to maximum
    assert bucket.increment(-10_000) == 0  # never below zero
    assert bucket.remaining() == 600


def test_time_scale_multiplies_the_leak() -> None:
    clock = FrozenClock()
    bucket = LeakyBucket(BucketSettings(time_scale=10.0), clock)
    bucket.increment(500)
    clock.now += 1.0
    assert bucket.increment(0) == pytest.approx(400)


def test_refused_when_count_after_reservation_reaches_hwm() -> None:
    bucket = LeakyBucket(BucketSettings(), FrozenClock())
    bucket.increment(549)
    assert bucket.reserve()  # 599 < 600
    bucket.settle(0)  # back to 549
    bucket.increment(1)
    assert not bucket.reserve()  # exactly 600 is full
    assert bucket.count == 600


def test_ruby_float_strings() -> None:
    assert ruby_float(600) == "600.0"
    assert ruby_float(599.95) == "599.95"
    assert ruby_float(-2) == "-2.0"
    assert ruby_float(-0.0) == "0.0"


async def _hold_concurrent(count: int, **config: object) -> tuple[list[httpx.Response], object]:
    """`count` creates in flight at once with the clock held still; returns their responses."""
    gate = asyncio.Event()

    async def held_sleep(_: float) -> None:
        await gate.wait()

    app = build_app(fast_config(clock=FrozenClock(), sleep=held_sleep, **config))
    async with client_for(app) as client:
        users = [u for u in app.world.users.values() if u.id >= 1000][:count]
        tasks = [
            asyncio.create_task(
                client.post(
                    COURSE,
                    data={
                        "enrollment[user_id]": str(u.id),
                        "enrollment[enrollment_state]": "active",
                    },
                )
            )
            for u in users
        ]

        def all_arrived() -> bool:
            stats = app.stats()
            return bool(
                stats["in_flight"] + stats["throttled"] == count
                and stats["throttled"] + 11 >= count
            )

        await eventually_async(
            all_arrived, what="every request arrived: held, or refused at once", timeout=5
        )
        gate.set()
        return list(await asyncio.gather(*tasks)), app


async def test_eleven_in_flight_pass_and_the_twelfth_is_refused() -> None:
    responses, app = await _hold_concurrent(12)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 11 + [429]
    assert app.stats()["throttled"] == 1  # type: ignore[attr-defined]
    assert app.stats()["max_in_flight"] == 12  # type: ignore[attr-defined]


async def test_eleven_in_flight_are_never_refused() -> None:
    responses, _ = await _hold_concurrent(11)
    assert [r.status_code for r in responses] == [200] * 11


async def test_refusal_headers_and_legacy_403_body() -> None:
    responses, _ = await _hold_concurrent(12, throttle_status=403)
    refused = [r for r in responses if r.status_code != 200]
    assert len(refused) == 1
    response = refused[0]
    assert response.status_code == 403
    assert response.content == b"403 Forbidden (Rate Limit Exceeded)\n"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert "x-request-cost" not in response.headers
    assert "retry-after" not in response.headers
    # the refused request gave its reservation back before the header was computed: 11 x 50 held
    assert float(response.headers["x-rate-limit-remaining"]) == pytest.approx(600 - 550 - 0.01)


async def test_429_refusal_is_text_and_carries_remaining() -> None:
    responses, _ = await _hold_concurrent(12)
    refused = next(r for r in responses if r.status_code == 429)
    assert b"Rate Limit Exceeded" in refused.content
    assert "x-rate-limit-remaining" in refused.headers
    assert "retry-after" not in refused.headers


async def test_success_headers_exact_with_still_clock() -> None:
    app = build_app(fast_config(clock=FrozenClock(), post_cost=0.1, get_cost=0.05))
    async with client_for(app) as client:
        first = await client.get("/api/v1/users/self")
        second = await client.post(
            COURSE,
            data={
                "enrollment[user_id]": "sis_user_id:01103",
                "enrollment[type]": "StudentEnrollment",
            },
        )
    assert first.headers["x-request-cost"] == "0.05"
    assert first.headers["x-rate-limit-remaining"] == "599.95"
    assert second.headers["x-request-cost"] == "0.1"
    assert float(second.headers["x-rate-limit-remaining"]) == pytest.approx(599.85)


async def test_error_responses_carry_rate_limit_headers() -> None:
    app = build_app(fast_config())
    async with client_for(app, token="not-a-token") as client:
        response = await client.get("/api/v1/users/self")
    assert response.status_code == 401
    assert "x-rate-limit-remaining" in response.headers


async def test_sequential_requests_are_never_refused() -> None:
    # Real clock, realistic costs: each request holds 50 and gives it back before the next arrives.
    app = build_app(fast_config(time_scale=200.0, latency=LatencyModel()))
    async with client_for(app) as client:
        users = [u for u in app.world.users.values() if u.id >= 1000][:60]
        for user in users:
            response = await client.post(COURSE, data={"enrollment[user_id]": str(user.id)})
            assert response.status_code == 200
    assert app.stats()["throttled"] == 0
    assert app.stats()["max_in_flight"] == 1


async def test_in_real_time_the_leak_admits_a_little_more() -> None:
    # Arrivals 0.25 world-seconds apart leak 2.5 units between them, so the 12th still fits and the
    # 13th or a later one is the first refused.
    scale = 10.0
    app = build_app(fast_config(time_scale=scale, latency=LatencyModel.uniform(20.0)))
    results: dict[int, int] = {}
    async with client_for(app, timeout=30) as client:

        async def one(index: int) -> None:
            response = await client.get("/api/v1/users/self")
            results[index] = response.status_code

        tasks = []
        for index in range(1, 21):
            tasks.append(asyncio.create_task(one(index)))
            await asyncio.sleep(0.25 / scale)
        started = time.monotonic()
        await asyncio.gather(*tasks)
    refused = sorted(i for i, status in results.items() if status == 429)
    assert refused, results
    assert refused[0] >= 13
    assert all(results[i] == 200 for i in range(1, 13))
    assert time.monotonic() - started < 5


async def test_a_cancelled_request_still_settles() -> None:
    clock = FrozenClock()
    gate = asyncio.Event()

    async def held_sleep(_: float) -> None:
        await gate.wait()

    app = build_app(fast_config(clock=clock, sleep=held_sleep, get_cost=0.05))
    async with client_for(app) as client:
        task = asyncio.create_task(client.get("/api/v1/users/self"))
        await eventually_async(
            lambda: app.stats()["in_flight"] == 1, what="the request held", timeout=5
        )
        assert app.token_bucket(ADMIN_TOKEN).count == 50  # the reservation is held
        task.cancel()  # a client timeout, as asyncio.wait_for would do
        with pytest.raises(asyncio.CancelledError):
            await task
    assert app.token_bucket(ADMIN_TOKEN).count == pytest.approx(0.05)
    assert app.stats()["in_flight"] == 0
