"""How many requests may be in flight: a model of Canvas's leaky bucket (CANVAS_API.md §1).

Canvas reserves `up_front` (50) units per request on arrival and refuses it when
`count + 50 >= hwm`, where `count` = the leaked cost of past requests (the *base*) plus 50 for
every other request in flight. So with `free = hwm - base`, at most `ceil(free / 50) - 1` requests
fit in flight at once (11 on an idle bucket with hwm 600), whatever the request rate.

Each response's `X-Rate-Limit-Remaining` is `hwm - count` at the moment it settled, with the other
requests still holding their 50, so `free ~ remaining + 50 * (others in flight)` — the hwm itself
never needs to be known (hosted Canvas may use 700). Requests that the client counts but the server
has not seen yet make that estimate too high, so the governor:
- takes the minimum of the last few estimates, each carried forward by the leak and the costs
  reported since (a single stale sample cannot open the gate),
- caps `free` at the hwm: the configured one, or the largest `remaining` ever seen if higher
  (that is a lower bound on the real hwm, e.g. hosted Canvas's 700),
- keeps `margin` units spare.
Between responses `free` grows by `leak` per second, so a full bucket reopens on a timer.

The request rate needs no separate limit: as the bucket fills, `free` shrinks and so does the
in-flight limit, until `limit / latency` matches `leak / cost` — the bucket-bound regime settles by
itself at the highest sustainable rate, having spent the headroom once.

A throttle still halves an AIMD ceiling (only once per burst), which then grows back by about one
per round trip. Without the headers (a proxy strips them) the ceiling alone governs, starting from a
conservative `fallback_limit` and probing upward.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import httpx

from canvas_tui.engine.state import GovernorState

_COST_SMOOTHING = 0.1  # EWMA weight of each new X-Request-Cost


def _header_float(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@dataclass(slots=True)
class Slot:
    """One request's place in flight; the client reports the answer through it."""

    seq: int
    governor: Governor
    reported: bool = False

    def report(self, headers: Mapping[str, str], *, throttled: bool) -> None:
        """Feed a response's throttle headers (any case-insensitive mapping) to the model."""
        if not self.reported:
            self.reported = True
            self.governor._observe(self.seq, headers, throttled=throttled)


class Governor:
    """Admission control for requests sharing one Canvas token (one bucket)."""

    def __init__(
        self,
        *,
        hwm: float = 600.0,
        up_front: float = 50.0,
        leak: float = 10.0,
        margin: float = 15.0,
        fallback_limit: int = 4,
        max_limit: int = 64,
        window: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hwm = hwm  # a prior only: used for display until `remaining` reveals more
        self.up_front = up_front
        self.leak = leak  # units per second of *our* clock (scale it for a time-scaled simulator)
        self.margin = margin
        self.fallback_limit = fallback_limit
        self.max_limit = max_limit
        self._clock = clock
        self._samples: deque[tuple[float, float, float]] = deque(maxlen=window)
        self._cost_total = 0.0  # sum of X-Request-Cost seen, to carry samples forward
        self._hwm_seen: float | None = None  # the largest `remaining` seen: real hwm >= this
        self._remaining: float | None = None
        self._avg_cost: float | None = None
        self._headers_seen = False
        self._answers = 0
        self._ceiling = math.inf  # AIMD ceiling; inf = the bucket model alone decides
        self._decrease_seq = -1  # throttles of requests sent before this seq are the same burst
        self._cap: int | None = None
        self._in_flight: set[int] = set()
        self._seq = 0
        self._changed: asyncio.Event | None = None
        self.requests = 0  # requests admitted (retries included)
        self.throttled = 0  # refusals reported
        self.max_in_flight = 0

    # ---- the model ------------------------------------------------------------------------------

    def free(self) -> float | None:
        """Estimated `hwm - base` now, or None before any response carried the headers."""
        if not self._samples:
            return None
        now = self._clock()
        free = min(
            sample + self.leak * max(0.0, now - at) - (self._cost_total - cost_then)
            for at, sample, cost_then in self._samples
        )
        assert self._hwm_seen is not None
        return min(free, max(self.hwm, self._hwm_seen))

    def _model_limit(self) -> int | None:
        free = self.free()
        if free is None:
            return None
        return max(0, math.ceil((free - self.margin) / self.up_front) - 1)

    @property
    def limit(self) -> int:
        """How many requests may be in flight right now."""
        if self._answers == 0:
            limit = 1  # probe: the first answer tells us how full the bucket already is
        elif not self._headers_seen:
            limit = max(1, math.floor(min(self._ceiling, self.max_limit)))
        else:
            model = self._model_limit()
            assert model is not None
            limit = min(model, self.max_limit)
            if math.isfinite(self._ceiling):
                limit = min(limit, max(1, math.floor(self._ceiling)))
        if self._cap is not None:
            limit = min(limit, self._cap)
        return limit

    def refill_wait(self) -> float:
        """Seconds until the model expects room for one more request (0 when there is room)."""
        free = self.free()
        if free is None or self.leak <= 0:
            return 0.0
        needed = self.up_front * (len(self._in_flight) + 1) + self.margin - free
        return max(0.0, needed / self.leak) + (0.001 if needed > 0 else 0.0)

    def set_cap(self, cap: int | None) -> None:
        """The operator's ceiling on requests in flight (None removes it)."""
        self._cap = None if cap is None else max(1, cap)
        self._wake()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def state(self) -> GovernorState:
        hwm = max(self.hwm, self._hwm_seen or 0.0)
        return GovernorState(
            limit=self.limit,
            in_flight=len(self._in_flight),
            remaining=self._remaining,
            high_water_mark=hwm,
            average_cost=self._avg_cost,
            cap=self._cap,
        )

    def _observe(self, seq: int, headers: Mapping[str, str], *, throttled: bool) -> None:
        self._answers += 1
        if not isinstance(headers, httpx.Headers):
            headers = httpx.Headers(dict(headers))  # header names are case-insensitive
        cost = _header_float(headers, "x-request-cost")
        remaining = _header_float(headers, "x-rate-limit-remaining")
        if cost is not None and cost >= 0:
            self._cost_total += cost
            self._avg_cost = (
                cost
                if self._avg_cost is None
                else self._avg_cost + _COST_SMOOTHING * (cost - self._avg_cost)
            )
        if remaining is not None:
            first = not self._headers_seen
            self._headers_seen = True
            self._remaining = remaining
            self._hwm_seen = remaining if self._hwm_seen is None else max(self._hwm_seen, remaining)
            others = len(self._in_flight) - (1 if seq in self._in_flight else 0)
            sample = remaining + self.up_front * others
            self._samples.append((self._clock(), sample, self._cost_total))
            if first and not throttled:
                self._ceiling = math.inf
        elif self._answers == 1:
            self._ceiling = float(self.fallback_limit)
        if throttled:
            self.throttled += 1
            if seq > self._decrease_seq:  # one decrease per burst of refusals
                self._decrease_seq = self._seq
                base = min(self._ceiling, max(1, len(self._in_flight)))
                self._ceiling = max(1.0, base / 2)
        elif math.isfinite(self._ceiling):
            self._ceiling += 1 / max(1.0, self._ceiling)  # about +1 per round trip
            model = self._model_limit() if self._headers_seen else None
            if model is not None and self._ceiling >= model + 2:
                self._ceiling = math.inf  # recovered: the model leads again
            elif model is None:
                self._ceiling = min(self._ceiling, float(self.max_limit))
        self._wake()

    # ---- admission ------------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """Wait until a request may go, hold its place while it is in flight."""
        if self._changed is None:
            self._changed = asyncio.Event()
        while len(self._in_flight) >= self.limit:
            self._changed.clear()
            # A full bucket reopens by leaking, with no event to announce it: wake on a timer too.
            refill = self.refill_wait()
            timeout = min(0.5, max(0.005, refill)) if refill > 0 else 0.5
            with suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=timeout)
        self._seq += 1
        seq = self._seq
        self._in_flight.add(seq)
        self.requests += 1
        self.max_in_flight = max(self.max_in_flight, len(self._in_flight))
        try:
            yield Slot(seq, self)
        finally:
            self._in_flight.discard(seq)
            self._wake()
