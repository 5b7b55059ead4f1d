"""`canvas-tui watch` over a real PostgreSQL table with an `updated_at` cursor: inserts, updates
and deletes outright reach Canvas, and a restart reads on from the journal's cursor."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from canvas_tui.simulator import Simulator, World, build_app
from tests.conftest import listening, require_service
from tests.helpers import eventually_async, fast_config
from tests.watch.helpers import (
    PostgresSis,
    pairs,
    running,
    sql_config,
    state_in,
    with_plan,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def sis() -> Iterator[PostgresSis]:
    require_service("postgresql", listening(5432), "127.0.0.1:5432")
    table = PostgresSis()
    try:
        yield table
    finally:
        table.drop()


@pytest.fixture
def app() -> Simulator:
    return build_app(fast_config(), World.generate(7))


def _count(journal: Path) -> int:
    db = sqlite3.connect(journal)
    try:
        return int(db.execute("SELECT COUNT(*) FROM records").fetchone()[0])
    finally:
        db.close()


async def test_postgres_inserts_updates_and_deletes(
    sis: PostgresSis, app: Simulator, tmp_path: Path
) -> None:
    world = app.world
    chosen = pairs(world, 10)
    for n, pair in enumerate(chosen[:8], start=1):
        sis.put(n, pair)
    config = with_plan(
        sql_config(
            sis.url, sis.query, cursor_column="updated_at", cursor_overlap=2.0, full_every=0.3
        ),
        drop_policy="inactivate",
        brake_max_share=1.0,
    )
    journal = tmp_path / "w.journal"
    async with running(config, app, journal) as run:
        await eventually_async(
            lambda: all(state_in(world, p) == "active" for p in chosen[:8]),
            what="eight rows active",
            abort_if=run.done_or_failed,
        )
        sis.put(9, chosen[8])  # an insert
        sis.put(2, chosen[1], status="completed")  # an update
        sis.delete(3)  # a delete outright: seen by the next full read, a drop
        await eventually_async(
            lambda: (
                state_in(world, chosen[8]) == "active"
                and state_in(world, chosen[1]) == "completed"
                and state_in(world, chosen[2]) == "inactive"
            ),
            what="the insert, the update and the delete in Canvas",
            abort_if=run.done_or_failed,
        )
        assert run.service.state.cursor is not None
    changes = _count(journal)
    assert changes == 8 + 3
    # a restart reads on from the journal's cursor: nothing is sent again
    async with running(config, app, journal) as run:
        polls = run.service.polls
        await eventually_async(
            lambda: run.service.polls >= polls + 5, what="five polls", abort_if=run.done_or_failed
        )
        sis.put(10, chosen[9])
        await eventually_async(
            lambda: state_in(world, chosen[9]) == "active",
            what="a change after the restart",
            abort_if=run.done_or_failed,
        )
    assert _count(journal) == changes + 1
