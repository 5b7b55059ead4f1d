"""What the governor (governor.py) reports about itself: a snapshot the engine carries in RunState.

Its own module, beside the governor, so that `engine.state` (which every view imports) can name it
without loading httpx, and so that canvas/ never has to import the engine for it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GovernorState:
    limit: int  # how many requests the governor lets be in flight right now
    in_flight: int
    remaining: float | None  # last X-Rate-Limit-Remaining seen (None before any response)
    high_water_mark: float  # the bucket's hwm as the governor models it (600 by default)
    average_cost: float | None  # moving average of X-Request-Cost
    cap: int | None  # operator's concurrency cap, None = no cap
    leak: float = 10.0  # units a second the governor models the bucket leaking (its estimate)
    margin: float = 15.0  # units it keeps spare (grows after throttles)
