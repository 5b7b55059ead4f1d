"""Retry policy: which failures are retried, how long to wait, and the events the UI shows.

Retried: THROTTLED, SERVER and NETWORK (errors.RETRYABLE). Never retried: 400, 401, 404 — the same
request would get the same answer — and AUTH / UNSAFE are fatal for the whole run.

Waits are exponential with jitter and a cap. After a throttle refusal the wait is also at least the
time the governor's bucket model needs to have room again, so a retry does not walk straight into
a second refusal. The sleep is injectable: the engine passes one that honours pause / cancel, tests
pass one that returns at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from canvas_tui.canvas.errors import CanvasError, Category

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
# (the error of the attempt that just failed, its 1-based number, will it be retried, the wait)
FailureHook = Callable[[CanvasError, int, bool, float | None], None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8  # server errors and network failures
    throttle_attempts: int = (
        20  # throttles: the governor makes them rare; a storm must not fail rows
    )
    # network failures before Canvas has answered even once: a wrong URL or a network that
    # cannot reach it is more likely than a blip, so say so in seconds, not after a minute
    unreached_attempts: int = 3
    initial: float = 0.5  # first wait after a server/network failure, seconds
    throttle_initial: float = 0.1  # first wait after a throttle (plus whatever the bucket needs)
    maximum: float = 30.0
    jitter: float = 0.25  # up to this fraction of the wait is added at random

    def backoff(self, error: CanvasError, attempt: int, rng: random.Random) -> float:
        start = self.throttle_initial if error.category is Category.THROTTLED else self.initial
        wait: float = min(self.maximum, start * 2.0 ** (attempt - 1))
        return min(self.maximum, wait * (1 + self.jitter * rng.random()))

    def attempts_for(self, error: CanvasError, *, reached: bool = True) -> int:
        if error.category is Category.THROTTLED:
            return self.throttle_attempts
        if error.category is Category.NETWORK and not reached:
            return min(self.unreached_attempts, self.max_attempts)
        return self.max_attempts


@dataclass(slots=True)
class CircuitBreaker:
    """Trips when Canvas looks gone rather than flaky: `failures` network failures in a row,
    spanning at least `seconds`, with no answer in between.

    Per-record retries alone would fail every record after its ~60 s of back-off, forever, when
    Canvas is down. Both bounds matter: a short outage (a restart behind the load balancer)
    gives many failures in a second but ends before `seconds`, and rare random resets never
    line up `failures` in a row (0.3 ** 20 at a 30 % fault rate).
    """

    failures: int = 20
    seconds: float = 15.0
    _count: int = 0
    _since: float | None = None

    def record(self, unreachable: bool, now: float) -> bool:
        """Count one attempt's outcome; True when the breaker trips."""
        if not unreachable:
            self.reset()
            return False
        self._count += 1
        if self._since is None:
            self._since = now
        return self._count >= self.failures and now - self._since >= self.seconds

    def reset(self) -> None:
        self._count, self._since = 0, None


# Gateway answers that mean "Canvas is not there" as much as a refused connection does.
UNREACHABLE_STATUSES = frozenset({502, 503, 504})


async def call_with_retry(
    attempt: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    on_failure: FailureHook,
    sleep: Sleep | None = None,
    refill_wait: Callable[[], float] | None = None,
    reached: Callable[[], bool] | None = None,
    rng: random.Random | None = None,
) -> T:
    """Run `attempt(number)` until it returns, a non-retryable error, or the budget runs out.

    `on_failure` is told about every failed attempt, including the last (with will_retry=False),
    before the error propagates. `reached()` says whether the server has ever answered. A plain
    loop: the first attempt, which nearly always succeeds, costs no retry machinery (issue 14).
    """
    number = 0
    while True:
        number += 1
        try:
            return await attempt(number)
        except CanvasError as error:
            answered = reached() if reached is not None else True
            if not error.retryable or number >= policy.attempts_for(error, reached=answered):
                on_failure(error, number, False, None)
                raise
            rng = rng or random.Random()
            delay = policy.backoff(error, number, rng)
            if error.category is Category.THROTTLED and refill_wait is not None:
                delay = max(delay, refill_wait())
            on_failure(error, number, True, delay)
        await (sleep or asyncio.sleep)(delay)
