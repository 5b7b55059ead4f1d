"""The demo's Canvas: the simulator tuned so that the limiter, retries and bad rows show within
seconds on the 3,000-row example, and throttle storms as Canvas under other jobs' load."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from canvas_tui.simulator.app import SimConfig, Simulator, build_app
from canvas_tui.simulator.faults import FaultRates
from canvas_tui.simulator.testing import asgi_transport

DEMO_URL = "http://127.0.0.1"  # never dialled: the transport is the in-process simulator
# Creates 3x dearer than Canvas's default: the limiter's headroom visibly moves, yet the 3,000
# rows finish in about 2 minutes (at 2.0 the bucket allowed ~5 records/s: 10 minutes).
DEMO_POST_COST = 0.3
# Rows per world second the demo's Canvas imports: the demo's ~3,000-row load takes about half
# a minute, so the import panel visibly moves (real Canvas: 0.3-10 s per 100 rows, §6)
DEMO_SIS_IMPORT_RATE = 100.0


@dataclass(frozen=True, slots=True)
class Storms:
    """Now and then the limiter tightens without warning: the first after `first` seconds, then
    every `every` seconds, each lasting `duration` world seconds at high-water mark `hwm`."""

    first: float = 3.0
    every: float = 40.0
    duration: float = 8.0
    hwm: float = 120.0


def demo_config(
    seed: int,
    time_scale: float = 1.0,
    throttle_status: int = 429,
    sis_import_rate: float = DEMO_SIS_IMPORT_RATE,
) -> SimConfig:
    return SimConfig(
        seed=seed,
        time_scale=time_scale,
        throttle_status=throttle_status,
        post_cost=DEMO_POST_COST,
        faults=FaultRates(error_500=0.01, html_503=0.005),
        sis_import_rate=sis_import_rate,
    )


def start_storms(sim: Simulator, storms: Storms) -> threading.Event:
    """Run `storms` against `sim` in a daemon thread until the returned event is set."""
    stop = threading.Event()

    def loop() -> None:
        wait = storms.first
        while not stop.wait(wait):
            # the bucket is full at the lower mark: the requests in flight are throttled at once
            sim.storm(fill=storms.hwm, hwm=storms.hwm, duration=storms.duration)
            wait = storms.every

    threading.Thread(target=loop, name="storms", daemon=True).start()
    return stop


@contextmanager
def demo_transport(
    seed: int,
    time_scale: float = 1.0,
    throttle_status: int = 429,
    sis_import_rate: float = DEMO_SIS_IMPORT_RATE,
) -> Iterator[httpx.AsyncBaseTransport]:
    """The demo's Canvas as the engine's transport, storms included. `canvas-tui demo` passes
    it to the engine process (as `EngineSpec.transport`, pickled by reference), which builds
    it there: the simulator's work never competes with the console's drawing."""
    sim = build_app(demo_config(seed, time_scale, throttle_status, sis_import_rate))
    stop = start_storms(sim, Storms())
    try:
        yield asgi_transport(sim)
    finally:
        stop.set()
