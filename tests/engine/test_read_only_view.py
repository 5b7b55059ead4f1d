"""A read-only view of a run another process is sending (a served tab, `console --read-only`):
its snapshot's counts follow the journal, read at most once a second."""

from __future__ import annotations

from pathlib import Path

from canvas_tui.canvas.governor import Governor
from canvas_tui.engine.journal import Journal, Outcome
from canvas_tui.engine.runner import READ_ONLY_REFRESH, Runner
from canvas_tui.engine.session import _ReadOnly
from canvas_tui.records import State
from tests.engine.helpers import items


def test_a_read_only_view_follows_the_counts_of_a_live_run(tmp_path: Path) -> None:
    writer = Journal(tmp_path / "run.journal")
    writer.load(items(10), description="in.csv")
    view = Journal(tmp_path / "run.journal", read_only=True, immutable=True)
    now = [100.0]
    runner = Runner(view, _ReadOnly(), Governor(), clock=lambda: now[0])
    try:
        assert runner.snapshot().counts[State.PENDING] == 10
        for record_id in (1, 2, 3):
            writer.post_outcome(record_id, Outcome(State.DONE, action="create"))
        writer.post_outcome(4, Outcome(State.FAILED, category="user_not_found", message="x"))
        writer.flush_sync()
        assert runner.snapshot().counts[State.DONE] == 0  # not before a second has passed
        now[0] += READ_ONLY_REFRESH
        state = runner.snapshot()
        assert state.counts[State.DONE] == 3 and state.counts[State.PENDING] == 6
        assert state.failures_by_category == {"user_not_found": 1}
        version = state.failures_version
        now[0] += READ_ONLY_REFRESH
        assert runner.snapshot().failures_version == version  # nothing new failed
    finally:
        view.close()
        writer.close()
