"""Helpers for simulator tests: an in-process client; `fast_config` runs fast and exact."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from canvas_tui.simulator import ADMIN_TOKEN, Simulator, build_app
from canvas_tui.simulator.testing import asgi_transport
from canvas_tui.simulator.world import World
from tests.helpers import fast_config

USER_AGENT = "canvas-tui-tests/1.0"
BASE = "http://canvas.test"


class FrozenClock:
    """The simulator's clock, still until a test moves `now`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def client_for(app: Simulator, token: str | None = ADMIN_TOKEN, **kwargs: Any) -> httpx.AsyncClient:
    headers = {"User-Agent": USER_AGENT}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(
        transport=asgi_transport(app), base_url=BASE, headers=headers, **kwargs
    )


@pytest.fixture
def world() -> World:
    return World.generate(7)


@pytest.fixture
def app(world: World) -> Simulator:
    return build_app(fast_config(), world)


@pytest.fixture
async def client(app: Simulator) -> Any:
    async with client_for(app) as c:
        yield c
