"""`canvas-tui console --attach JOURNAL`: the console follows a headless `sync` that another
process drives against the simulator, from its first held request to its end; read-only it
offers no command, with control its pause key pauses that sync."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input

from canvas_tui.engine.attach import attach_engine
from canvas_tui.engine.state import Phase
from canvas_tui.records import State
from canvas_tui.tui.app import WRITES, ConsoleApp
from canvas_tui.tui.screens.dialogs import PromptScreen
from canvas_tui.tui.screens.roster import RosterScreen
from canvas_tui.tui.session import ConsoleSession
from tests.engine.attach_helpers import gated_sync
from tests.helpers import eventually_async, lines
from tests.tui.conftest import SIZE


def _app(journal: Path, *, control: bool) -> ConsoleApp:
    session = attach_engine(journal, control=control)

    async def opener() -> ConsoleSession:
        return session

    return ConsoleApp(
        opener,
        description=f"attached · {journal}",
        read_only=not control,
        journal_path=session.journal_path,
        attached=True,
    )


def _counts(app: ConsoleApp) -> dict[State, int]:
    return dict(app.state.counts) if app.state is not None else {}


async def test_an_attached_console_follows_a_headless_sync_to_its_end(tmp_path: Path) -> None:
    with gated_sync(tmp_path, 30) as run:
        run.wait_until_held()
        app = _app(run.journal, control=False)
        async with app.run_test(size=SIZE) as pilot:
            await eventually_async(
                lambda: _counts(app).get(State.IN_FLIGHT, 0) > 0,
                what="the sync's writes in flight, on the console",
                pause=pilot.pause,
            )
            assert app.state is not None and app.state.phase is Phase.RUNNING
            assert "[attached, read-only]" in app.sub_title
            # read-only: no key that would change the run, not even a start
            assert not any(app.action_available(action) for action in WRITES)
            await eventually_async(  # the queue reads the journal the sync writes
                lambda: app.queue.table.total == run.records,
                what="the queue shows the sync's records",
                pause=pilot.pause,
            )

            run.gate.opened.set()
            await eventually_async(
                lambda: app.state is not None and app.state.phase is Phase.FINISHED,
                what="the sync's run finished, on the console",
                timeout=60,
                pause=pilot.pause,
            )
            assert _counts(app).get(State.DONE) == run.records
            # a sync's FINISHED is its end (a `watch` would be WATCHING for the next change)
            assert app.idle_label(app.state) is None
            code, out, _ = run.finish()
            await pilot.press("q")
        assert app.return_code == 0  # detaching from a finished run
    assert code == 0
    assert lines(out)[-1]["counts"]["done"] == run.records


async def test_control_pauses_the_sync_and_reads_its_rosters(tmp_path: Path) -> None:
    with gated_sync(tmp_path, 30) as run:
        run.wait_until_held()
        app = _app(run.journal, control=True)
        async with app.run_test(size=SIZE) as pilot:
            await eventually_async(
                lambda: app.check_action("toggle_pause", ()) is True,
                what="pause offered to a console with control",
                pause=pilot.pause,
            )
            assert app.action_available("start") is False  # the host starts its runs
            await pilot.press("p")
            await eventually_async(
                lambda: app.state is not None and app.state.phase is Phase.PAUSED,
                what="the sync paused from the console",
                pause=pilot.pause,
            )
            run.gate.opened.set()
            await eventually_async(
                lambda: _counts(app).get(State.IN_FLIGHT, 0) == 0,
                what="the held writes answered while paused",
                pause=pilot.pause,
            )
            assert _counts(app).get(State.PENDING, 0) > 0  # paused: the rest wait

            # the roster inspector, through the sync's own client and governor
            row = app.queue.selected
            assert row is not None and row.course
            await pilot.press("c")
            prompt = app.screen
            assert isinstance(prompt, PromptScreen)
            assert prompt.query_one(Input).value  # the record's course
            await pilot.press("enter")
            roster = app.screen
            assert isinstance(roster, RosterScreen)
            await eventually_async(
                lambda: roster.diff is not None, what="the roster read", pause=pilot.pause
            )
            assert roster.diff is not None and roster.diff.canvas_count > 0
            await pilot.press("escape")

            await pilot.press("p")  # resume
            await eventually_async(
                lambda: app.state is not None and app.state.phase is Phase.FINISHED,
                what="the sync's run finished after the console resumed it",
                timeout=60,
                pause=pilot.pause,
            )
            code, _, _ = run.finish()
            await pilot.press("q")  # detaching never cancels: the run had ended on its own
    assert code == 0
