"""The operator's abort of a running SIS import, as a run command (`RunCommands.abort_import`):
an import cannot be paused, so the console offers this instead (issue 15). What the console's
badge reads of it: `ImportStatus.abort`."""

from __future__ import annotations

import asyncio

from canvas_tui.engine.plan.executor import prepare_sync
from canvas_tui.engine.state import ImportStatus
from canvas_tui.records import State
from tests.engine.sis_import_helpers import Bulk, _status
from tests.engine.sis_import_helpers import bulk as bulk  # the fixture, shared
from tests.helpers import eventually_async


async def test_abort_import_puts_abort_and_the_poll_settles_every_row(bulk: Bulk) -> None:
    rows = [bulk.row(user) for user in bulk.users[:80]]
    bulk.app.sis_imports.rows_per_second = 20.0  # slow enough to abort mid-run
    session = bulk.session(rows, bulk.config())
    try:
        # the upload starts while the journal loads (apply_plan's start_early), so by now the
        # import may or may not be on Canvas: abort is asked only once it runs
        await prepare_sync(session, requested=None, allow_drops=None)
        run = asyncio.create_task(session.run())

        def importing() -> ImportStatus | None:
            status = _status(session)
            return status if status.workflow_state == "importing" else None

        await eventually_async(importing, what="the import running", interval=0.005)
        assert session.runner.abort_import()
        state = await run
        status = state.sis_import
        assert status is not None and status.workflow_state == "aborted"
        assert status.abort == "accepted"
        put = bulk.app.stats()["requests_by_endpoint"]
        assert put.get("abort_sis_import") == 1, put
        # every row is accounted for: landed (done) or failed as sis_import, none left in flight
        assert state.counts.get(State.IN_FLIGHT, 0) == 0 and state.counts.get(State.PENDING, 0) == 0
        assert state.finished == len(rows)
        failed = session.store.failed_ids("sis_import")
        assert failed and session.runner.abort_import() is False  # it ended: nothing to abort
    finally:
        await session.close()
