"""One rule from a run's end state to an exit status, for the console and `canvas-tui sync`
(exit_codes.run_exit_code; README "Exit codes").

The two front ends agree on an abort (3) and differ, on purpose, where an operator watched: the
console's operator saw the failures and chose to cancel or quit (0), while a sync's status is all
its scheduler sees (1 for failed records, 3 for a run a signal stopped). The end-to-end paths are
pinned in tests/test_headless.py (1, 3 for a refused token and for SIGTERM) and
tests/tui/test_flows.py (0 after failures, after the operator's cancel and mid-run quit); the
console's abort is pinned here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from canvas_tui.engine.state import GovernorState, Phase, RunState
from canvas_tui.exit_codes import ExitCode, run_exit_code
from canvas_tui.records import State
from canvas_tui.simulator import ADMIN_TOKEN
from tests.helpers import eventually_async
from tests.tui.conftest import SIZE, make_harness

FAILED = RunState(
    Phase.FINISHED, 3, {State.DONE: 2, State.FAILED: 1}, 1.0, 0.0, (), (),
    GovernorState(1, 0, None, 600.0, None, None), 3, 0, 0, 0, 0, {}, 0,
)  # fmt: skip
CLEAN = dataclasses.replace(FAILED, counts={State.DONE: 2, State.SKIPPED: 1})


@pytest.mark.parametrize(
    ("state", "console", "sync"),
    [
        (None, ExitCode.OK, ExitCode.OK),  # no run was opened
        (CLEAN, ExitCode.OK, ExitCode.OK),
        # the console showed the failures; a scheduler only sees the status
        (FAILED, ExitCode.OK, ExitCode.RECORDS_FAILED),
        # the console's operator cancelled; only a signal cancels a sync, records stay pending
        (dataclasses.replace(FAILED, phase=Phase.CANCELLED), ExitCode.OK, ExitCode.ABORTED),
        (dataclasses.replace(CLEAN, phase=Phase.CANCELLED), ExitCode.OK, ExitCode.ABORTED),
        # nobody chose an abort (token refused, Canvas unreachable, engine lost)
        (dataclasses.replace(CLEAN, phase=Phase.ABORTED), ExitCode.ABORTED, ExitCode.ABORTED),
    ],
    ids=["no-run", "clean", "failed", "cancelled-failed", "cancelled", "aborted"],
)
def test_one_rule_for_the_console_and_the_headless_run(
    state: RunState | None, console: ExitCode, sync: ExitCode
) -> None:
    assert run_exit_code(state, attended=True) is console
    assert run_exit_code(state, attended=False) is sync


async def test_the_console_exits_3_when_the_run_was_aborted(tmp_path: Path) -> None:
    h = make_harness(tmp_path, good=300, time_scale=2.0)
    app = h.app()
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: app.state is not None and app.state.counts.get(State.DONE, 0) >= 5,
            what="five records done",
            pause=pilot.pause,
        )
        del h.sim.world.tokens[ADMIN_TOKEN]  # the token is revoked mid-run: 401, the run aborts
        await eventually_async(
            lambda: app.state is not None and app.state.phase is Phase.ABORTED,
            what="the run aborted",
            pause=pilot.pause,
        )
        await pilot.press("q")
        await eventually_async(
            lambda: app.return_value is not None, what="the app's exit", pause=pilot.pause
        )
    assert app.return_value == ExitCode.ABORTED
