"""A course to the front (issue 17): its pending records go before every other, the rest wait
until they have all ended; the move is journaled and survives a resume. Against the simulator."""

from __future__ import annotations

import asyncio
import csv
import sqlite3
from pathlib import Path

import pytest

from canvas_tui.engine.journal import Journal, Outcome
from canvas_tui.engine.state import Event, Phase, RecordChanged
from canvas_tui.paths import default_journal_dir
from canvas_tui.records import FINAL_STATES, State
from canvas_tui.simulator import LatencyModel, SimConfig, Simulator, World, build_app
from canvas_tui.simulator.testing import asgi_transport
from tests.engine.conftest import session_for
from tests.engine.helpers import items, record
from tests.engine.workload import HEADER, fresh_pairs
from tests.helpers import eventually_async, sync, write_rows


def front_source(path: Path, world: World, n: int = 160, ours: int = 40) -> str:
    """`n` creates, `ours` of them in one course, all at the end of the file (the last to go in
    source order). Returns that course's SIS id."""
    course = next(
        c
        for c in world.courses.values()
        if c.sis_course_id
        and "/" not in c.sis_course_id
        and c.workflow_state == "available"
        and not c.concluded
        and any(s.sis_section_id for s in world.sections_of(c.id))
    )
    assert course.sis_course_id is not None
    section = next(s.sis_section_id for s in world.sections_of(course.id) if s.sis_section_id)
    enrolled = {e.user_id for e in world.enrollments.values() if e.course_id == course.id}
    users = [
        u.sis_user_id
        for u in world.users.values()
        if u.sis_user_id and u.sis_user_id.startswith("S1") and u.id not in enrolled
    ][:ours]
    others = [p for p in fresh_pairs(world, n) if p[1] != course.sis_course_id][: n - ours]
    rows = [[c, u, "student", s, "active"] for u, c, s in others]
    rows += [[course.sis_course_id, u, "student", section, "active"] for u in users]
    write_rows(path, rows, HEADER[:5])
    return course.sis_course_id


def _attempt_times(journal: Path) -> dict[int, tuple[float, float]]:
    """record id -> (its first attempt's start, its last attempt's end)."""
    conn = sqlite3.connect(journal)
    try:
        found = conn.execute(
            "SELECT record_id, MIN(started_at), MAX(finished_at) FROM attempts GROUP BY record_id"
        ).fetchall()
    finally:
        conn.close()
    return {int(r): (float(s), float(f)) for r, s, f in found}


def _course_of(journal: Path) -> dict[int, str]:
    conn = sqlite3.connect(journal)
    try:
        return {int(r): str(c) for r, c in conn.execute("SELECT record_id, course FROM records")}
    finally:
        conn.close()


# ---- the journal --------------------------------------------------------------------------------


def test_moves_are_journaled_in_order_and_ended_records_leave_the_queue(journal: Journal) -> None:
    journal.load(
        [record(i, course="A" if i % 3 == 0 else "B" if i % 3 == 1 else "C") for i in range(1, 13)],
        description="in.csv",
    )
    assert journal.front_queue() == [] and journal.front_moves() == []
    a = journal.to_front(label="A", courses=["sis_course_id:A"])
    assert a == [3, 6, 9, 12]
    b = journal.to_front(label="B", courses=["sis_course_id:B"])
    assert b == [1, 4, 7, 10]
    assert journal.front_queue() == [1, 4, 7, 10, 3, 6, 9, 12]  # the later move first
    assert [(m[0], m[2], m[3]) for m in journal.front_moves()] == [(1, "A", 4), (2, "B", 4)]
    journal.post_outcome(4, Outcome(State.DONE, action="create"))
    journal.transition([7], State.SKIPPED, only_from=[State.PENDING])
    journal.flush_sync()
    assert journal.front_queue() == [1, 10, 3, 6, 9, 12]
    assert journal.to_front(label="none", courses=["sis_course_id:Z"]) == []
    assert len(journal.front_moves()) == 2  # a move of nothing is no move


def test_a_text_filter_moves_what_the_queue_shows(journal: Journal) -> None:
    journal.load(items(30), description="in.csv")
    moved = journal.to_front(label="filter", text="U2")  # U2, U20..U29
    assert moved == [2, *range(20, 30)]


def test_an_older_journal_read_only_has_no_front(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "data" / "schema1.journal"
    old = Journal(fixture, read_only=True, immutable=True)
    try:
        assert old.front_queue() == [] and old.front_moves() == []
    finally:
        old.close()


# ---- the runner, mid-run --------------------------------------------------------------------------


def _busy_simulator(world: World, time_scale: float = 20) -> Simulator:
    """Answers slow enough that the governor's slots, not the queue, bound the run."""
    return build_app(
        SimConfig(time_scale=time_scale, latency=LatencyModel.uniform(0.25), cost_jitter=0.0),
        world,
    )


async def test_mid_run_the_moved_course_ends_before_any_other_record_starts(
    tmp_path: Path,
) -> None:
    world = World.generate(7)
    app = _busy_simulator(world, time_scale=5)  # the others are still pending at the move
    course = front_source(tmp_path / "in.csv", world)
    session = session_for(
        tmp_path / "in.csv", tmp_path / "j", transport=asgi_transport(app), time_scale=5
    )
    await session.load()
    runner = session.runner
    events: list[Event] = []
    runner.subscribe(events.append)
    run = asyncio.create_task(session.run())
    await eventually_async(
        lambda: runner.snapshot().counts.get(State.DONE, 0) >= 20, what="20 records done"
    )
    peak = runner.snapshot().governor.limit
    cut = len(events)
    moved = runner.to_front(course=course)
    assert moved > peak  # more than the governor lets out at once: it stays saturated
    state = runner.snapshot()
    assert state.front is not None and state.front.label == course
    assert state.front.moved == moved
    final = await run
    assert final.phase is Phase.FINISHED and final.counts[State.DONE] == final.total
    assert final.front is not None and final.front.left == 0

    courses = _course_of(tmp_path / "j")
    after = [e for e in events[cut:] if isinstance(e, RecordChanged)]
    ours = [i for i, e in enumerate(after) if courses[e.record_id] == f"sis_course_id:{course}"]
    ended = max(i for i in ours if after[i].state in FINAL_STATES)
    started_rest = [
        i
        for i, e in enumerate(after)
        if e.state is State.IN_FLIGHT and courses[e.record_id] != f"sis_course_id:{course}"
    ]
    assert started_rest, "the other records were sent after the course"
    assert ended < min(started_rest)
    await session.close()


async def test_a_move_survives_a_resume(tmp_path: Path) -> None:
    world = World.generate(7)
    app = _busy_simulator(world)
    course = front_source(tmp_path / "in.csv", world, n=60)
    first = session_for(
        tmp_path / "in.csv", tmp_path / "j", transport=asgi_transport(app), time_scale=20
    )
    await first.load()
    moved = first.runner.to_front(course=course)
    assert moved
    await first.close()  # nothing sent: the next session resumes the journal

    again = session_for(
        tmp_path / "in.csv", tmp_path / "j", transport=asgi_transport(app), time_scale=20
    )
    assert again.resumed
    state = again.runner.snapshot()
    assert state.front is not None and (state.front.label, state.front.left) == (course, moved)
    assert (await again.run()).phase is Phase.FINISHED
    await again.close()
    times = _attempt_times(tmp_path / "j")
    courses = _course_of(tmp_path / "j")
    ours = [t for r, t in times.items() if courses[r] == f"sis_course_id:{course}"]
    rest = [t for r, t in times.items() if courses[r] != f"sis_course_id:{course}"]
    assert len(ours) == moved
    assert max(end for _, end in ours) <= min(start for start, _ in rest)


# ---- headless ---------------------------------------------------------------------------------


def test_sync_first_sends_the_course_before_the_rest_under_a_busy_governor(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    course = front_source(tmp_path / "busy.csv", sim.world)
    assert sync("busy.csv", "--first", course, "--log-format", "json") == 0
    out = capsys.readouterr().out
    assert '"message": "moved to the front"' in out
    journal = next(default_journal_dir().glob("*.journal"))
    times = _attempt_times(journal)
    courses = _course_of(journal)
    ours = [t for r, t in times.items() if courses[r] == f"sis_course_id:{course}"]
    rest = [t for r, t in times.items() if courses[r] != f"sis_course_id:{course}"]
    assert len(ours) > 11 and len(rest) > 100  # more than one governor's worth of each
    # the course's last answer came before the first request of any other record
    assert max(end for _, end in ours) <= min(start for start, _ in rest)
    # and the governor was busy with it: several of its records were out at once
    events = sorted([(s, 1) for s, _ in ours] + [(e, -1) for _, e in ours])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    assert peak >= 4


def test_sync_first_of_a_course_with_nothing_pending_warns(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sync("good.csv", "--first", "NO-SUCH-COURSE", "--log-format", "json") == 0
    assert "--first NO-SUCH-COURSE: no pending records of that course" in capsys.readouterr().out


def test_sync_first_with_a_sis_import_says_the_import_has_no_order(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """The import takes the plan's changes before --first is weighed: a bare "no pending
    records" read as if the course were not in the source."""
    with open("mixed.csv", newline="") as f:
        course = next(r["course_id"] for r in csv.DictReader(f) if r["course_id"])
    assert sync("mixed.csv", "--via", "sis-import", "--first", course) == 1
    out = capsys.readouterr().out
    assert f"--first {course}: no pending records of that course; the SIS import carries" in out


async def test_moving_twice_counts_each_record_once_and_names_both(tmp_path: Path) -> None:
    world = World.generate(7)
    app = _busy_simulator(world)
    course = front_source(tmp_path / "in.csv", world, n=60, ours=20)
    session = session_for(
        tmp_path / "in.csv", tmp_path / "j", transport=asgi_transport(app), time_scale=20
    )
    await session.load()
    runner = session.runner
    other = session.store.get(1)
    assert other is not None and other.course is not None
    assert runner.to_front(course=course) == 20
    assert runner.to_front(course=other.course) > 0
    assert runner.to_front(course=course) == 20  # again: first once more, counted once
    state = runner.snapshot().front
    assert state is not None
    others = state.moved - 20
    assert state.left == state.moved == 20 + others
    assert state.label == f"{course}, {other.course.split(':', 1)[1]}"
    assert runner.snapshot().front == state
    await session.close()
    again = session_for(
        tmp_path / "in.csv", tmp_path / "j", transport=asgi_transport(app), time_scale=20
    )
    assert again.runner.snapshot().front == state  # the same, read back from the journal
    await again.close()
