"""`canvas-tui watch`: changes reach Canvas, and what a term throws at a service is survived."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from canvas_tui.canvas.retry import CircuitBreaker, RetryPolicy
from canvas_tui.engine.watch import backoff
from canvas_tui.engine.watch_sources import open_poller
from canvas_tui.records import State
from canvas_tui.simulator import FaultRates, Simulator, World, build_app
from tests.helpers import eventually_async, fast_config, never_within_async, write_rows
from tests.watch.helpers import (
    SqliteSis,
    csv_config,
    enrollment_of,
    pairs,
    running,
    sql_config,
    state_in,
    with_plan,
)

HEADER = ["course_id", "user_id", "role", "section_id", "status"]


@pytest.fixture
def app() -> Simulator:
    return build_app(fast_config(), World.generate(7))


def _journal_rows(path: Path) -> list[tuple[str, str, str]]:
    """(user, status, state) of every record in the journal, in order."""
    db = sqlite3.connect(path)
    try:
        return [tuple(r) for r in db.execute("SELECT user, status, state FROM records")]
    finally:
        db.close()


async def test_sql_changes_reach_canvas_and_unchanged_rows_cost_nothing(
    app: Simulator, tmp_path: Path
) -> None:
    world = app.world
    sis = SqliteSis(tmp_path / "sis.db")
    chosen = pairs(world, 6)
    for n, pair in enumerate(chosen[:4], start=1):
        sis.put(n, pair)
    journal = tmp_path / "watch.journal"
    # an overlap of 10 re-reads every row at each poll: the snapshot diff must drop them
    config = sql_config(sis.url, cursor_overlap=10)
    async with running(config, app, journal) as run:
        await eventually_async(
            lambda: all(state_in(world, p) == "active" for p in chosen[:4]),
            what="the first rows active in Canvas",
            abort_if=run.done_or_failed,
        )
        sis.put(5, chosen[4])
        sis.put(2, chosen[1], status="deleted")  # the SIS drops one
        await eventually_async(
            lambda: (
                state_in(world, chosen[4]) == "active" and state_in(world, chosen[1]) == "deleted"
            ),
            what="the insert and the status change in Canvas",
            abort_if=run.done_or_failed,
        )
        polls = run.service.polls
        await eventually_async(lambda: run.service.polls >= polls + 5, what="five more polls")
        changes = run.named("changes")
    # every poll read every row again; only the changes reached the journal writer
    assert sum(e["changes"] for e in changes) == 6
    assert max(e["unchanged"] for e in changes) >= 3
    assert all(e["read"] == e["changes"] + e["unchanged"] for e in changes)
    rows = _journal_rows(journal)
    assert len(rows) == 6, rows  # 4 + 1 + 1 changes: re-read rows made no record
    assert [r[2] for r in rows] == ["done"] * 6
    assert rows[-1][1] == "deleted" or rows[-2][1] == "deleted"


async def test_section_move_drops_the_old_enrollment(app: Simulator, tmp_path: Path) -> None:
    """An updated row that names another section: a create there, and the old one dropped
    under drop_policy (the row id tells the service which row moved)."""
    world = app.world
    sis = SqliteSis(tmp_path / "sis.db")
    chosen = pairs(world, 12)
    for n, pair in enumerate(chosen[:10], start=1):
        sis.put(n, pair)
    config = with_plan(sql_config(sis.url), drop_policy="conclude", brake_max_share=1.0)
    async with running(config, app, tmp_path / "w.journal") as run:
        await eventually_async(
            lambda: all(state_in(world, p) == "active" for p in chosen[:10]),
            what="ten rows active",
            abort_if=run.done_or_failed,
        )
        user, course, _section = chosen[0]
        sections = [
            s.sis_section_id
            for s in world.sections_of(world.find_course(f"sis_course_id:{course}").id)  # type: ignore[union-attr]
            if s.sis_section_id and s.sis_section_id != chosen[0][2]
        ]
        if not sections:
            pytest.skip("the seeded course has one SIS section")
        moved = (user, course, sections[0])
        sis.put(1, moved)
        await eventually_async(
            lambda: (
                state_in(world, moved) == "active" and state_in(world, chosen[0]) == "completed"
            ),
            what="the move: active in the new section, concluded in the old",
            abort_if=run.done_or_failed,
        )


async def test_drop_from_a_snapshot_goes_through_the_brake(app: Simulator, tmp_path: Path) -> None:
    world = app.world
    chosen = pairs(world, 8)
    path = tmp_path / "enrollments.csv"
    rows = [[c, u, "student", s, "active"] for u, c, s in chosen]
    write_rows(path, rows, HEADER)
    config = with_plan(
        csv_config(path), drop_policy="inactivate", brake_max_count=2, brake_max_share=1.0
    )
    journal = tmp_path / "w.journal"
    async with running(config, app, journal) as run:
        await eventually_async(
            lambda: all(state_in(world, p) == "active" for p in chosen),
            what="every row active",
            abort_if=run.done_or_failed,
        )
        write_rows(path, rows[:5], HEADER)  # three rows gone: over brake_max_count
        await eventually_async(
            lambda: run.named("brake"), what="the brake", abort_if=run.done_or_failed
        )
        brake = run.named("brake")[0]
        assert brake["held"] == 3
        assert "brake_max_count is 2" in brake["reasons"][0]
        assert run.service.health()["brake"]
        await never_within_async(
            lambda: any(state_in(world, p) != "active" for p in chosen),
            0.5,
            what="a drop sent past the brake",
        )
    # The operator reviews them and allows three: the held drops go (no need to touch the file).
    async with running(config, app, journal, allow_drops=3) as run:
        await eventually_async(
            lambda: all(state_in(world, p) == "inactive" for p in chosen[5:]),
            what="the three drops inactive in Canvas",
            abort_if=run.done_or_failed,
        )
        assert all(state_in(world, p) == "active" for p in chosen[:5])
        assert not run.service.health()["brake"]


async def test_source_outage_backs_off_and_resumes(app: Simulator, tmp_path: Path) -> None:
    world = app.world
    sis = SqliteSis(tmp_path / "sis.db")
    chosen = pairs(world, 4)
    sis.put(1, chosen[0])
    async with running(sql_config(sis.url), app, tmp_path / "w.journal") as run:
        await eventually_async(
            lambda: state_in(world, chosen[0]) == "active",
            what="the first row",
            abort_if=run.done_or_failed,
        )
        # the registrar's database goes away (renamed: the query finds no table)
        (tmp_path / "sis.db").rename(tmp_path / "away.db")
        await eventually_async(
            lambda: run.named("source_unavailable"),
            what="the outage reported",
            abort_if=run.done_or_failed,
        )
        assert run.service.health()["ready"] is False
        assert run.service.health()["live"] is True
        (tmp_path / "away.db").replace(tmp_path / "sis.db")
        sis.put(2, chosen[1])
        sis.put(3, chosen[2])
        await eventually_async(
            lambda: (
                state_in(world, chosen[1]) == "active" and state_in(world, chosen[2]) == "active"
            ),
            what="the changes made during the outage",
            timeout=60,
            abort_if=run.done_or_failed,
        )
        assert run.named("source_back")
        assert run.service.health()["ready"] is True


async def test_canvas_outage_keeps_changes_and_resumes(app: Simulator, tmp_path: Path) -> None:
    world = app.world
    sis = SqliteSis(tmp_path / "sis.db")
    chosen = pairs(world, 6)
    sis.put(1, chosen[0])
    async with running(sql_config(sis.url), app, tmp_path / "w.journal") as run:
        await eventually_async(
            lambda: state_in(world, chosen[0]) == "active",
            what="the first row",
            abort_if=run.done_or_failed,
        )
        # short back-offs and a quick breaker: the outage shows in a second, not a minute
        session = run.service.session
        assert session.client is not None
        session.client.retry_policy = RetryPolicy(initial=0.02, maximum=0.1, max_attempts=4)
        run.service.runner.breaker = CircuitBreaker(failures=3, seconds=0.05)
        app.set_faults(FaultRates(html_503=1.0))  # every request: a load balancer's 503
        for n, pair in enumerate(chosen[1:], start=2):
            sis.put(n, pair)
        await eventually_async(
            lambda: run.named("canvas_unreachable"),
            what="the outage reported",
            abort_if=run.done_or_failed,
        )
        assert run.service.health()["ready"] is False
        assert all(state_in(world, p) is None for p in chosen[1:])
        app.set_faults(FaultRates())
        await eventually_async(
            lambda: all(state_in(world, p) == "active" for p in chosen[1:]),
            what="every change sent once Canvas is back",
            timeout=60,
            abort_if=run.done_or_failed,
        )
        await eventually_async(lambda: run.named("canvas_back"), what="canvas_back")
        assert run.service.health()["ready"] is True
    states = [r[2] for r in _journal_rows(tmp_path / "w.journal")]
    assert states == ["done"] * 6


async def test_drift_check_finds_a_hand_made_change(app: Simulator, tmp_path: Path) -> None:
    world = app.world
    chosen = pairs(world, 5)
    path = tmp_path / "enrollments.csv"
    write_rows(path, [[c, u, "student", s, "active"] for u, c, s in chosen], HEADER)
    async with running(csv_config(path), app, tmp_path / "w.journal") as run:
        await eventually_async(
            lambda: all(state_in(world, p) == "active" for p in chosen),
            what="every row active",
            abort_if=run.done_or_failed,
        )
        # someone concludes one enrollment by hand in Canvas; the source did not change
        enrollment = enrollment_of(world, chosen[2])
        assert enrollment is not None
        enrollment.workflow_state = "completed"
        run.service.request_drift()
        await eventually_async(
            lambda: run.named("drift"), what="the drift check", abort_if=run.done_or_failed
        )
        drift = run.named("drift")[0]
        assert drift["queued"] == 1, drift
        assert drift["in_place"] == 4
        await eventually_async(
            lambda: state_in(world, chosen[2]) == "active",
            what="the hand-made change undone",
            abort_if=run.done_or_failed,
        )


async def test_compaction_removes_finished_records_not_the_snapshot(
    app: Simulator, tmp_path: Path
) -> None:
    world = app.world
    sis = SqliteSis(tmp_path / "sis.db")
    chosen = pairs(world, 4)
    for n, pair in enumerate(chosen[:3], start=1):
        sis.put(n, pair)
    journal = tmp_path / "w.journal"
    async with running(sql_config(sis.url, cursor_overlap=100), app, journal) as run:
        await eventually_async(
            lambda: run.service.runner.snapshot().counts.get("done", 0) == 3,  # type: ignore[call-overload]
            what="three records done",
            abort_if=run.done_or_failed,
        )
        removed = await run.service.compact(before=10**12)  # every finished one but the newest
        assert removed == 2
        sis.put(4, chosen[3])
        await eventually_async(
            lambda: state_in(world, chosen[3]) == "active", what="a change after compaction"
        )
        polls = run.service.polls
        await eventually_async(lambda: run.service.polls >= polls + 3, what="three more polls")
    # the journal is whole: its pages, and the search index the compaction kept in step
    db = sqlite3.connect(journal)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.execute("INSERT INTO records_text(records_text, rank) VALUES ('integrity-check', 1)")
        assert db.execute("SELECT COUNT(*) FROM attempts WHERE record_id < 3").fetchone()[0] == 0
    finally:
        db.close()
    # the compacted rows were re-read at every poll (overlap 100) and made no new record
    assert [r[0] for r in _journal_rows(journal)] == [
        f"sis_user_id:{chosen[2][0]}",
        f"sis_user_id:{chosen[3][0]}",
    ]


async def test_drop_folder_reads_each_new_file_once_in_order(
    app: Simulator, tmp_path: Path
) -> None:
    world = app.world
    chosen = pairs(world, 4)
    folder = tmp_path / "incoming"
    folder.mkdir()

    def row(pair: tuple[str, str, str], status: str = "active") -> list[str]:
        user, course, section = pair
        return [course, user, "student", section, status]

    # each file is a delta: what is not in it stays as it is
    config = with_plan(csv_config(folder, csv_mode="delta"), drop_policy="delete")
    journal = tmp_path / "w.journal"
    write_rows(folder / "001.csv", [row(p) for p in chosen[:3]], HEADER)
    write_rows(folder / "002.csv.part", [row(chosen[3])], HEADER)  # still being written
    async with running(config, app, journal, interval=0.05) as run:
        await eventually_async(
            lambda: all(state_in(world, p) == "active" for p in chosen[:3]),
            what="the first file applied",
            abort_if=run.done_or_failed,
        )
        assert state_in(world, chosen[3]) is None
        (folder / "002.csv.part").rename(folder / "002.csv")
        write_rows(folder / "003.csv", [row(chosen[0], "deleted")], HEADER)
        await eventually_async(
            lambda: (
                state_in(world, chosen[3]) == "active" and state_in(world, chosen[0]) == "deleted"
            ),
            what="the next two files applied",
            abort_if=run.done_or_failed,
        )
        assert state_in(world, chosen[1]) == "active"  # a delta drops nothing
    # a restart reads no file again
    async with running(config, app, journal, interval=0.05) as run:
        polls = run.service.polls
        await eventually_async(
            lambda: run.service.polls >= polls + 5, what="five polls", abort_if=run.done_or_failed
        )
        assert run.service.state.processed == {"001.csv", "002.csv", "003.csv"}
        assert not run.named("changes")
    assert len(_journal_rows(journal)) == 5


async def test_a_csv_touched_but_unchanged_costs_nothing(app: Simulator, tmp_path: Path) -> None:
    world = app.world
    chosen = pairs(world, 3)
    path = tmp_path / "enrollments.csv"
    rows = [[c, u, "student", s, "active"] for u, c, s in chosen]
    write_rows(path, rows, HEADER)
    journal = tmp_path / "w.journal"
    async with running(csv_config(path), app, journal) as run:
        await eventually_async(
            lambda: all(state_in(world, p) == "active" for p in chosen),
            what="every row active",
            abort_if=run.done_or_failed,
        )
        requests = run.service.runner.snapshot().requests
        write_rows(path, rows, HEADER)  # written again, the same rows
        path.touch()
        polls = run.service.polls
        await eventually_async(
            lambda: run.service.polls >= polls + 5, what="five polls", abort_if=run.done_or_failed
        )
        assert run.service.runner.snapshot().requests == requests
    assert len(_journal_rows(journal)) == 3


async def test_a_later_change_supersedes_one_still_waiting(app: Simulator, tmp_path: Path) -> None:
    """Two changes of one row queued before the first is sent: only the last goes, so Canvas
    can never apply them out of order."""
    world = app.world
    sis = SqliteSis(tmp_path / "sis.db")
    chosen = pairs(world, 2)
    journal = tmp_path / "w.journal"
    async with running(sql_config(sis.url), app, journal) as run:
        await eventually_async(lambda: run.service.polls >= 1, what="the first poll")
        run.service.runner.pause()  # nothing is sent meanwhile
        sis.put(1, chosen[0])
        await eventually_async(
            lambda: len(_journal_rows(journal)) == 1,
            what="the insert queued",
            abort_if=run.done_or_failed,
        )
        sis.put(1, chosen[0], status="deleted")
        await eventually_async(
            lambda: len(_journal_rows(journal)) == 2,
            what="the delete queued",
            abort_if=run.done_or_failed,
        )
        run.service.runner.resume()
        await eventually_async(
            lambda: [r[2] for r in _journal_rows(journal)] == ["skipped", "done"],
            what="the first skipped, the second done",
            abort_if=run.done_or_failed,
        )
        # the runner counted the records as they came, the superseded one included
        await eventually_async(
            lambda: (
                {s: n for s, n in run.service.runner.snapshot().counts.items() if n}
                == {State.SKIPPED: 1, State.DONE: 1}
            ),
            what="the runner's counts",
            detail=lambda: run.service.runner.snapshot().counts,
        )
    # a `deleted` row whose enrollment does not exist: created, then deleted (Canvas's importer)
    assert state_in(world, chosen[0]) == "deleted"
    db = sqlite3.connect(journal)
    try:
        message = db.execute("SELECT message FROM records WHERE record_id = 1").fetchone()[0]
    finally:
        db.close()
    assert message == "superseded by a later change of the row (#2)"


async def test_a_drop_never_creates_what_is_gone_already(app: Simulator, tmp_path: Path) -> None:
    """A row gone from the source whose enrollment someone deleted in Canvas meanwhile: the drop
    looks it up and sends nothing (an `inactive` row would create one; a drop does not)."""
    world = app.world
    chosen = pairs(world, 3)
    path = tmp_path / "enrollments.csv"
    rows = [[c, u, "student", s, "active"] for u, c, s in chosen]
    write_rows(path, rows, HEADER)
    config = with_plan(csv_config(path), drop_policy="inactivate", brake_max_share=1.0)
    journal = tmp_path / "w.journal"
    async with running(config, app, journal) as run:
        await eventually_async(
            lambda: all(state_in(world, p) == "active" for p in chosen),
            what="every row active",
            abort_if=run.done_or_failed,
        )
        enrollment = enrollment_of(world, chosen[0])
        assert enrollment is not None
        enrollment.workflow_state = "deleted"  # by hand
        write_rows(path, rows[1:], HEADER)
        await eventually_async(
            lambda: len(_journal_rows(journal)) == 4 and _journal_rows(journal)[-1][2] == "done",
            what="the drop done",
            abort_if=run.done_or_failed,
        )
    assert state_in(world, chosen[0]) == "deleted"
    db = sqlite3.connect(journal)
    try:
        action, message = db.execute(
            "SELECT action, message FROM records WHERE record_id = 4"
        ).fetchone()
    finally:
        db.close()
    assert (action, message) == ("none", "nothing to do: already deleted")


async def test_canvas_away_at_start_is_waited_out(app: Simulator, tmp_path: Path) -> None:
    world = app.world
    sis = SqliteSis(tmp_path / "sis.db")
    chosen = pairs(world, 1)
    sis.put(1, chosen[0])
    app.set_faults(FaultRates(html_503=1.0))
    async with running(sql_config(sis.url), app, tmp_path / "w.journal") as run:
        await eventually_async(
            lambda: run.named("canvas_unreachable"),
            what="the outage at start reported",
            abort_if=run.done_or_failed,
        )
        assert not run.named("watching")
        app.set_faults(FaultRates())
        await eventually_async(
            lambda: state_in(world, chosen[0]) == "active",
            what="the row sent once Canvas answers",
            abort_if=run.done_or_failed,
        )
        assert run.named("canvas_back") and run.named("watching")


async def test_a_refused_token_stops_the_service(app: Simulator, tmp_path: Path) -> None:
    from dataclasses import replace

    from canvas_tui.config import CanvasConfig, Secret

    sis = SqliteSis(tmp_path / "sis.db")
    config = sql_config(sis.url)
    config = replace(config, canvas=CanvasConfig(base_url="http://127.0.0.1", token=Secret("nope")))
    async with running(config, app, tmp_path / "w.journal") as run:
        code = await run.task
        assert code == 3
        (aborted,) = run.named("aborted")
        assert "nope" not in str(aborted)  # the token is never written anywhere


async def test_a_change_retried_after_a_later_one_is_not_sent(
    app: Simulator, tmp_path: Path
) -> None:
    """A change failed for a server error, the row changed again and that went through: retrying
    the first (as a resume after an outage does) must not undo the second."""
    from canvas_tui.engine.watch import SUPERSEDED_LATE

    world = app.world
    sis = SqliteSis(tmp_path / "sis.db")
    chosen = pairs(world, 1)
    journal = tmp_path / "w.journal"
    async with running(sql_config(sis.url), app, journal) as run:
        await eventually_async(lambda: run.service.polls >= 1, what="the first poll")
        session = run.service.session
        assert session.client is not None
        session.client.retry_policy = RetryPolicy(initial=0.01, maximum=0.02, max_attempts=2)
        app.set_faults(FaultRates(error_500=1.0))
        sis.put(1, chosen[0])  # active: fails
        await eventually_async(
            lambda: [r[2] for r in _journal_rows(journal)] == ["failed"],
            what="the first change failed",
            abort_if=run.done_or_failed,
        )
        app.set_faults(FaultRates())
        sis.put(1, chosen[0], status="deleted")
        await eventually_async(
            lambda: [r[2] for r in _journal_rows(journal)] == ["failed", "done"],
            what="the second change done",
            abort_if=run.done_or_failed,
        )
        assert state_in(world, chosen[0]) == "deleted"
        assert run.service.runner.retry_failed() == 1
        await eventually_async(
            lambda: [r[2] for r in _journal_rows(journal)] == ["done", "done"],
            what="the first change settled",
            abort_if=run.done_or_failed,
        )
    assert state_in(world, chosen[0]) == "deleted"
    db = sqlite3.connect(journal)
    try:
        message = db.execute("SELECT message FROM records WHERE record_id = 1").fetchone()[0]
    finally:
        db.close()
    assert message == SUPERSEDED_LATE


async def test_the_first_read_is_planned_when_canvas_is_in_step_already(
    app: Simulator, tmp_path: Path
) -> None:
    """A service started beside a Canvas that holds the roster already: the first read plans
    against the rosters (a page per course) instead of reading each user's enrollments, and
    queues only what Canvas lacks."""
    from collections import Counter

    from tests.engine.workload import live_sis_students, sis_ids

    world = app.world
    students = live_sis_students(world)
    busiest = [c for c, _ in Counter(e.course_id for e in students).most_common(4)]
    existing = [sis_ids(world, e) for e in students if e.course_id in busiest]
    fresh = pairs(world, 3)
    path = tmp_path / "enrollments.csv"
    rows = [[c, u, "student", s, "active"] for c, u, s in existing]
    rows += [[c, u, "student", s, "active"] for u, c, s in fresh]
    write_rows(path, rows, HEADER)
    before = app.stats()["requests"]
    async with running(csv_config(path), app, tmp_path / "w.journal") as run:
        await eventually_async(
            lambda: all(state_in(world, p) == "active" for p in fresh),
            what="the three new rows active",
            abort_if=run.done_or_failed,
        )
        (first,) = run.named("first_read")
        assert first["mode"] == "plan" and first["records"] == len(rows)
        (changes,) = run.named("changes")
        assert (changes["in_place"], changes["changes"], changes["records"]) == (
            len(existing),
            3,
            3,
        )
    requests = app.stats()["requests"] - before
    # a roster page or so per course, the token check, then a request or two per new row
    assert requests < 30 < 2 * len(rows), requests
    assert len(_journal_rows(tmp_path / "w.journal")) == 3


async def test_a_stop_during_a_canvas_outage_leaves_the_changes_pending(
    app: Simulator, tmp_path: Path
) -> None:
    """SIGTERM while Canvas is away: the service stops at once (exit 0) and the changes it
    could not send stay pending in the journal, for the next start."""
    world = app.world
    sis = SqliteSis(tmp_path / "sis.db")
    chosen = pairs(world, 3)
    journal = tmp_path / "w.journal"
    async with running(sql_config(sis.url), app, journal) as run:
        await eventually_async(lambda: run.service.polls >= 1, what="the first poll")
        session = run.service.session
        assert session.client is not None
        session.client.retry_policy = RetryPolicy(initial=0.02, maximum=0.1, max_attempts=50)
        run.service.runner.breaker = CircuitBreaker(failures=3, seconds=0.05)
        app.set_faults(FaultRates(html_503=1.0))
        for n, pair in enumerate(chosen, start=1):
            sis.put(n, pair)
        await eventually_async(
            lambda: run.named("canvas_unreachable"),
            what="the outage",
            abort_if=run.done_or_failed,
        )
        run.service.stop()
        assert await asyncio.wait_for(run.task, 10) == 0
    assert [r[2] for r in _journal_rows(journal)] == ["pending"] * 3
    app.set_faults(FaultRates())
    # the next start sends them
    async with running(sql_config(sis.url), app, journal) as run:
        await eventually_async(
            lambda: all(state_in(world, p) == "active" for p in chosen),
            what="the changes sent after the restart",
            abort_if=run.done_or_failed,
        )


def test_the_back_off_doubles_from_its_base_to_a_minute() -> None:
    """One rule for the source's polls (from the poll interval) and Canvas's outages (from 1 s)."""
    assert [backoff(n, 0.5) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert [backoff(n) for n in (1, 2, 5)] == [2.0, 4.0, 32.0]
    assert backoff(6) == backoff(40, 3.0) == 60.0


@pytest.mark.parametrize("mode", [None, "snapshot"], ids=["default", "snapshot"])
async def test_a_drop_folder_is_a_delta_unless_configured_whole(
    app: Simulator, tmp_path: Path, mode: str | None
) -> None:
    """A file dropped in with some rows (today's adds) drops nothing it leaves out: a folder's
    files are deltas by default (never change in Canvas what the source does not ask); the
    `watching` line says so. Configured "snapshot", the same second file drops the rest."""
    world = app.world
    chosen = pairs(world, 4)
    rows = [[c, u, "student", s, "active"] for u, c, s in chosen]
    folder = tmp_path / "incoming"
    folder.mkdir()
    settings = {} if mode is None else {"csv_mode": mode}
    config = with_plan(csv_config(folder, **settings), drop_policy="delete", brake_max_share=1.0)
    write_rows(folder / "001.csv", rows[:3], HEADER)
    async with running(config, app, tmp_path / "w.journal", interval=0.05) as run:
        await eventually_async(
            lambda: all(state_in(world, p) == "active" for p in chosen[:3]),
            what="the first file applied",
            abort_if=run.done_or_failed,
        )
        assert run.named("watching")[0]["csv_mode"] == (mode or "delta")
        write_rows(folder / "002.csv", rows[3:], HEADER)  # one new row, and only it
        await eventually_async(
            lambda: state_in(world, chosen[3]) == "active",
            what="the second file applied",
            abort_if=run.done_or_failed,
        )
        if mode is None:
            await never_within_async(
                lambda: any(state_in(world, p) != "active" for p in chosen[:3]),
                0.5,
                what="a drop of a row the delta left out",
            )
        else:
            await eventually_async(
                lambda: all(state_in(world, p) == "deleted" for p in chosen[:3]),
                what="the rows the whole roster lacks dropped",
                abort_if=run.done_or_failed,
            )


def test_a_csv_file_is_a_snapshot_by_default(tmp_path: Path) -> None:
    poller = open_poller(csv_config(tmp_path / "in.csv"))
    assert poller.csv_mode == "snapshot"
    assert open_poller(csv_config(tmp_path / "in.csv", csv_mode="delta")).csv_mode == "delta"
