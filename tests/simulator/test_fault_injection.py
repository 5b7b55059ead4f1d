"""Seeded fault injection: 500, HTML 503, connection resets before/after the write, slow answers."""

from __future__ import annotations

import random

import httpx
import pytest

from canvas_tui.simulator import ADMIN_TOKEN, LatencyModel, Simulator, build_app
from canvas_tui.simulator.faults import Fault, FaultInjector, FaultRates, parse_faults
from canvas_tui.simulator.testing import serve_in_thread
from canvas_tui.simulator.world import World
from tests.helpers import fast_config
from tests.simulator.conftest import USER_AGENT, FrozenClock, client_for

CREATE = "/api/v1/courses/sis_course_id:E411208/enrollments"
FORM = {"enrollment[user_id]": "sis_user_id:01103", "enrollment[enrollment_state]": "active"}
HEADERS = {"User-Agent": USER_AGENT, "Authorization": f"Bearer {ADMIN_TOKEN}"}


def faulty_app(**rates: float) -> Simulator:
    return build_app(
        fast_config(faults=FaultRates(**rates)), World.generate(7, users=50, courses=3)
    )


def test_parse_faults_spec() -> None:
    rates = parse_faults(
        "500=0.05, 503=0.02,reset=0.04,slow=0.01,slow_seconds=3,shape=0.03,drip=0.01,drip_seconds=1"
    )
    assert rates.bad_shape == 0.03 and rates.drip == 0.01 and rates.drip_seconds == 1
    assert rates.error_500 == 0.05 and rates.html_503 == 0.02
    assert rates.reset_before == rates.reset_after == 0.02
    assert rates.slow == 0.01 and rates.slow_seconds == 3
    assert not parse_faults(None).any
    for bad in ("500", "boom=0.1", "500=x", "500=2", "500=0.6,503=0.6"):
        with pytest.raises(ValueError):
            parse_faults(bad)


def test_fault_draws_are_seeded() -> None:
    rates = FaultRates(
        error_500=0.1,
        html_503=0.1,
        reset_before=0.1,
        reset_after=0.1,
        slow=0.1,
        bad_shape=0.1,
        drip=0.1,
    )
    draws_a = FaultInjector(rates, random.Random("s"))
    draws_b = FaultInjector(rates, random.Random("s"))
    sequence = [draws_a.draw() for _ in range(300)]
    assert sequence == [draws_b.draw() for _ in range(300)]
    assert set(sequence) == {*Fault, None}
    share = sum(1 for f in sequence if f is not None) / len(sequence)
    assert 0.55 < share < 0.85


async def test_503_is_html_from_the_load_balancer() -> None:
    app = faulty_app(html_503=1.0)
    async with client_for(app) as client:
        response = await client.post(CREATE, data=FORM)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.lstrip().startswith("<!DOCTYPE html>")
    assert "x-rate-limit-remaining" not in response.headers  # never reached Canvas
    assert app.stats()["enrollments_created"] == 0
    assert app.stats()["faults"] == {"html_503": 1}


async def test_reset_before_the_write_in_process() -> None:
    app = faulty_app(reset_before=1.0)
    async with client_for(app) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(CREATE, data=FORM)
    assert app.stats()["enrollments_created"] == 0
    assert app.stats()["faults"] == {"reset_before": 1}
    assert app.stats()["in_flight"] == 0


async def test_reset_after_the_write_in_process() -> None:
    app = faulty_app(reset_after=1.0)
    async with client_for(app) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(CREATE, data=FORM)
    assert app.stats()["enrollments_created"] == 1  # it happened; the client cannot know
    app.set_faults(FaultRates())
    async with client_for(app) as client:
        retry = await client.post(CREATE, data=FORM)
    assert retry.status_code == 200
    assert app.stats()["reposts"] == 1 and app.stats()["duplicates"] == 0


@pytest.mark.parametrize("http", ["h11", "httptools"])
@pytest.mark.parametrize(("fault", "created"), [("reset_before", 0), ("reset_after", 1)])
def test_resets_over_a_real_socket(fault: str, created: int, http: str) -> None:
    app = faulty_app(**{fault: 1.0})
    with (
        serve_in_thread(app, http=http) as base,
        httpx.Client(base_url=base, headers=HEADERS) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(CREATE, data=FORM)
        app.set_faults(FaultRates())
        after = client.get("/api/v1/users/self")  # the server lives on
    assert after.status_code == 200
    assert app.stats()["enrollments_created"] == created


def test_slow_answer_outlasts_a_client_timeout_and_holds_its_reservation() -> None:
    app = build_app(
        fast_config(time_scale=1.0, faults=FaultRates(slow=1.0, slow_seconds=0.8)),
        World.generate(7, users=50, courses=3),
    )
    with (
        serve_in_thread(app) as base,
        httpx.Client(base_url=base, headers=HEADERS, timeout=0.2) as client,
    ):
        with pytest.raises(httpx.ReadTimeout):
            client.post(CREATE, data=FORM)
        stats = app.stats()
        assert stats["in_flight"] == 1
        assert stats["bucket_level"] >= 35  # still holding its 50 units, minus a little leak


async def test_storm_fills_the_bucket_and_lowers_hwm() -> None:
    clock = FrozenClock()
    app = build_app(fast_config(time_scale=1.0, latency=LatencyModel.uniform(0.0), clock=clock))
    async with client_for(app) as client:
        assert (await client.get("/api/v1/users/self")).status_code == 200
        app.storm(fill=580)
        refused = await client.get("/api/v1/users/self")
        assert refused.status_code == 429
        app.storm(fill=0, hwm=40, duration=0.2)  # even an idle bucket is now "full"
        assert (await client.get("/api/v1/users/self")).status_code == 429
        clock.now += 0.25  # past the storm's end
        assert (await client.get("/api/v1/users/self")).status_code == 200
        assert app.stats()["hwm"] == 600


async def test_inspection_routes(app: Simulator) -> None:
    async with client_for(app, token=None) as client:
        await client.get("/api/v1/users/self")
        stats = (await client.get("/__sim__/stats")).json()
        assert stats["requests_by_status"] == {"401": 1}
        assert "demo-admin-token" not in str(stats)
        reset = (await client.post("/__sim__/reset-stats")).json()
        assert reset["requests"] == 0
        await client.post("/__sim__/faults", json={"error_500": 1.0})
        assert app.faults.rates.error_500 == 1.0
        bad = await client.post("/__sim__/faults", json={"nope": 1})
        assert bad.status_code == 400
        await client.post("/__sim__/storm", json={"hwm": 100})
        assert app.stats()["hwm"] == 100
        await client.post("/__sim__/calm")
        assert app.stats()["hwm"] == 600
