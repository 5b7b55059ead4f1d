"""The pinned figures and the finished-run wait the console snapshot tests share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from textual.pilot import Pilot

from canvas_tui.engine.state import GovernorState, Phase, RunState
from canvas_tui.tui.app import ConsoleApp
from tests.helpers import eventually_async

SMALL = (80, 24)  # the smallest terminal the console is laid out for

RATES = (0.0, 12.0, 31.0, 44.0, 43.5, 44.2, 38.0, 41.0, 43.9, 22.0, 6.0)
REMAINING = (600.0, 540.0, 470.0, 415.0, 380.0, 362.0, 371.0, 366.0, 384.0, 450.0, 560.0)


def steady(state: RunState) -> RunState:
    """The same run, with the figures that depend on wall-clock timing held still."""
    return replace(
        state,
        elapsed=754.0,
        rate=6.0,
        rate_history=RATES,
        remaining_history=REMAINING,
        governor=GovernorState(
            limit=9, in_flight=0, remaining=560.0, high_water_mark=600.0, average_cost=0.1, cap=None
        ),
        requests=412,
        throttled=3,
        retries=5,
        throttled_last_minute=1,
        retries_last_minute=2,
    )


def finished_then(
    extra: Callable[[ConsoleApp, Pilot[int]], Awaitable[None]] | None = None,
) -> Callable[[Pilot[int]], Awaitable[None]]:
    async def run_before(pilot: Pilot[int]) -> None:
        app = pilot.app
        assert isinstance(app, ConsoleApp)
        await eventually_async(
            lambda: app.state is not None and app.state.phase is Phase.FINISHED,
            what="the run finished",
            pause=pilot.pause,
        )
        # the run's worker posts "Run finished" before it ends: let that toast come, then clear
        await eventually_async(
            lambda: not app.run_active, what="the run's worker ended", pause=pilot.pause
        )
        await eventually_async(
            lambda: any(n.title == "Run finished" for n in app._notifications),
            what="the Run finished toast",
            pause=pilot.pause,
        )
        assert app.session is not None
        runner = app.session.runner
        real = runner.snapshot
        runner.snapshot = lambda: steady(real())  # type: ignore[method-assign]
        app.clear_notifications()
        app.tick()
        if extra is not None:
            await extra(app, pilot)
        app.clear_notifications()

    return run_before
