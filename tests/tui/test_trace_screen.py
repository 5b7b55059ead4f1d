"""The trace key (T): the selected record's person across the runs, in a screen; `l` adds their
live enrollments from Canvas."""

from __future__ import annotations

from pathlib import Path

from canvas_tui.engine.state import Phase
from canvas_tui.records import sis_value
from canvas_tui.tui.screens.trace import TraceScreen
from tests.helpers import eventually_async
from tests.tui.conftest import PLACEMENTS, SIZE, make_harness, state_of, text_of


@PLACEMENTS
async def test_the_trace_key_opens_the_person_s_trace(tmp_path: Path, engine_process: bool) -> None:
    h = make_harness(tmp_path, good=30, engine_process=engine_process)
    app = h.app()
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: app.state is not None and state_of(app).phase is Phase.FINISHED,
            what="the run finished",
            pause=pilot.pause,
        )
        await pilot.press("colon")
        await pilot.press("5", "enter")
        row = app.queue.selected
        assert row is not None and row.record_id == 5
        await pilot.press("T")
        assert isinstance(app.screen, TraceScreen)
        screen = app.screen
        await eventually_async(
            lambda: screen.found is not None, what="the trace read", pause=pilot.pause
        )
        shown = text_of(screen.query_one("#trace"))
        assert f"Trace of {row.user}" in shown
        assert "record #5" in shown and "final: done" in shown
        assert "→ HTTP 200" in shown
        assert screen.found is not None and screen.found.enrollments is None

        await pilot.press("l")
        await eventually_async(
            lambda: screen.found is not None and screen.found.enrollments is not None,
            what="the live enrollments",
            pause=pilot.pause,
        )
        shown = text_of(screen.query_one("#trace"))
        assert "Live in Canvas:" in shown
        assert sis_value(row.course) in shown  # the enrollment the run made
        await pilot.press("escape")
        assert not isinstance(app.screen, TraceScreen)
