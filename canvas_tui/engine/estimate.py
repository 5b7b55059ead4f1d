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

The console's READY panel and ETA walk the governor's bucket level instead (`send_seconds`): the
governor keeps at most `ceil((hwm - level - margin) / up_front) - 1` requests in flight, each for
`latency` seconds; while that rate costs more than the leak the level rises and every `up_front`
units of it cost one place in flight, until the rate settles at `leak / cost`.

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

WRITE_FACTOR: Final = (1.5, 3.5)  # write latency (and cost) over a GET's: low, high
EFFICIENCY: Final = (1.0, 0.85)  # the share of T* the governor reaches: at best, at worst
DEFAULT_LATENCY: Final = 0.25  # seconds per request assumed before any answer
DEFAULT_COST: Final = 0.1  # X-Request-Cost assumed before any answer carried one
SPREAD: Final = 0.3  # how much slower than the model a run may go before anything is measured


@dataclass(frozen=True, slots=True)
class Bucket:
    """Canvas's leaky bucket as the governor models it (defaults: Canvas's own)."""

    hwm: float = 600.0
    up_front: float = 50.0
    leak: float = 10.0  # units per second of the caller's clock
    margin: float = 15.0  # the governor keeps this far below hwm
    cap: int = 64  # the governor's own ceiling on requests in flight

    def in_flight(self, level: float) -> int:
        """How many requests the governor lets be in flight with the bucket at `level`."""
        places = math.ceil((self.hwm - level - self.margin) / self.up_front) - 1
        return max(0, min(self.cap, places))

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

    def scaled(self, factor: float) -> TimeRange:
        return TimeRange(self.low * factor, self.high * factor)

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


def send_seconds(
    requests: float,
    *,
    latency: float,
    cost: float,
    bucket: Bucket = Bucket(),
    level: float = 0.0,
) -> float:
    """Seconds for the governor to send `requests`, the bucket starting at `level`.

    Walks the level from one number of places in flight to the next: it rises while the rate
    costs more than the leak and falls while it costs less, until it rests at an idle bucket's
    places or settles between two of them (at `leak / cost`)."""
    if requests <= 0:
        return 0.0
    latency = max(latency, 1e-6)
    steady = bucket.leak / cost if cost > 0 and bucket.leak > 0 else math.inf
    most = bucket.in_flight(0.0)
    seconds = latency  # the governor's probe: one request alone until the first answer
    left = float(requests)
    level = max(0.0, level)
    while True:
        places = bucket.in_flight(level)
        rate = places / latency
        growth = rate * cost - bucket.leak
        if growth > 0:  # the level rises to where one place fewer fits
            target = bucket.hwm - bucket.margin - bucket.up_front * places
            settles = (places - 1) / latency <= steady  # then it stays between the two
        elif growth < 0 and places < most and level > 0:  # it falls until one more fits
            target = max(0.0, bucket.hwm - bucket.margin - bucket.up_front * (places + 1) - 1e-9)
            settles = (places + 1) / latency > steady
        else:  # resting: an idle bucket, or exactly the leak
            return seconds + left / rate if rate > 0 else math.inf
        span = abs(target - level) / abs(growth)
        if rate * span >= left:
            return seconds + left / rate
        if settles:
            return seconds + span + (left - rate * span) / steady
        seconds += span
        left -= rate * span
        level = target


def estimate_range(
    requests: float,
    *,
    latency: float | None,
    cost: float | None,
    bucket: Bucket = Bucket(),
    level: float = 0.0,
    spread: float = SPREAD,
) -> TimeRange:
    """The model's time for `requests`, and `spread` slower in requests, latency and cost (write
    requests cost more than the GETs that measured them; retries and throttles add requests).
    Unknown latency or cost take the defaults."""
    latency = latency if latency is not None and latency > 0 else DEFAULT_LATENCY
    cost = cost if cost is not None and cost >= 0 else DEFAULT_COST
    low = send_seconds(requests, latency=latency, cost=cost, bucket=bucket, level=level)
    grow = 1.0 + max(0.0, spread)
    high = send_seconds(
        requests * grow, latency=latency * grow, cost=cost * grow, bucket=bucket, level=level
    )
    return TimeRange(low, max(low, high))


def remaining_range(
    records_left: int,
    *,
    requests_per_record: float,
    latency: float | None,
    cost: float | None,
    bucket: Bucket = Bucket(),
    level: float = 0.0,
    observed_rate: float | None = None,
    progress: float = 0.0,
) -> TimeRange:
    """A running sync's time left: the model with what was measured so far, and the rate
    records really finished at. The spread narrows as `progress` (0 to 1) grows."""
    if records_left <= 0:
        return TimeRange(0.0, 0.0)
    spread = SPREAD * (1.0 - min(1.0, max(0.0, progress))) ** 0.5
    model = estimate_range(
        records_left * max(requests_per_record, 0.0),
        latency=latency,
        cost=cost,
        bucket=bucket,
        level=level,
        spread=spread,
    )
    if observed_rate is None or observed_rate <= 0:
        return model
    observed = records_left / observed_rate
    return TimeRange(min(model.low, observed), max(model.high, observed))
