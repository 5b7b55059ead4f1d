"""The roster inspector pages through a whole course through the session's client."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input

from canvas_tui.engine.plan.verdict import Verdict
from canvas_tui.engine.state import Phase
from canvas_tui.records import State
from canvas_tui.tui.screens.dialogs import ConfirmScreen, PromptScreen
from canvas_tui.tui.screens.roster import RosterScreen
from tests.helpers import eventually_async
from tests.tui.conftest import (
    PLACEMENTS,
    ROSTER_COURSE,
    ROSTER_ROWS,
    SIZE,
    make_harness,
    roster_world,
    state_of,
)


@PLACEMENTS
async def test_roster_pages_through_every_enrollment_and_enqueues_the_missing(
    tmp_path: Path, engine_process: bool
) -> None:
    h = make_harness(
        tmp_path,
        good=10,
        world=roster_world(250),
        extra=ROSTER_ROWS,
        engine_process=engine_process,
    )
    app = h.app()
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: app.state is not None and app.state.phase is Phase.FINISHED,
            what="the run finished",
            pause=pilot.pause,
        )
        assert state_of(app).counts[State.FAILED] == 2  # the invalid row and LATE0001

        await pilot.press("c")
        prompt = app.screen
        assert isinstance(prompt, PromptScreen)
        prompt.query_one(Input).value = ROSTER_COURSE
        await pilot.press("enter")
        roster = app.screen
        assert isinstance(roster, RosterScreen)
        await eventually_async(
            lambda: roster.diff is not None, what="the roster diff", pause=pilot.pause
        )
        diff = roster.diff
        assert diff is not None
        assert diff.canvas_count == 251  # 250 + R9000, every page of 100
        assert roster.pages == 3
        assert diff.sis_count == 7
        assert (diff.count(Verdict.OK), diff.count(Verdict.MISSING), diff.count(Verdict.EXTRA)) == (
            6,
            1,
            245,
        )
        assert roster.table.total == 252

        await pilot.press("4")  # comparison filter: in sync
        assert roster.table.total == 6
        await pilot.press("4")  # missing in Canvas
        assert roster.table.total == 1
        assert roster.table.current.user == "LATE0001"  # type: ignore[union-attr]
        await pilot.press("4", "4", "4", "4")  # ... back to everything
        assert roster.table.total == 252
        await pilot.press("1")  # role filter: the only role present
        assert roster.table.total == 252

        # the user now exists: enqueue the missing enrollment, it is sent, the roster agrees
        h.sim.world.add_user("Late Arrival", "LATE0001")
        await pilot.press("a")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await eventually_async(
            lambda: (
                roster.diff is not None
                and roster.diff.count(Verdict.MISSING) == 0
                and roster.diff.canvas_count == 252
            ),
            what="the roster diff with the missing row added",
            pause=pilot.pause,
        )
        await pilot.press("escape", "q")
