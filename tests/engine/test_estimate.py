"""engine/estimate.py: the governor's throttle model (DESIGN.md) as the estimate's arithmetic,
and the bucket-level walk behind the console's READY panel and ETA (pure)."""

from __future__ import annotations

import pytest

from canvas_tui.engine.estimate import (
    WRITE_FACTOR,
    Bucket,
    estimate_range,
    format_duration,
    limit_seconds,
    remaining_range,
    remaining_seconds,
    run_seconds,
    send_seconds,
)


def test_limit_is_t_star_in_both_regimes() -> None:
    # BENCHMARKS.md's worlds: latency-bound (N 1000, 0.5 s, cost 0.1) and bucket-bound
    # (N 2000, 0.2 s, cost 1.0): T* = max(N latency / 11, (N cost - 550) / 10)
    assert limit_seconds(latency_seconds=1000 * 0.5, units=1000 * 0.1) == pytest.approx(500 / 11)
    assert limit_seconds(latency_seconds=2000 * 0.2, units=2000 * 1.0) == pytest.approx(145.0)
    assert Bucket().max_in_flight == 11 and Bucket().headroom == 550
    assert limit_seconds(latency_seconds=0, units=10) == 0  # headroom covers it


def test_run_range_brackets_writes_slower_than_the_gets_measured() -> None:
    span = run_seconds(reads=1, writes=1100, read_latency=0.1, read_cost=0.05)
    assert span.low == pytest.approx((1 + 1100 * WRITE_FACTOR[0]) * 0.1 / 11)
    assert span.low < span.middle < span.high
    assert span.contains(span.middle) and not span.contains(span.high * 1.01)
    more = run_seconds(reads=1, writes=2200, read_latency=0.1, read_cost=0.05)
    assert more.high > span.high  # more records, more time


def test_bucket_bound_runs_count_the_leak() -> None:
    fast = Bucket(leak=10.0)
    slow = Bucket(leak=5.0)
    kw = {"reads": 0, "writes": 10_000, "read_latency": 0.01, "read_cost": 1.0}
    assert run_seconds(**kw, bucket=slow).low > run_seconds(**kw, bucket=fast).low  # type: ignore[arg-type]


def test_remaining_spends_the_free_headroom_once() -> None:
    assert remaining_seconds(requests_left=0, latency=0.3, cost=1, bucket_free=600) == 0
    full_bucket = remaining_seconds(requests_left=100, latency=0.01, cost=1, bucket_free=50)
    empty_bucket = remaining_seconds(requests_left=100, latency=0.01, cost=1, bucket_free=600)
    assert full_bucket == pytest.approx(10.0) and empty_bucket < full_bucket


def test_durations_never_read_zero_for_time_spent() -> None:
    assert format_duration(0.04) == "40 ms"
    assert format_duration(15.6) == "16s"
    assert format_duration(600) == "10 min"


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
