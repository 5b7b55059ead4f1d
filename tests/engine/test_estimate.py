"""engine/estimate.py: the governor's throttle model (DESIGN.md) as the estimate's arithmetic."""

from __future__ import annotations

import pytest

from canvas_tui.engine.estimate import (
    WRITE_FACTOR,
    Bucket,
    format_duration,
    limit_seconds,
    remaining_seconds,
    run_seconds,
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
