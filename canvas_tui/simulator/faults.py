"""Seeded fault injection: what a Canvas behind load balancers does on a bad day.

Each API request draws once from the simulator's seeded RNG and gets at most one fault:

- `error_500`: the app raises; Canvas answers 500 with an `error_report_id`. The write does not happen.
- `html_503`: a load balancer answers 503 with an HTML page; the request never reaches Canvas, so it
  neither touches the bucket nor carries rate-limit headers.
- `reset_before`: the connection drops before the write took effect.
- `reset_after`: the write took effect, then the connection drops: the client cannot tell the two
  resets apart, which is the point (a retried POST must be idempotent).
- `slow`: the answer takes `slow_seconds` (world seconds, divided by the time scale like every
  latency), long enough to outlast a client timeout; the request holds its bucket reservation all
  along. `httpx.ASGITransport` applies no timeouts, so in process a slow answer is only late: test
  client timeouts over a socket (`testing.serve_in_thread`).
- `bad_shape`: a broken gateway or proxy answers 200 with JSON of the wrong shape (`{}`, `[]`,
  `{"id": null}`, ...) instead of Canvas's; the request never reached Canvas, so nothing was written.
- `drip`: Canvas's real answer (the write happened), sent one byte every `drip_seconds` (world
  seconds, scaled like `slow`): no single read waits long, so only a total deadline stops it.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

import httpx


class Fault(StrEnum):
    ERROR_500 = "error_500"
    HTML_503 = "html_503"
    RESET_BEFORE = "reset_before"
    RESET_AFTER = "reset_after"
    SLOW = "slow"
    # new faults go last: a seeded draw of the faults above stays what it was
    BAD_SHAPE = "bad_shape"
    DRIP = "drip"


class SimulatedConnectionReset(httpx.RemoteProtocolError):
    """Raised by the app after the response has started, to drop the connection.

    Over uvicorn, an exception after `http.response.start` makes the server close the socket
    mid-response, so the client sees a protocol error. Through `httpx.ASGITransport` the exception
    propagates to the caller as-is, and because it *is* an `httpx.RemoteProtocolError` the client
    sees the same exception type in both cases.
    """

    def __init__(self, message: str = "simulated connection reset") -> None:
        super().__init__(message)


@dataclass
class FaultRates:
    error_500: float = 0.0
    html_503: float = 0.0
    reset_before: float = 0.0
    reset_after: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 45.0
    bad_shape: float = 0.0
    drip: float = 0.0
    drip_seconds: float = 0.25  # between two bytes of a dripped answer

    @property
    def any(self) -> bool:
        return any(getattr(self, f.value) > 0 for f in Fault)


# Names accepted in a --faults spec, besides the field names themselves.
_ALIASES = {
    "500": ("error_500",),
    "503": ("html_503",),
    "reset": ("reset_before", "reset_after"),  # split evenly
    "slow": ("slow",),
    "shape": ("bad_shape",),
}


def parse_faults(spec: str | None) -> FaultRates:
    """`"500=0.05,503=0.02,reset=0.02,slow=0.01,slow_seconds=5"` -> FaultRates; ValueError if bad."""
    rates = FaultRates()
    if not spec:
        return rates
    names = {f.name for f in fields(FaultRates)}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"fault {part!r}: expected NAME=RATE, e.g. 500=0.05")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"fault {key!r}: {raw!r} is not a number") from None
        targets = _ALIASES.get(key, (key,) if key in names else ())
        if not targets:
            known = ", ".join(sorted({*names, *_ALIASES}))
            raise ValueError(f"unknown fault {key!r}; expected one of: {known}")
        if key not in ("slow_seconds", "drip_seconds") and not 0.0 <= value <= 1.0:
            raise ValueError(f"fault {key!r}: rate {value} is not between 0 and 1")
        for target in targets:
            setattr(rates, target, value / len(targets))
    total = sum(getattr(rates, f.value) for f in Fault)
    if total > 1.0:
        raise ValueError(f"fault rates add up to {total:.3f}, more than 1")
    return rates


class FaultInjector:
    def __init__(self, rates: FaultRates, rng: random.Random) -> None:
        self.rates = rates
        self.rng = rng

    def draw(self) -> Fault | None:
        if not self.rates.any:
            return None
        roll = self.rng.random()
        for fault in Fault:
            roll -= getattr(self.rates, fault.value)
            if roll < 0:
                return fault
        return None


HTML_503 = (
    b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>\n"
    b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to service your "
    b"request. Please try again later.</p></body></html>\n"
)


# What proxies and broken gateways have been seen to answer with a 200: valid JSON, wrong shape.
BAD_SHAPES: tuple[object, ...] = ({}, [], {"id": None}, {"id": "x"}, None, {"errors": []})


def bad_shape_body(rng: random.Random) -> bytes:
    return json.dumps(rng.choice(BAD_SHAPES)).encode()


async def drip(
    send: Callable[[dict[str, Any]], Awaitable[None]],
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    interval: float,
    sleep: Callable[[float], Awaitable[None]],
) -> None:
    """Send an answer one byte at a time, `interval` seconds apart."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    for k in range(len(body)):
        await send({"type": "http.response.body", "body": body[k : k + 1], "more_body": True})
        await sleep(interval)
    await send({"type": "http.response.body", "body": b""})


async def until_disconnect(
    work: Coroutine[Any, Any, None], receive: Callable[[], Awaitable[dict[str, Any]]] | None
) -> None:
    """Run `work` until it ends or the client hangs up (a client that gave up on a dripped
    answer must not keep the server dripping into a closed socket)."""
    if receive is None:
        await work
        return
    task = asyncio.ensure_future(work)

    async def hang_up() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(hang_up())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            pending.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
