"""How long sending takes: the governor's model of Canvas's bucket with a latency and a cost.

Pure functions, shared by the console (the READY panel, the ETA) and `check --deep`.

The governor (canvas/governor.py) keeps at most `ceil((hwm - level - margin) / up_front) - 1`
requests in flight, each for `latency` seconds, so it sends `in_flight / latency` requests a
second. Each one adds `cost` to the bucket's level, which leaks `leak` units a second. While that
rate costs more than the leak, the level rises, and every `up_front` units of it cost one place
in flight; once it costs no more, the rate holds. A level that rose to its limit settles between
two places, at exactly `leak / cost` requests a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_LATENCY = 0.25  # seconds per request assumed before any answer
DEFAULT_COST = 0.1  # X-Request-Cost assumed before any answer carried one
SPREAD = 0.3  # how much slower than the model a run may go before anything is measured


@dataclass(frozen=True, slots=True)
class Bucket:
    """The governor's parameters (its defaults are Canvas's: CANVAS_API.md §1)."""

    hwm: float = 600.0
    up_front: float = 50.0
    leak: float = 10.0  # units a second
    margin: float = 15.0
    max_in_flight: int = 64

    def in_flight(self, level: float) -> int:
        """How many requests the governor lets be in flight with the bucket at `level`."""
        places = math.ceil((self.hwm - level - self.margin) / self.up_front) - 1
        return max(0, min(self.max_in_flight, places))


@dataclass(frozen=True, slots=True)
class TimeRange:
    low: float  # seconds
    high: float

    def scaled(self, factor: float) -> TimeRange:
        return TimeRange(self.low * factor, self.high * factor)


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
