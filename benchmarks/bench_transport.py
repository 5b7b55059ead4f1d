"""The client's CPU per request over each transport, in one process (issue 14).

    .venv/bin/python benchmarks/bench_transport.py [--requests 2000] [--kinds httpx,aiohttp,http1,bare]

CanvasClient GETs `users/self` 11 at a time from `canvas-tui simulate --time-scale 1000` (so the
client, not the latency, sets the pace) over: `httpx` = httpx's own transport (httpcore, h11,
anyio); `aiohttp` = benchmarks/aiohttp_transport.py (the default before http1); `http1` = canvas/http1.py,
our own HTTP/1.1, the default; `bare` = aiohttp alone, no CanvasClient, the floor. The figure is this process's CPU (time.process_time) per request; the simulator runs in its
own process. Each kind runs in turn, the list twice, so the load is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from aiohttp_transport import AiohttpTransport  # the default before http1: the comparison

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.governor import Governor
from canvas_tui.canvas.http1 import Http1Transport
from canvas_tui.simulator.testing import simulate_process

TOKEN = "bench-token-not-a-secret"
IN_FLIGHT = 11


async def _timed(one: Callable[[], Awaitable[None]], n: int) -> tuple[float, float]:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def gated() -> None:
        async with gate:
            await one()

    await gated()  # the connection and the first answer are not timed
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(gated() for _ in range(n)))
    return time.process_time() - cpu, time.perf_counter() - wall


async def client_run(base: str, kind: str, n: int) -> tuple[float, float]:
    transport: httpx.AsyncBaseTransport | None = None
    if kind == "httpx":
        transport = httpx.AsyncHTTPTransport()
    elif kind == "aiohttp":
        transport = AiohttpTransport(httpx.Limits(max_connections=100))
    elif kind == "http1":
        transport = Http1Transport(httpx.Limits(max_connections=100))
    async with CanvasClient(
        base, TOKEN, transport=transport, governor=Governor(leak=1000)
    ) as client:

        async def one() -> None:
            await client.request("GET", "users/self")

        return await _timed(one, n)


async def bare_run(base: str, n: int) -> tuple[float, float]:
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with session.get(f"{base}/api/v1/users/self", headers=headers) as answer:
                await answer.json()

        return await _timed(one, n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--kinds", default="httpx,aiohttp,http1,bare")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",") * 2
    with simulate_process("--time-scale", "1000", "--token", TOKEN, "--latency", "0.5") as base:
        for kind in kinds:
            if kind == "bare":
                cpu, wall = asyncio.run(bare_run(base, args.requests))
            else:
                cpu, wall = asyncio.run(client_run(base, kind, args.requests))
            print(f"{kind:8} {1000 * cpu / args.requests:.3f} ms CPU/request, wall {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
