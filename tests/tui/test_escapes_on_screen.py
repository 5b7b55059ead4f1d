"""The console draws outside text as text: a CSV field or a Canvas message carrying terminal
escapes (clipboard write, window title) reaches the screen as `\\x1b…`, never as a sequence, and
the queue and the roster inspector keep their columns for such rows."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from canvas_tui.engine.plan.verdict import RosterLine, Verdict
from canvas_tui.engine.state import Phase
from canvas_tui.records import State
from canvas_tui.tui.screens.roster import COLUMNS, line_cells
from canvas_tui.tui.screens.stepper import FailureStepper
from tests.helpers import eventually_async
from tests.tui.conftest import SIZE, active_courses, make_harness, small_world, state_of

CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4=\x1b\\"
TITLE = "\x1b]2;pwned\x07"


def _controls(text: str) -> set[str]:
    return {c for c in text if (ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F}


async def test_queue_draws_escapes_from_the_source_as_text(tmp_path: Path) -> None:
    world = small_world()
    course = active_courses(world)[0]
    h = make_harness(
        tmp_path,
        good=5,
        world=world,
        extra=[
            [course, f"GHOST{CLIPBOARD}", "student", "", "active"],
            [course, f"NOBODY{TITLE}", "student", "", "active"],
        ],
    )
    app = h.app()
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: app.state is not None and app.state.phase is Phase.FINISHED,
            what="the run finished",
            pause=pilot.pause,
        )
        assert state_of(app).counts[State.FAILED] >= 2
        await pilot.pause()
        # what the terminal would be sent for the whole screen (Textual's own renderer)
        drawn = app.screen._compositor.render_full_update().render_segments(app.console)
        await pilot.press("f")  # the failure stepper: source row, what was sent, Canvas's answer
        await eventually_async(
            lambda: isinstance(app.screen, FailureStepper),
            what="the failure stepper",
            pause=pilot.pause,
        )
        stepper = app.screen
        assert isinstance(stepper, FailureStepper)
        for _ in range(3):  # past the invalid row, to GHOST's failure
            if stepper._row is not None and "GHOST" in stepper._row.user:
                break
            await pilot.press("right")
            await pilot.pause()
        assert stepper._row is not None and "GHOST" in stepper._row.user
        await pilot.pause()
        stepped = app.screen._compositor.render_full_update().render_segments(app.console)
    assert "\x1b]" not in stepped and "\x07" not in stepped and "GHOST\\x1b]52;" in stepped
    assert "\x1b]" not in drawn and "\x07" not in drawn  # Textual itself writes only CSI
    assert "GHOST\\x1b]52;" in drawn and "NOBODY\\x1b]2;" in drawn  # (the column cuts the rest)
    rows = [line for line in drawn.split("\n") if "GHOST" in line or "NOBODY" in line]
    assert len(rows) == 2  # each record still one line of the table


def test_roster_line_keeps_its_columns() -> None:
    line = RosterLine(
        user=f"R1{CLIPBOARD}",
        name=f"Eve{TITLE}\r\nMallory",
        role="student",
        section="S-01",
        canvas_state="active",
        sis_status="active",
        verdict=Verdict.OK,
    )
    cells = line_cells(line)
    assert len(cells) == len(COLUMNS)
    for cell in cells:
        text = cell.plain if isinstance(cell, Text) else cell
        assert not _controls(text) and "\n" not in text
