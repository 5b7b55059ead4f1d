"""The send-time estimate: the governor's bucket model with a latency and a cost (pure)."""

from __future__ import annotations

import pytest

from canvas_tui.engine.estimate import (
    Bucket,
    estimate_range,
    remaining_range,
    send_seconds,
)


def test_cheap_requests_go_as_fast_as_the_places_in_flight_allow() -> None:
    # an idle bucket fits 11 in flight (ceil(585 / 50) - 1); 0.01 units never fill it
    assert Bucket().in_flight(0.0) == 11
    seconds = send_seconds(1100, latency=0.5, cost=0.01)
    assert seconds == pytest.approx(0.5 + 1100 * 0.5 / 11)


def test_dear_requests_settle_at_the_leak() -> None:
    # 11 / 0.25 s = 44 a second would cost 44 units a second; the bucket leaks 10: the level
    # rises until the rate is leak / cost = 10 a second
    many = send_seconds(100_000, latency=0.25, cost=1.0)
    assert many == pytest.approx(100_000 / 10, rel=0.01)
    few = send_seconds(20, latency=0.25, cost=1.0)
    assert few == pytest.approx(0.25 + 20 / 44, rel=0.01)  # the headroom is spent first


def test_a_full_bucket_is_slower_until_it_drains() -> None:
    idle = send_seconds(3000, latency=0.25, cost=0.1)
    full = send_seconds(3000, latency=0.25, cost=0.1, level=480.0)
    assert Bucket().in_flight(480.0) == 2
    assert idle < full < idle + 480 / 10 + 1  # at worst it waits for the whole level to leak


def test_more_latency_cost_or_requests_never_take_less_time() -> None:
    base = send_seconds(2000, latency=0.2, cost=0.3)
    assert send_seconds(2000, latency=0.3, cost=0.3) > base
    assert send_seconds(2000, latency=0.2, cost=0.4) > base
    assert send_seconds(2500, latency=0.2, cost=0.3) > base
    assert send_seconds(0, latency=0.2, cost=0.3) == 0.0


def test_the_range_is_the_model_and_the_model_gone_slower() -> None:
    r = estimate_range(3000, latency=0.25, cost=0.3)
    assert r.low == send_seconds(3000, latency=0.25, cost=0.3)
    assert r.high > r.low * 1.2
    assumed = estimate_range(3000, latency=None, cost=None)
    assert assumed.low == send_seconds(3000, latency=0.25, cost=0.1)


def test_the_remaining_range_narrows_as_the_run_goes_and_heeds_the_real_rate() -> None:
    start = remaining_range(1000, requests_per_record=1.0, latency=0.25, cost=0.3, progress=0.0)
    late = remaining_range(1000, requests_per_record=1.0, latency=0.25, cost=0.3, progress=0.9)
    assert late.low == start.low and late.high < start.high
    done = remaining_range(1000, requests_per_record=1.0, latency=0.25, cost=0.3, progress=1.0)
    assert done.low == done.high
    slow = remaining_range(
        1000, requests_per_record=1.0, latency=0.25, cost=0.3, progress=0.5, observed_rate=5.0
    )
    assert slow.high == pytest.approx(200.0)  # 1,000 left at the 5 a second really seen
    assert remaining_range(0, requests_per_record=1.0, latency=None, cost=None).high == 0.0
