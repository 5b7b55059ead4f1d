"""Issue 10's end-to-end scenario through a console retry: the rows fail first (their course is
briefly gone from Canvas), the operator retries them all, and what is re-sent from the journal
still leaves the TA's section limit and the student's dates as a person set them in Canvas."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import httpx

from canvas_tui.engine.state import Phase
from canvas_tui.records import State
from canvas_tui.simulator import ADMIN_TOKEN, LatencyModel, SimConfig, build_app
from canvas_tui.simulator.testing import asgi_transport
from canvas_tui.simulator.world import DOC_COURSE
from tests.engine import blank_columns_scenario as scenario
from tests.helpers import eventually_async
from tests.tui import conftest
from tests.tui.conftest import PLACEMENTS, SIZE, Harness, small_world

TIME_SCALE = 20.0


@PLACEMENTS
async def test_scenario_through_a_console_retry(tmp_path: Path, engine_process: bool) -> None:
    world = small_world()
    sim = build_app(
        SimConfig(
            seed=7, time_scale=TIME_SCALE, latency=LatencyModel.uniform(0.05), cost_jitter=0.0
        ),
        world=world,
    )
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "User-Agent": "canvas-tui-tests"}
    async with httpx.AsyncClient(
        transport=asgi_transport(sim), base_url="http://canvas.test", headers=headers
    ) as http:
        await scenario.arrange(http)
        course = world.find_course(f"sis_course_id:{DOC_COURSE}")
        assert course is not None
        course.workflow_state = "deleted"  # Canvas answers 404 for it until it is restored
        csv_path = scenario.write_csv(tmp_path / "enrollments.csv")
        harness = Harness(sim, csv_path, tmp_path / "run.journal", TIME_SCALE, engine_process)
        conftest._HARNESSES.append(harness)  # its servers stop with the test
        app = harness.app()
        rows = len(scenario.rows())
        async with app.run_test(size=SIZE) as pilot:

            def counts() -> Mapping[State, int]:
                return app.state.counts if app.state is not None else {}

            await eventually_async(
                lambda: (
                    app.state is not None
                    and app.state.phase is Phase.FINISHED
                    and counts().get(State.FAILED, 0) == rows
                ),
                what="every row failed against the closed course",
                pause=pilot.pause,
            )
            course.workflow_state = "available"
            await pilot.press("R", "enter")  # retry: all failed records
            await eventually_async(
                lambda: (
                    counts().get(State.DONE, 0) == rows
                    and app.state is not None
                    and app.state.phase is Phase.FINISHED
                ),
                what="every row done after the retry",
                pause=pilot.pause,
            )
            await scenario.check(http)
            await pilot.press("q")
