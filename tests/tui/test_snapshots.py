"""Snapshots of the dashboard, the failure stepper, the roster inspector and the dialogs.

Deterministic: a seeded world, a finished run (no ETA), and the timing-dependent figures (elapsed,
rates, headroom history) pinned by wrapping the real runner's snapshot; the source path is relative.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from canvas_tui.engine.state import FrontState, Phase
from canvas_tui.tui.app import ConsoleApp
from canvas_tui.tui.screens.dialogs import ChoiceScreen, ConfirmScreen, EditScreen, PromptScreen
from canvas_tui.tui.screens.roster import RosterScreen
from tests.helpers import SnapCompare, eventually_async
from tests.tui.conftest import (
    ROSTER_COURSE,
    ROSTER_ROWS,
    SIZE,
    make_harness,
    roster_world,
    state_of,
)
from tests.tui.snapshot_helpers import SMALL, finished_then, steady


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the source shows as "enrollments.csv", not a temp path
    return Path(".")


def test_dashboard_snapshot(in_tmp: Path, snap_compare: SnapCompare) -> None:
    app = make_harness(in_tmp, good=40, bad_every=10).app()
    assert snap_compare(app, terminal_size=SIZE, run_before=finished_then())


def test_stepper_snapshot(in_tmp: Path, snap_compare: SnapCompare) -> None:
    async def open_stepper(app: ConsoleApp, pilot: Pilot[int]) -> None:
        await pilot.press("f", "l")  # the second failure: a user Canvas does not have

    app = make_harness(in_tmp, good=40, bad_every=10).app()
    assert snap_compare(app, terminal_size=SIZE, run_before=finished_then(open_stepper))


def test_roster_snapshot(in_tmp: Path, snap_compare: SnapCompare) -> None:
    async def open_roster(app: ConsoleApp, pilot: Pilot[int]) -> None:
        await pilot.press("c")
        app.screen.query_one(Input).value = ROSTER_COURSE
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, RosterScreen)
        await eventually_async(
            lambda: screen.diff is not None, what="the roster diff", pause=pilot.pause
        )
        await pilot.press("4", "4")  # show the SIS record missing in Canvas first... then all
        await pilot.press("4", "4", "4", "4")

    app = make_harness(in_tmp, good=10, world=roster_world(250), extra=ROSTER_ROWS).app()
    assert snap_compare(app, terminal_size=SIZE, run_before=finished_then(open_roster))


def test_dashboard_snapshot_80x24(in_tmp: Path, snap_compare: SnapCompare) -> None:
    app = make_harness(in_tmp, good=40, bad_every=10).app()
    assert snap_compare(app, terminal_size=SMALL, run_before=finished_then())


def test_front_snapshot_80x24(in_tmp: Path, snap_compare: SnapCompare) -> None:
    """A course moved to the front (F) at 80 columns: what moved, then how many are left, on
    the progress panel's two last rows rather than cut at its edge."""

    async def moved(app: ConsoleApp, pilot: Pilot[int]) -> None:
        assert app.session is not None
        runner = app.session.runner
        real = runner.snapshot
        front = FrontState(label="BIO-101-F26-SECTION-02", moved=1250, left=1175)
        runner.snapshot = lambda: replace(real(), front=front)  # type: ignore[method-assign]
        app.tick()
        await pilot.pause()

    app = make_harness(in_tmp, good=40, bad_every=10).app()
    assert snap_compare(app, terminal_size=SMALL, run_before=finished_then(moved))


def test_ready_snapshot_80x24(in_tmp: Path, snap_compare: SnapCompare) -> None:
    """Opened on a source and sending nothing: what a start will do (the estimate assumes the
    default latency and cost, so it is the same on every machine)."""

    async def ready(pilot: Pilot[int]) -> None:
        app = pilot.app
        assert isinstance(app, ConsoleApp)
        await eventually_async(
            lambda: (
                app.state is not None
                and app.outlook is not None
                and app.idle_label(app.state) == "READY"
            ),
            what="the READY screen",
            pause=pilot.pause,
        )
        app.tick()

    app = make_harness(in_tmp, good=40, bad_every=10).app(autostart=False)
    assert snap_compare(app, terminal_size=SMALL, run_before=ready)


def test_help_snapshot_80x24(in_tmp: Path, snap_compare: SnapCompare) -> None:
    async def help_at_its_end(app: ConsoleApp, pilot: Pilot[int]) -> None:
        await pilot.press("question_mark", "end")

    app = make_harness(in_tmp, good=40, bad_every=10).app()
    assert snap_compare(app, terminal_size=SMALL, run_before=finished_then(help_at_its_end))


def _hold_inputs(app: ConsoleApp) -> None:
    """A text box's cursor blinks on a timer: stop it, so the snapshot does not depend on when
    it is taken."""
    for box in app.screen.query(Input):
        box.cursor_blink = False


def test_quit_confirm_snapshot_80x24(in_tmp: Path, snap_compare: SnapCompare) -> None:
    """q during a run asks first: here a run paused before its first record, so nothing on the
    screen depends on how far it got."""

    async def paused_then_quit(pilot: Pilot[int]) -> None:
        app = pilot.app
        assert isinstance(app, ConsoleApp)
        await eventually_async(
            lambda: app.state is not None and app.idle_label(app.state) == "READY",
            what="the READY screen",
            pause=pilot.pause,
        )
        assert app.session is not None
        runner = app.session.runner
        real = runner.snapshot
        runner.snapshot = lambda: steady(real())  # type: ignore[method-assign]
        runner.pause()  # the run starts paused: only the token check goes out
        await pilot.press("S")
        await eventually_async(
            lambda: app.run_active and state_of(app).phase is Phase.PAUSED,
            what="the run started, paused",
            pause=pilot.pause,
        )
        app.clear_notifications()
        app.tick()
        await pilot.press("q")
        await eventually_async(
            lambda: isinstance(app.screen, ConfirmScreen), what="the quit dialog", pause=pilot.pause
        )

    app = make_harness(in_tmp, good=40, bad_every=10).app(autostart=False)
    assert snap_compare(app, terminal_size=SMALL, run_before=paused_then_quit)


def test_retry_choice_snapshot(in_tmp: Path, snap_compare: SnapCompare) -> None:
    """R after a run with failures: all of them, or one category."""

    async def retry_all(app: ConsoleApp, pilot: Pilot[int]) -> None:
        await pilot.press("R")
        await eventually_async(
            lambda: isinstance(app.screen, ChoiceScreen),
            what="the retry dialog",
            pause=pilot.pause,
        )

    app = make_harness(in_tmp, good=40, bad_every=10).app()
    assert snap_compare(app, terminal_size=SIZE, run_before=finished_then(retry_all))


def test_edit_dialog_snapshot(in_tmp: Path, snap_compare: SnapCompare) -> None:
    """e on the stepper's first failure (the row the source rejected): its fields to fix."""

    async def edit_first_failure(app: ConsoleApp, pilot: Pilot[int]) -> None:
        await pilot.press("f", "e")
        await eventually_async(
            lambda: isinstance(app.screen, EditScreen), what="the edit dialog", pause=pilot.pause
        )
        _hold_inputs(app)

    app = make_harness(in_tmp, good=40, bad_every=10).app()
    assert snap_compare(app, terminal_size=SIZE, run_before=finished_then(edit_first_failure))


def test_prompt_snapshot_80x24(in_tmp: Path, snap_compare: SnapCompare) -> None:
    """c asks which course roster to open, offering the selected record's course."""

    async def course_prompt(app: ConsoleApp, pilot: Pilot[int]) -> None:
        await pilot.press("c")
        await eventually_async(
            lambda: isinstance(app.screen, PromptScreen),
            what="the course prompt",
            pause=pilot.pause,
        )
        _hold_inputs(app)

    app = make_harness(in_tmp, good=40, bad_every=10).app()
    assert snap_compare(app, terminal_size=SMALL, run_before=finished_then(course_prompt))
