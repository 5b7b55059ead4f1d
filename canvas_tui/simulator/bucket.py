"""Canvas's leaky bucket, per client identifier (../shared/CANVAS_API.md §1).

The arithmetic mirrors canvas-lms `increment_bucket.lua` step by step: leak only when the count is
positive (the leaked value may go below zero before the amount is added), add, then clamp to
0..maximum. A request reserves `up_front` on arrival, is refused when the count *after* that
reservation is >= hwm, and settles `cost - up_front` when it finishes. The time scale multiplies the
leak, so a world that runs k times faster drains k times faster and keeps the same shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass
class BucketSettings:
    hwm: float = 600.0
    maximum: float = 800.0
    outflow: float = 10.0  # units per (world) second
    up_front: float = 50.0
    time_scale: float = 1.0


@dataclass
class LeakyBucket:
    settings: BucketSettings = field(default_factory=BucketSettings)
    clock: Clock = time.monotonic
    count: float = 0.0
    last_touched: float | None = None

    def increment(self, amount: float) -> float:
        """One atomic `increment_bucket` call; returns the stored count."""
        now = self.clock()
        last = now if self.last_touched is None else self.last_touched
        count = self.count
        if count > 0:
            loss = self.settings.outflow * self.settings.time_scale * (now - last)
            if loss > 0:
                count -= loss
        count += amount
        count = min(count, self.settings.maximum)
        count = max(count, 0.0)
        self.count = count
        self.last_touched = now
        return count

    def reserve(self) -> bool:
        """Charge the up-front cost; False means the request must be refused."""
        return self.increment(self.settings.up_front) < self.settings.hwm

    def settle(self, cost: float) -> float:
        """Give the reservation back and charge the real cost; returns the count after."""
        return self.increment(cost - self.settings.up_front)

    def level(self) -> float:
        """The count as it stands now (leaked, without writing)."""
        now = self.clock()
        count = self.count
        if count > 0 and self.last_touched is not None:
            count -= (
                self.settings.outflow * self.settings.time_scale * max(0.0, now - self.last_touched)
            )
        return max(0.0, count)

    def remaining(self) -> float:
        """`X-Rate-Limit-Remaining` after the last write: hwm - count (may be negative)."""
        return self.settings.hwm - self.count

    def fill(self, level: float) -> None:
        """Set the count directly (throttle storms in fault tests)."""
        self.count = max(0.0, min(level, self.settings.maximum))
        self.last_touched = self.clock()


def ruby_float(value: float) -> str:
    """Ruby's Float#to_s for the values a bucket produces: `600.0`, `599.95`, `-2.0`."""
    text = repr(round(float(value), 6))
    return "0.0" if text == "-0.0" else text
