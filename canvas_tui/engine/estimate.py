"""How long a run will take, from the governor's throttle model (DESIGN.md): pure arithmetic.

A finite run of N requests, each holding `latency` seconds and costing `cost` units, under a
bucket with `hwm` and `up_front` per request in flight, leaking `leak` units a second, takes at
least

    T* = max(N · latency / N_max, (N · cost - headroom) / leak)

with N_max = ceil(hwm / up_front) - 1 requests in flight (11 on an idle 600 bucket) and headroom
= hwm - up_front (550) that a run may spend once. Reads and writes share one bucket, so their
latency-seconds and their units add up before the max.

What a preflight can measure is GETs: a check must never write. Canvas's writes (an enrollment
create runs a transaction, callbacks and a cache touch) are slower and costlier than a GET, so
the write latency and cost are the measured GET figures times a factor in WRITE_FACTOR — a
prior, which is why the answer is a range and the console corrects it from the real answers as
the run goes. The governor reaches about 0.93-0.95 of T* (BENCHMARKS.md), hence EFFICIENCY.

The console's ETA uses this module too; nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

WRITE_FACTOR: Final = (1.5, 3.5)  # write latency (and cost) over a GET's: low, high
EFFICIENCY: Final = (1.0, 0.85)  # the share of T* the governor reaches: at best, at worst


@dataclass(frozen=True, slots=True)
class Bucket:
    """Canvas's leaky bucket as the governor models it (defaults: Canvas's own)."""

    hwm: float = 600.0
    up_front: float = 50.0
    leak: float = 10.0  # units per second of the caller's clock

    @property
    def max_in_flight(self) -> int:
        return max(1, math.ceil(self.hwm / self.up_front) - 1)

    @property
    def headroom(self) -> float:
        return max(0.0, self.hwm - self.up_front)


@dataclass(frozen=True, slots=True)
class TimeRange:
    low: float  # seconds
    high: float

    @property
    def middle(self) -> float:
        return math.sqrt(self.low * self.high) if self.low > 0 else self.high / 2

    def contains(self, seconds: float) -> bool:
        return self.low <= seconds <= self.high

    def __str__(self) -> str:
        return f"{format_duration(self.low)}–{format_duration(self.high)}"


def limit_seconds(*, latency_seconds: float, units: float, bucket: Bucket = Bucket()) -> float:
    """T*: the fastest a run can go, given the sum of its requests' latencies and their units."""
    by_latency = latency_seconds / bucket.max_in_flight
    by_bucket = (units - bucket.headroom) / bucket.leak if bucket.leak > 0 else 0.0
    return max(by_latency, by_bucket, 0.0)


def run_seconds(
    *,
    reads: int,
    writes: int,
    read_latency: float,
    read_cost: float,
    bucket: Bucket = Bucket(),
) -> TimeRange:
    """The range a run of `reads` GETs and `writes` writes should take, from measured GETs."""

    def at(factor: float, efficiency: float) -> float:
        latency_seconds = (reads + writes * factor) * read_latency
        units = (reads + writes * factor) * read_cost
        return limit_seconds(latency_seconds=latency_seconds, units=units, bucket=bucket) / (
            efficiency
        )

    return TimeRange(at(WRITE_FACTOR[0], EFFICIENCY[0]), at(WRITE_FACTOR[1], EFFICIENCY[1]))


def remaining_seconds(
    *,
    requests_left: int,
    latency: float,
    cost: float,
    bucket_free: float,
    bucket: Bucket = Bucket(),
) -> float:
    """Mid-run: the time left for `requests_left` requests like the ones seen so far (their
    measured latency and cost), with `bucket_free` units of the bucket's headroom unspent."""
    by_latency = requests_left * latency / bucket.max_in_flight
    spare = max(0.0, bucket_free - bucket.up_front)
    by_bucket = (requests_left * cost - spare) / bucket.leak if bucket.leak > 0 else 0.0
    return max(by_latency, by_bucket, 0.0)


def format_duration(seconds: float) -> str:
    """`40 ms`, `0.4s`, `12s`, `3 min`, `1.5 h`: never "0.0s" for something that took time."""
    if seconds < 0.1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
