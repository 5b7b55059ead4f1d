"""The console's plan screen: shows the plan and the would-be drops; approval is explicit."""

from __future__ import annotations

import asyncio
from typing import Any

from textual.app import App
from textual.widgets import Button, Label, Static

from canvas_tui.config import PlanConfig
from canvas_tui.engine.plan.diff import Plan, build_plan
from canvas_tui.engine.plan.rosters import Roster
from canvas_tui.engine.state import Phase
from canvas_tui.simulator.testing import serve_in_thread
from canvas_tui.tui.app import ConsoleApp
from canvas_tui.tui.screens.plan import PlanScreen
from tests.helpers import SnapCompare, eventually_async
from tests.plan.conftest import Arena
from tests.tui.conftest import text_of


def _plan(dropped: int, max_share: float = 0.2) -> Plan:
    enrollments = [
        {
            "id": 100 + i,
            "user_id": 500 + i,
            "course_id": 7,
            "course_section_id": 70,
            "sis_course_id": "BIO101",
            "sis_section_id": "BIO101-01",
            "sis_user_id": f"S{i}",
            "type": "StudentEnrollment",
            "role": "StudentEnrollment",
            "enrollment_state": "active",
            "sis_import_id": 3,
        }
        for i in range(dropped)
    ]
    rosters = {"course/sis_course_id:BIO101": Roster("course/sis_course_id:BIO101", enrollments, 1)}
    return build_plan(
        [],
        rosters,
        PlanConfig(drop_policy="conclude", brake_max_share=max_share, brake_max_count=2),
    )


class Host(App[bool]):
    def __init__(self, plan: Plan) -> None:
        super().__init__()
        self.plan = plan

    def on_mount(self) -> None:
        self.push_screen(PlanScreen(self.plan, "plan mode (--plan)"), self.exit)


async def test_a_tripped_brake_shows_the_drops_and_never_defaults_to_applying() -> None:
    app = Host(_plan(3))
    async with app.run_test() as pilot:
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        assert str(screen.query_one("#yes", Button).label) == "Approve 3 drops and apply (a)"
        assert screen.focused is screen.query_one("#no", Button)
        titles = [str(label.render()) for label in screen.query(Label)]
        assert "Would-be drops (3)" in titles
        assert any("brake is on: 3 drops" in t for t in titles)
        summary = str(screen.query_one("#summary", Static).render())
        assert "conclude 3" in summary and "BRAKE" in summary
        await pilot.press("enter")  # Enter on the focused "send nothing"
    assert app.return_value is False


async def test_apply_key_approves() -> None:
    app = Host(_plan(1, max_share=1.0))
    async with app.run_test() as pilot:
        assert str(app.screen.query_one("#yes", Button).label) == "Apply (a)"
        await pilot.press("a")
    assert app.return_value is True


def test_plan_screen_snapshot_with_the_brake_on(snap_compare: SnapCompare) -> None:
    """Three would-be drops past the brake's thresholds: the drops, the reason, and a button
    that says it approves them (focus on "send nothing")."""
    assert snap_compare(Host(_plan(3)), terminal_size=(120, 36))


def test_plan_screen_snapshot_80x24(snap_compare: SnapCompare) -> None:
    """One drop within the thresholds, on the smallest terminal: the plain Apply button."""
    assert snap_compare(Host(_plan(1, max_share=1.0)), terminal_size=(80, 24))


async def _console(
    arena: Arena, rows: list[list[str]], journal: str, key: str, base_url: str | None = None
) -> ConsoleApp:
    """The console with `plan=True`; the engine in process, or in its own process when the
    arena's simulator is served at `base_url`."""
    path, config = arena.csv(rows), arena.config(drop_policy="conclude")
    session: Any = (
        arena.session(path, config, journal)
        if base_url is None
        else await asyncio.to_thread(arena.engine_session, path, config, journal, base_url)
    )

    async def opener() -> Any:
        return session

    app = ConsoleApp(opener, description="plan", plan=True)
    async with app.run_test() as pilot:
        await eventually_async(
            # pushed is not yet composed: wait for its buttons
            lambda: isinstance(app.screen, PlanScreen) and bool(app.screen.query("#no")),
            what="the plan screen, composed",
            timeout=20,
            pause=pilot.pause,
        )
        await pilot.press(key)
        if key == "a":
            await eventually_async(
                lambda: session.runner.snapshot().phase == Phase.FINISHED,
                what="the approved plan applied",
                timeout=20,
                pause=pilot.pause,
            )
        else:
            await eventually_async(
                lambda: "PLAN DECLINED" in text_of(app.query_one("#progress-text")),
                what="the plan declined",
                pause=pilot.pause,
            )
        app.exit(0)
    await session.close()
    return app


async def test_console_applies_a_plan_only_when_the_operator_approves(arena: Arena) -> None:
    u = arena.users
    enrolled = [arena.enroll(x) for x in u[:10]]
    rows = [arena.row(x) for x in u[:7]]  # 30 % dropped: the brake is on
    await _console(arena, rows, "declined", "escape")
    assert arena.writes() == 0
    assert all(arena.state_of(e) == "active" for e in enrolled)

    await _console(arena, rows, "approved", "a")
    assert [arena.state_of(e) for e in enrolled] == ["active"] * 7 + ["completed"] * 3
    assert arena.writes() == 3


async def test_the_engine_process_plans_and_applies_on_approval(arena: Arena) -> None:
    """The plan is computed in the engine process, shown by the console, applied there."""
    u = arena.users
    enrolled = [arena.enroll(x) for x in u[:10]]
    rows = [arena.row(x) for x in u[:7]]
    with serve_in_thread(arena.app) as base_url:
        await _console(arena, rows, "declined", "escape", base_url)
        assert arena.writes() == 0
        await _console(arena, rows, "approved", "a", base_url)
    assert [arena.state_of(e) for e in enrolled] == ["active"] * 7 + ["completed"] * 3
    assert arena.writes() == 3


async def test_a_plan_the_drop_policy_asked_for_says_so_and_declining_says_nothing_was_sent(
    arena: Arena,
) -> None:
    u = arena.users
    for x in u[:4]:
        arena.enroll(x)
    path, config = arena.csv([arena.row(x) for x in u[:3]]), arena.config(drop_policy="conclude")
    session: Any = arena.session(path, config, "policy")

    async def opener() -> Any:
        return session

    # no --plan: the console plans because the config's drop policy needs a plan
    app = ConsoleApp(opener, description="plan", plan=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await eventually_async(
            # pushed is not yet composed: wait for its buttons
            lambda: isinstance(app.screen, PlanScreen) and bool(app.screen.query("#no")),
            what="the plan screen, composed",
            timeout=20,
            pause=pilot.pause,
        )
        title = str(app.screen.query(Label).first().render())
        assert "drop_policy is conclude" in title and "--plan" not in title
        await pilot.press("escape")
        await eventually_async(
            lambda: "PLAN DECLINED" in text_of(app.query_one("#progress-text")),
            what="the plan declined",
            timeout=5,
            pause=pilot.pause,
        )
        assert "nothing was sent" in text_of(app.query_one("#progress-text"))
        assert app.check_action("start", ()) is False
        app.exit(0)
    await session.close()
    assert arena.writes() == 0
