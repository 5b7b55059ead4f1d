"""A bad day at Canvas, over a real loopback socket: seeded 500s, HTML 503s from the load
balancer, connection resets before and after the write, answers slower than the client's timeout,
and throttle storms. Every record must still end done, failed or skipped, the counts must
reconcile with the input, and the simulator must hold no duplicate enrollment."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from canvas_tui.engine.state import Phase
from canvas_tui.records import State
from canvas_tui.simulator import ADMIN_TOKEN, FaultRates, SimConfig, Simulator, World, build_app
from canvas_tui.simulator.testing import serve_in_thread
from tests.engine.conftest import session_for, sim_config
from tests.engine.helpers import canvas_id
from tests.engine.workload import HEADER, fresh_pairs, live_sis_students, sis_ids
from tests.helpers import write_rows

pytestmark = pytest.mark.slow

CREATES = 150
CHANGES = 15  # inactivate / conclude / delete of enrollments the world already has
BAD_ROWS = 5
TIME_SCALE = 20.0


def _workload(path: Path, world: World) -> tuple[int, dict[int, str]]:
    """Write the CSV; returns (rows, enrollment id -> the state its row asks for)."""
    rows: list[list[str]] = [
        [course, user, "student", section, "active", "x"]
        for user, course, section in fresh_pairs(world, CREATES)
    ]
    wanted: dict[int, str] = {}
    for k, e in enumerate(live_sis_students(world)[:CHANGES]):
        status, final = (
            ("inactive", "inactive"),
            ("completed", "completed"),
            ("deleted", "deleted"),
        )[k % 3]
        wanted[e.id] = final
        course, user, section = sis_ids(world, e)
        rows.append([course, user, "student", section, status, "x"])
    rows += [[rows[k][0], rows[k][1], "student", "", "bogus", "x"] for k in range(BAD_ROWS)]
    write_rows(path, rows, HEADER)
    return len(rows), wanted


async def _storms(app: Simulator, stop: asyncio.Event) -> None:
    """Fill the token's bucket to just under the high-water mark, again and again. The first
    storm comes early: on a quiet machine the whole run can take under two seconds."""
    pause = 0.5
    while not stop.is_set():
        await asyncio.sleep(pause)
        with app.lock:
            app.token_bucket(ADMIN_TOKEN).fill(590.0)
        pause = 2.0


@pytest.mark.parametrize("throttle_status", [429, 403])
async def test_every_record_accounted_for_under_faults(
    tmp_path: Path, throttle_status: int
) -> None:
    world = World.generate(7)
    faults = FaultRates(
        error_500=0.05,
        html_503=0.02,
        reset_before=0.02,
        reset_after=0.02,
        slow=0.01,
        slow_seconds=30.0,  # 1.5 s at time scale 20: three times the client's timeout
    )
    app = build_app(
        SimConfig(seed=7, time_scale=TIME_SCALE, throttle_status=throttle_status, faults=faults),
        world,
    )
    total, wanted = _workload(tmp_path / "in.csv", world)
    with serve_in_thread(app) as base_url:
        session = session_for(
            tmp_path / "in.csv",
            tmp_path / "j",
            config=sim_config(base_url, timeout=0.5),
            time_scale=TIME_SCALE,
        )
        stop = asyncio.Event()
        storms = asyncio.create_task(_storms(app, stop))
        try:
            state = await asyncio.wait_for(session.run(), 60)
        finally:
            stop.set()
            await storms
        stats = app.stats()
        created = [r for r in session.store.iter_rows(state=State.DONE) if r.action == "create"]
        await session.close()

    assert state.phase == Phase.FINISHED
    assert state.total == total == state.finished
    assert state.counts[State.PENDING] == state.counts[State.IN_FLIGHT] == 0
    assert state.counts[State.DONE] == CREATES + CHANGES
    assert state.failures_by_category == {"invalid_input": BAD_ROWS}
    # Every fault kind happened, and the client saw throttles and retried through them.
    for kind in ("error_500", "html_503", "reset_before", "reset_after", "slow"):
        assert stats["faults"].get(kind, 0) > 0, (kind, stats["faults"])
    assert stats["throttled"] > 0
    assert state.retries > 0
    # Nothing duplicated, every change landed.
    assert stats["duplicates"] == 0
    assert stats["enrollments_created"] == CREATES
    for enrollment_id, final in wanted.items():
        assert world.enrollments[enrollment_id].workflow_state == final
    assert len(created) == CREATES
    assert all(world.enrollments[canvas_id(r)].workflow_state == "active" for r in created)
