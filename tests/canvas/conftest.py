"""Fixtures for the Canvas client tests: the real simulator, in process or on a loopback socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from canvas_tui.canvas.client import AttemptEvent, CanvasClient
from canvas_tui.canvas.governor import Governor
from canvas_tui.simulator import ADMIN_TOKEN, SimConfig, Simulator, build_app
from canvas_tui.simulator.testing import asgi_transport
from canvas_tui.simulator.world import World
from tests.helpers import fast_config

# In-process requests never leave the process, but the client still checks the base URL's rule.
BASE = "http://127.0.0.1:8999"


def sim_config(**overrides: Any) -> SimConfig:
    """`fast_config` in a smaller world, unless a test asks otherwise."""
    return fast_config(**{"world_users": 800, "world_courses": 20, **overrides})


class Sleeps:
    """An instant sleep that remembers what it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class ManualClock:
    """A clock shared by the simulator and the governor; sleeping advances it, instantly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def make_client(
    app: Simulator, token: str = ADMIN_TOKEN, *, base: str = BASE, **kwargs: Any
) -> CanvasClient:
    kwargs.setdefault("sleep", Sleeps())
    # The governor's leak is in our clock's seconds; the simulator leaks time_scale times faster.
    kwargs.setdefault("governor", Governor(leak=app.config.leak * app.config.time_scale))
    return CanvasClient(base, token, transport=asgi_transport(app), **kwargs)


@pytest.fixture(scope="session")
def small_world_seed() -> int:
    return 7


@pytest.fixture
def world() -> World:
    return World.generate(7, users=800, courses=20)


@pytest.fixture
def app(world: World) -> Simulator:
    return build_app(sim_config(), world)


@pytest.fixture
async def client(app: Simulator) -> AsyncIterator[CanvasClient]:
    async with make_client(app) as c:
        yield c


@pytest.fixture
def events() -> Iterator[list[AttemptEvent]]:
    yield []


def fresh_governor(**kwargs: Any) -> Governor:
    return Governor(**kwargs)


def sis_students(world: World, count: int) -> list[str]:
    """Generated users with no enrollment yet, so a create never adds a second section's row."""
    enrolled = {e.user_id for e in world.enrollments.values()}
    ids = [
        u.sis_user_id
        for u in world.users.values()
        if u.sis_user_id and u.id >= 1000 and u.id not in enrolled
    ]
    assert len(ids) >= count, "the test world is too small"
    return [f"sis_user_id:{sis}" for sis in ids[:count]]
