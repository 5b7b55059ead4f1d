"""The console awaits the engine's answers: an engine slow to answer never stalls the console."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from canvas_tui.engine.remote import RemoteSession
from canvas_tui.engine.state import Phase
from canvas_tui.tui.app import ConsoleApp
from tests.helpers import eventually_async
from tests.tui.conftest import SIZE, make_harness


async def test_a_command_the_engine_is_slow_to_answer_leaves_the_console_ticking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = 0
    tick = ConsoleApp.tick

    def counted(app: ConsoleApp) -> None:
        nonlocal ticks
        ticks += 1
        tick(app)

    monkeypatch.setattr(ConsoleApp, "tick", counted)
    h = make_harness(tmp_path, good=150, time_scale=2.0, engine_process=True)
    app = h.app()
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: app.state is not None and app.check_action("toggle_pause", ()) is True,
            what="pause offered",
            pause=pilot.pause,
        )
        session = app.session
        assert isinstance(session, RemoteSession)
        os.kill(session.process.pid, signal.SIGSTOP)  # the engine answers nothing for now
        try:
            pause = asyncio.create_task(app.run_action("toggle_pause"))
            start = ticks
            await eventually_async(  # the refresh timer runs on
                lambda: ticks >= start + 5, what="five refresh ticks", pause=pilot.pause
            )
            assert not pause.done()  # ... while the command waits for its answer
        finally:
            os.kill(session.process.pid, signal.SIGCONT)
        await asyncio.wait_for(pause, 30)
        assert session.runner.snapshot().phase is Phase.PAUSED  # the reply's snapshot
        await pilot.press("p")
        await eventually_async(
            lambda: app.state is not None and app.state.phase is Phase.FINISHED,
            what="the run finished",
            timeout=30,
            pause=pilot.pause,
        )
        await pilot.press("q")
