"""When Canvas goes away the run stops in a clear state instead of failing records for ever,
and records waiting out a retry back-off lend their dispatch slot to fresh records.

- headless (its own process): Canvas killed mid-run -> exit 3, unfinished records pending, none
  failed; Canvas back -> the same command resumes and finishes, nothing duplicated;
- the console's runner pauses instead, says why, and a resume finishes the run;
- a resume re-sends records that failed for transient causes; `--retry-failed` the rest.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from canvas_tui.canvas.retry import CircuitBreaker, RetryPolicy
from canvas_tui.engine.state import Phase, RecordChanged, RetryScheduled
from canvas_tui.records import State
from canvas_tui.simulator import FaultRates, SimConfig, World, build_app
from canvas_tui.simulator.testing import asgi_transport, free_port, serve_in_thread
from tests.engine.conftest import session_for, sim_config
from tests.engine.workload import write_csv
from tests.helpers import eventually, eventually_async, exited, start_sync

pytestmark = pytest.mark.slow


def _counts(journal: Path) -> dict[str, int]:
    conn = sqlite3.connect(journal)
    try:
        return dict(conn.execute("SELECT state, COUNT(*) FROM records GROUP BY state"))
    finally:
        conn.close()


def _summary(out: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return summary


def test_headless_stops_with_records_pending_when_canvas_dies_then_resumes(
    tmp_path: Path,
) -> None:
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=20), world)
    total = 400
    write_csv(tmp_path / "in.csv", world, total)
    port = free_port()
    argv = ("in.csv", "--journal", "j", "--log-format", "json")
    with ExitStack() as canvas:
        base_url = canvas.enter_context(serve_in_thread(app, port=port))
        first = start_sync(tmp_path, base_url, *argv)
        eventually(
            lambda: app.stats()["enrollments_created"] >= 30,
            what="30 enrollments created",
            timeout=60,
            abort_if=exited(first),
        )
    # Canvas is gone: every connection is refused from here on
    out, err = first.communicate(timeout=120)
    assert first.returncode == 3, err
    summary = _summary(out)
    assert summary["phase"] == "aborted" and "Canvas unreachable" in summary["abort_reason"]
    counts = _counts(tmp_path / "j")
    assert counts.get("pending", 0) > 0 and counts.get("failed", 0) == 0
    assert counts.get("in_flight", 0) == 0

    with serve_in_thread(app, port=port) as base_url:
        second = start_sync(tmp_path, base_url, *argv)
        out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert _counts(tmp_path / "j") == {"done": total}
    stats = app.stats()
    assert stats["enrollments_created"] == total and stats["duplicates"] == 0


async def test_console_runner_pauses_when_canvas_dies_and_a_resume_finishes(
    tmp_path: Path,
) -> None:
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=20), world)
    total = 200
    write_csv(tmp_path / "in.csv", world, total)
    port = free_port()
    canvas = ExitStack()
    base_url = canvas.enter_context(serve_in_thread(app, port=port))
    session = session_for(
        tmp_path / "in.csv", tmp_path / "j", config=sim_config(base_url), time_scale=20
    )
    session.runner.breaker = CircuitBreaker(failures=10, seconds=1.0)
    run = asyncio.create_task(session.run())
    try:
        await eventually_async(
            lambda: app.stats()["enrollments_created"] >= 20,
            what="20 enrollments created",
            timeout=60,
            abort_if=run.done,
        )
        await asyncio.to_thread(canvas.close)
        await eventually_async(
            lambda: session.runner.snapshot().phase is Phase.PAUSED,
            what="the breaker's pause once Canvas is gone",
            timeout=120,
            abort_if=run.done,
        )
        state = session.runner.snapshot()
        assert state.paused_reason and "Canvas unreachable" in state.paused_reason
        # nothing failed; what is not done waits (pending, or claimed and holding in back-off)
        assert state.counts[State.FAILED] == 0
        assert state.counts[State.PENDING] + state.counts[State.IN_FLIGHT] > 0
        canvas.enter_context(serve_in_thread(app, port=port))
        session.runner.resume()
        state = await asyncio.wait_for(run, 120)
    finally:
        run.cancel()
        await asyncio.to_thread(canvas.close)
        await session.close()
    assert state.phase is Phase.FINISHED and state.counts[State.DONE] == total
    assert state.paused_reason is None
    assert app.stats()["duplicates"] == 0


async def test_a_record_in_back_off_does_not_hold_its_dispatch_slot(tmp_path: Path) -> None:
    """One slot (cap 1); a record's answer is a 500 and its retry waits 60 s. The other
    records go through meanwhile; before the fix they waited behind it."""
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=50), world)
    write_csv(tmp_path / "in.csv", world, 8)
    session = session_for(tmp_path / "in.csv", tmp_path / "j", transport=asgi_transport(app))
    assert session.client is not None
    session.client.retry_policy = RetryPolicy(initial=60.0, jitter=0.0)
    runner = session.runner
    runner.set_concurrency_cap(1)
    started: list[int] = []

    def on_event(event: object) -> None:
        if isinstance(event, RecordChanged) and event.state is State.IN_FLIGHT:
            started.append(event.record_id)
            # the second record's first request, and only it, fails (the first record has
            # warmed the run's shared caches, e.g. role ids, whose lock a back-off would hold)
            if len(started) == 2:
                app.set_faults(FaultRates(error_500=1.0))
        elif isinstance(event, RetryScheduled):
            app.set_faults(FaultRates())

    runner.subscribe(on_event)
    run = asyncio.create_task(session.run())
    try:
        await eventually_async(
            lambda: runner.snapshot().counts.get(State.DONE, 0) >= 7,
            what="seven records done",
            timeout=20,
            abort_if=run.done,
            detail=lambda: runner.snapshot().counts,
        )
        assert started[1] in runner.gate.backing_off  # still waiting out its 60 s
        runner.cancel()
        state = await asyncio.wait_for(run, 30)
    finally:
        await session.close()
    assert state.counts[State.DONE] == 7 and state.counts[State.PENDING] == 1


async def test_resume_resends_transient_failures_only(tmp_path: Path) -> None:
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=50, faults=FaultRates(html_503=1.0)), world)
    write_csv(tmp_path / "in.csv", world, 12, unknown_users=2)
    session = session_for(tmp_path / "in.csv", tmp_path / "j", transport=asgi_transport(app))
    assert session.client is not None
    session.client.retry_policy = RetryPolicy(max_attempts=1)
    session.runner.breaker = CircuitBreaker(failures=10_000)
    state = await session.run()
    await session.close()
    assert state.failures_by_category == {"server_error": 12}

    app.set_faults(FaultRates())
    again = session_for(tmp_path / "in.csv", tmp_path / "j", transport=asgi_transport(app))
    state = await again.run()
    await again.close()
    # the 503s are sent again by themselves; the unknown users need a fix (or --retry-failed)
    assert state.counts[State.DONE] == 10
    assert state.failures_by_category == {"user_not_found": 2}


def test_retry_failed_resends_the_rest_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from canvas_tui.cli import build_parser
    from canvas_tui.headless import main
    from canvas_tui.simulator import ADMIN_TOKEN

    world = World.generate(7)
    app = build_app(SimConfig(time_scale=50), world)
    write_csv(tmp_path / "in.csv", world, 10, unknown_users=2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CANVAS_API_TOKEN", ADMIN_TOKEN)

    def sync(*argv: str) -> int:
        return main(build_parser().parse_args(["sync", "in.csv", "--journal", "j", *argv]))

    with serve_in_thread(app) as base_url:
        monkeypatch.setenv("CANVAS_BASE_URL", base_url)
        assert sync() == 1
        assert _counts(tmp_path / "j") == {"done": 8, "failed": 2}
        for k in range(2):  # the registrar creates the missing users
            world.add_user(f"Late User {k}", f"NOBODY-{k}")
        assert sync() == 1  # a plain resume leaves a 404 alone: it needs a fix first
        assert sync("--retry-failed") == 0
    assert _counts(tmp_path / "j") == {"done": 10}
    assert app.stats()["duplicates"] == 0
