"""How many requests may be in flight: a model of Canvas's leaky bucket (CANVAS_API.md §1).

Canvas reserves `up_front` (50) units per request on arrival and refuses it when
`count + 50 >= hwm`, where `count` = the leaked cost of past requests (the *base*) plus 50 for
every other request in flight. So with `free = hwm - base`, at most `ceil(free / 50) - 1` requests
fit in flight at once (11 on an idle bucket with hwm 600), whatever the request rate.

The base is modelled from the answers: it grows by each `X-Request-Cost` and leaks `leak` units a
second; each `X-Rate-Limit-Remaining` (`hwm - count` when that request settled, the others still
holding their 50) then bounds it: `hwm - remaining - 50 * others <= base <= hwm - remaining`.
`others` is what we count in flight; on a busy host some of those have not reached Canvas yet (or
were answered but not read), which only loosens the lower bound, so the cost model holds the level
where the headers cannot prove it. The hwm is never assumed smaller than the largest `remaining`
seen (hosted Canvas may use 700); `margin` units stay spare.

The request rate needs no separate limit: as the bucket fills, `free` shrinks and so does the
in-flight limit, until `limit / latency` matches `leak / cost` — the bucket-bound regime settles by
itself at the highest sustainable rate, having spent the headroom once.

A throttle means the model was wrong here (another job on the same token, a misconfigured leak):
the governor halves an AIMD ceiling once per burst, which grows back by about one per round trip,
and adds `MARGIN_STEP` spare units that decay over the next clean answers. Without the headers
(a proxy strips them) the ceiling alone governs, from a conservative `fallback_limit` upward.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

import httpx

from canvas_tui.canvas.governor_state import GovernorState

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

    MARGIN_STEP = 25.0  # spare units added per throttle burst
    MAX_EXTRA_MARGIN = 150.0

    def __init__(
        self,
        *,
        hwm: float = 600.0,
        up_front: float = 50.0,
        leak: float = 10.0,
        margin: float = 15.0,
        fallback_limit: int = 4,
        max_limit: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hwm = hwm  # a prior only: used for display until `remaining` reveals more
        self.up_front = up_front
        self.leak = leak  # units per second of *our* clock (scale it for a time-scaled simulator)
        self.margin = margin
        self.fallback_limit = fallback_limit
        self.max_limit = max_limit
        self._clock = clock
        self._base = 0.0  # the modelled bucket level (cost of past requests, leaking)
        self._base_at = clock()
        self._hwm_seen: float | None = None  # the largest `remaining` seen: real hwm >= this
        self._remaining: float | None = None
        self._avg_cost: float | None = None
        self._headers_seen = False
        self._answers = 0
        self._ceiling = math.inf  # AIMD ceiling; inf = the bucket model alone decides
        self._decrease_seq = -1  # throttles of requests sent before this seq are the same burst
        self._cap: int | None = None
        self._in_flight: set[int] = set()
        # Granted places whose task has resumed, i.e. whose request is (about to be) on the wire;
        # a place granted but not yet running cannot be in any `remaining` Canvas reported.
        self._sending: set[int] = set()
        self._extra_margin = 0.0  # learnt: grows on each throttle burst, decays on clean answers
        self._seq = 0
        self._waiters: deque[asyncio.Future[int]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        # Called after each answer is modelled (the limit may have risen): the runner's dispatcher
        # waits on answers instead of polling (issue 14).
        self._listeners: list[Callable[[], None]] = []
        self.requests = 0  # requests admitted (retries included)
        self.throttled = 0  # refusals reported
        self.max_in_flight = 0

    # ---- the model ------------------------------------------------------------------------------

    def _hwm(self) -> float:
        return max(self.hwm, self._hwm_seen or 0.0)

    def _base_now(self) -> float:
        return max(0.0, self._base - self.leak * max(0.0, self._clock() - self._base_at))

    def free(self) -> float | None:
        """Estimated `hwm - base` now, or None before any response carried the headers."""
        if not self._headers_seen:
            return None
        return self._hwm() - self._base_now()

    def _update_base(self, cost: float | None, remaining: float | None, others: int) -> None:
        """Advance the bucket model by the leak and this answer's cost, then keep it inside what
        `remaining` proves: `hwm - remaining - 50 * others <= base <= hwm - remaining`."""
        now = self._clock()
        base = self._base_now() + (cost or 0.0)
        if remaining is not None:
            hwm = self._hwm()
            base = min(base, hwm - remaining)
            base = max(base, hwm - remaining - self.up_front * others)
        self._base, self._base_at = max(0.0, base), now

    def _model_limit(self) -> int | None:
        free = self.free()
        if free is None:
            return None
        return max(0, math.ceil((free - self.effective_margin) / self.up_front) - 1)

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
        needed = self.up_front * (len(self._in_flight) + 1) + self.effective_margin - free
        return max(0.0, needed / self.leak) + (0.001 if needed > 0 else 0.0)

    def leak_raises_limit(self) -> bool:
        """Whether the bucket's leak alone (no answer, no `set_cap`) may still raise `limit`: only
        while the modelled bucket binds (not the first probe, the AIMD ceiling, the cap or
        `max_limit`) and holds some leaked cost. Every other rise follows an answer, which the
        listeners hear (`listen`)."""
        if self._answers == 0 or not self._headers_seen or self.leak <= 0:
            return False
        if self._base_now() <= 0:
            return False
        model = self._model_limit()
        assert model is not None
        # the most an empty bucket allows, under every other bound
        bound = min(
            max(0, math.ceil((self._hwm() - self.effective_margin) / self.up_front) - 1),
            self.max_limit,
        )
        if math.isfinite(self._ceiling):
            bound = min(bound, max(1, math.floor(self._ceiling)))
        if self._cap is not None:
            bound = min(bound, self._cap)
        return model < bound

    def listen(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` after each answer is modelled; returns what stops it."""
        self._listeners.append(callback)

        def stop() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return stop

    def set_cap(self, cap: int | None) -> None:
        """The operator's ceiling on requests in flight (None removes it)."""
        self._cap = None if cap is None else max(1, cap)
        self._wake()

    @property
    def effective_margin(self) -> float:
        return self.margin + self._extra_margin

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
            leak=self.leak,
            margin=self.effective_margin,
        )

    def _observe(self, seq: int, headers: Mapping[str, str], *, throttled: bool) -> None:
        self._answers += 1
        if not isinstance(headers, httpx.Headers):
            headers = httpx.Headers(dict(headers))  # header names are case-insensitive
        cost = _header_float(headers, "x-request-cost")
        remaining = _header_float(headers, "x-rate-limit-remaining")
        if cost is not None and cost >= 0:
            self._avg_cost = (
                cost
                if self._avg_cost is None
                else self._avg_cost + _COST_SMOOTHING * (cost - self._avg_cost)
            )
        others = len(self._sending) - (1 if seq in self._sending else 0)
        if remaining is not None:
            first = not self._headers_seen
            self._headers_seen = True
            self._remaining = remaining
            self._hwm_seen = remaining if self._hwm_seen is None else max(self._hwm_seen, remaining)
            if first and not throttled:
                self._ceiling = math.inf
        if self._headers_seen:
            self._update_base(cost, remaining, others)
        elif self._answers == 1:
            self._ceiling = float(self.fallback_limit)
        if throttled:
            self.throttled += 1
            if seq > self._decrease_seq:  # one decrease per burst of refusals
                self._decrease_seq = self._seq
                # The model let a refused request through, so it overestimates the room here
                # (clients sharing the token, answers read late on a busy host): keep more spare.
                self._extra_margin = min(
                    self.MAX_EXTRA_MARGIN, self._extra_margin + self.MARGIN_STEP
                )
                base = min(self._ceiling, max(1, len(self._in_flight)))
                self._ceiling = max(1.0, base / 2)
        else:
            self._extra_margin = max(0.0, self._extra_margin - self.MARGIN_STEP / 200)
        if not throttled and math.isfinite(self._ceiling):
            self._ceiling += 1 / max(1.0, self._ceiling)  # about +1 per round trip
            model = self._model_limit() if self._headers_seen else None
            if model is not None and self._ceiling >= model + 2:
                self._ceiling = math.inf  # recovered: the model leads again
            elif model is None:
                self._ceiling = min(self._ceiling, float(self.max_limit))
        self._wake()
        for listener in self._listeners:
            listener()

    # ---- admission ------------------------------------------------------------------------------
    # Waiters queue in FIFO order and are granted their place directly (no thundering herd: a
    # release wakes only as many waiters as there is room for). A full bucket reopens by leaking,
    # with no release to announce it, so a timer re-checks when the model expects room.

    def _admit(self) -> int:
        self._seq += 1
        self._in_flight.add(self._seq)
        self.requests += 1
        self.max_in_flight = max(self.max_in_flight, len(self._in_flight))
        return self._seq

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and waiters[0].done():  # cancelled while queued
            waiters.popleft()
        if not waiters:
            return
        room = self.limit - len(self._in_flight)
        while room > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._admit())
                room -= 1
        if waiters:
            loop = asyncio.get_running_loop()
            if self._timer is not None and self._timer_loop is not loop:
                self._timer = None  # left behind by an earlier event loop
            if self._timer is None:
                delay = min(0.5, max(0.005, self.refill_wait()))
                self._timer = loop.call_later(delay, self._on_timer)
                self._timer_loop = loop

    def _on_timer(self) -> None:
        self._timer = None
        self._wake()

    def _release(self, seq: int) -> None:
        self._in_flight.discard(seq)
        self._sending.discard(seq)
        self._wake()

    def slot(self) -> _Place:
        """Wait until a request may go, hold its place while it is in flight (`async with`)."""
        return _Place(self)

    async def _take(self) -> int:
        """A place in flight: at once when there is room and nobody queues, else in turn."""
        if not self._waiters and len(self._in_flight) < self.limit:
            seq = self._admit()
        else:
            waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            self._wake()
            try:
                seq = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release(waiter.result())  # granted just as we were cancelled
                else:
                    waiter.cancel()
                raise
        self._sending.add(seq)
        return seq


class _Place:
    """`Governor.slot()`: a plain async context manager, not a generator-based one (issue 14:
    one per request)."""

    __slots__ = ("_governor", "_seq")

    def __init__(self, governor: Governor) -> None:
        self._governor = governor
        self._seq: int | None = None

    async def __aenter__(self) -> Slot:
        self._seq = await self._governor._take()
        return Slot(self._seq, self._governor)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._seq is not None:
            seq, self._seq = self._seq, None
            self._governor._release(seq)
