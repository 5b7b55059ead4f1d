"""Snapshots of the SIS import panel: a finished import at full size, and, with Canvas's figures
held still, an import under way and the abort confirmation on the smallest terminal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from textual.pilot import Pilot

from canvas_tui.engine.state import ImportStatus, Phase, RunState
from canvas_tui.tui.app import ConsoleApp
from canvas_tui.tui.screens.dialogs import ConfirmScreen
from canvas_tui.tui.screens.plan import PlanScreen
from tests.helpers import SnapCompare, eventually_async
from tests.tui.conftest import SIZE, Harness, active_courses, make_harness, small_world
from tests.tui.snapshot_helpers import SMALL, finished_then

GHOSTS = ("NOSUCH001", "NOSUCH002")

UNDER_WAY = ImportStatus(
    import_id=1,
    stage="polling",
    rows=2316,
    sis_import_id=101,
    workflow_state="importing",
    progress=45.0,
    counts={"enrollments": 1042},
    warning_count=12,
    rest_records=2,
    elapsed=27.0,
    polls=14,
)


def _harness(tmp: Path) -> Harness:
    world = small_world()
    course = active_courses(world)[0]
    h = make_harness(
        tmp,
        good=40,
        world=world,
        extra=[[course, ghost, "student", "", "active"] for ghost in GHOSTS],
    )
    h.via = "sis-import"
    return h


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the source shows as "enrollments.csv", not a temp path
    return Path(".")


def applied_then(
    extra: Callable[[ConsoleApp, Pilot[int]], Awaitable[None]] | None = None,
) -> Callable[[Pilot[int]], Awaitable[None]]:
    """Apply the plan on its screen, then as `finished_then`."""
    after = finished_then(extra)

    async def run_before(pilot: Pilot[int]) -> None:
        app = pilot.app
        await eventually_async(
            lambda: isinstance(app.screen, PlanScreen), what="the plan screen", pause=pilot.pause
        )
        await pilot.press("a")
        await after(pilot)

    return run_before


FINISHED = ImportStatus(  # the demo's import at its end: more figures than 76 columns hold
    import_id=1,
    stage="finished",
    rows=2316,
    sis_import_id=101,
    workflow_state="imported_with_messages",
    progress=100.0,
    counts={"enrollments": 2313},
    warning_count=3,
    rest_records=2,
    done=2313,
    failed=3,
    elapsed=84.0,
    polls=30,
    message="SIS import 101: imported_with_messages",
)


def importing(state: RunState) -> RunState:
    """The finished run shown as if Canvas were at 45% of its import."""
    return replace(state, phase=Phase.RUNNING, sis_import=UNDER_WAY)


async def _pin_import(app: ConsoleApp, pilot: Pilot[int]) -> None:
    assert app.session is not None
    runner = app.session.runner
    real = runner.snapshot  # already steady (finished_then)
    runner.snapshot = lambda: importing(real())  # type: ignore[method-assign]
    app.tick()
    await pilot.pause()


def test_finished_import_snapshot(in_tmp: Path, snap_compare: SnapCompare) -> None:
    app = _harness(in_tmp).app(plan=True)
    assert snap_compare(app, terminal_size=SIZE, run_before=applied_then())


def test_import_under_way_snapshot_80x24(in_tmp: Path, snap_compare: SnapCompare) -> None:
    app = _harness(in_tmp).app(plan=True)
    assert snap_compare(app, terminal_size=SMALL, run_before=applied_then(_pin_import))


def test_abort_confirm_snapshot_80x24(in_tmp: Path, snap_compare: SnapCompare) -> None:
    async def confirm_abort(app: ConsoleApp, pilot: Pilot[int]) -> None:
        await _pin_import(app, pilot)
        app.action_abort_import()
        await eventually_async(
            lambda: isinstance(app.screen, ConfirmScreen),
            what="the abort confirmation",
            pause=pilot.pause,
        )

    app = _harness(in_tmp).app(plan=True)
    assert snap_compare(app, terminal_size=SMALL, run_before=applied_then(confirm_abort))


def test_finished_import_snapshot_80x24(in_tmp: Path, snap_compare: SnapCompare) -> None:
    """A finished import's figures wrap onto a third line at 80 columns (the panel grows by
    one), none cut at the edge."""

    async def pin_finished(app: ConsoleApp, pilot: Pilot[int]) -> None:
        assert app.session is not None
        runner = app.session.runner
        real = runner.snapshot
        runner.snapshot = lambda: replace(real(), sis_import=FINISHED)  # type: ignore[method-assign]
        app.tick()
        await pilot.pause()

    app = _harness(in_tmp).app(plan=True)
    assert snap_compare(app, terminal_size=SMALL, run_before=applied_then(pin_finished))
