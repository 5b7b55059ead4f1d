"""The source is streamed, never held: memory must not grow with the rows (issue 14).

Each test runs the same path over a small and a four-times larger generated source and bounds
how much tracemalloc's peak grows between them: holding the rows (a list of records, a Step
per row) costs about a kilobyte a row, streaming them a few bytes. The rows are generated into
a file (CSV) or a SQLite table in the test's directory; tracemalloc makes Python ~10x slower,
so the sizes stay small and the bound is on growth, not an absolute figure. A million rows in
a fresh process (peak RSS) are in benchmarks/bench_sources.py."""

from __future__ import annotations

import asyncio
import csv
import sqlite3
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from canvas_tui.config import PlanConfig
from canvas_tui.engine.plan.diff import Action, Plan, Step, StepKind, Tally, build_plan
from canvas_tui.engine.plan.executor import SourceCounts, prepare_sync
from canvas_tui.engine.plan.render import write_plan
from canvas_tui.engine.plan.rosters import UNREAD_FIELDS, Roster, fetch_rosters, kept
from canvas_tui.engine.preflight import Census, plan_and_preflight
from canvas_tui.engine.roster_match import ALL_STATES
from canvas_tui.engine.session import Session
from canvas_tui.records import EnrollmentRecord, Provenance, SisStatus, Source
from canvas_tui.simulator import World
from canvas_tui.sources import CsvSource, SqlSource
from tests.plan.conftest import HEADER, Arena

SMALL, LARGE = 1_500, 4_500
# Bytes of peak growth allowed per extra row: the plan's per-row arrays take 16-40.
PER_ROW = 150


@pytest.fixture(autouse=True)
def _small_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Buffers that are bounded, but by more than these sources' size, made small so that
    both sizes fill them: the CSV's decoded block and the journal's chunks of rows in flight."""
    monkeypatch.setattr("canvas_tui.sources.csv._BLOCK", 1 << 14)
    monkeypatch.setattr("canvas_tui.engine.journal._LOAD_CHUNK", 200)
    monkeypatch.setattr("canvas_tui.engine.journal._FIRST_CHUNKS", ())


def _rows(count: int, courses: int) -> Iterator[tuple[str, ...]]:
    for n in range(count):
        course = f"C{n % courses:03d}"
        yield (course, f"U{n:07d}", "student", f"{course}-01", "active")


def _csv(path: Path, count: int, courses: int = 40) -> CsvSource:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(_rows(count, courses))
    return CsvSource(path)


def _sqlite(path: Path, count: int) -> SqlSource:
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE enrollments ({', '.join(c + ' TEXT' for c in HEADER)})")
    db.executemany("INSERT INTO enrollments VALUES (?, ?, ?, ?, ?)", _rows(count, 40))
    db.commit()
    db.close()
    return SqlSource(f"sqlite:///{path}", "SELECT * FROM enrollments")


def _peak(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def _peak_async(run: Callable[[], Awaitable[object]]) -> int:
    tracemalloc.start()
    try:
        await run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _assert_flat(small: int, large: int) -> None:
    growth = large - small
    assert growth < PER_ROW * (LARGE - SMALL), (
        f"peak grew {growth / 2**20:.1f} MiB for {LARGE - SMALL} more rows "
        f"({growth / (LARGE - SMALL):.0f} bytes a row): the rows are held"
    )


def _plan_and_write(source: Source, out: Path) -> None:
    """What `canvas-tui plan` does without Canvas: count, diff against read rosters, write."""
    counts = SourceCounts.of(source)
    rosters = {scope: Roster(scope, pages=1) for scope in counts.per_scope}  # empty courses
    plan = build_plan(source, rosters, PlanConfig())
    assert plan.record_counts().total() == counts.records
    write_plan(plan, out)


@pytest.mark.parametrize("kind", ["csv", "sqlite"])
def test_planning_a_source_holds_no_row(tmp_path: Path, kind: str) -> None:
    def source(count: int) -> Source:
        path = tmp_path / f"{kind}-{count}"
        return _csv(path, count) if kind == "csv" else _sqlite(path, count)

    small, large = source(SMALL), source(LARGE)
    _assert_flat(
        _peak(lambda: _plan_and_write(small, tmp_path / "small")),
        _peak(lambda: _plan_and_write(large, tmp_path / "large")),
    )


@pytest.mark.parametrize("while_loading", [False, True], ids=["plan-first", "while-loading"])
@pytest.mark.parametrize("requested", [None, True, False], ids=["auto", "plan", "no-plan"])
async def test_a_run_loads_its_journal_holding_no_row(
    arena: Arena, requested: bool | None, while_loading: bool
) -> None:
    """The run's path in every mode: choosing the mode, the plan, and the journal's load
    (`while_loading`: as `sync` does it, the plan made as the load reads the rows)."""
    course = arena.course.sis_course_id
    section = arena.section.sis_section_id
    assert course is not None and section is not None
    peaks = []
    for count in (SMALL, LARGE):
        path = arena.tmp / f"in-{count}.csv"
        rows = ((course, f"U{n:07d}", "student", section, "active") for n in range(count))
        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([HEADER, *rows])
        session = arena.session(path, arena.config(), f"run-{count}")

        async def run(session: Session = session, count: int = count) -> None:
            decision = await prepare_sync(
                session, requested=requested, allow_drops=None, load=not while_loading
            )
            assert decision.refused is None
            assert await session.load() == count
            if decision.planned:
                assert (decision.builder is not None) is while_loading
                assert decision.plan is not None
                assert decision.plan.record_counts().total() == count

        try:
            peaks.append(await _peak_async(run))
        finally:
            await session.close()
    _assert_flat(*peaks)


def _world_rows(world: World, count: int) -> Iterator[list[str]]:
    """`count` distinct rows of the world's users in its open courses, as bench_stream.py makes
    them: every (course, user) once per role, then the next role (numbered custom roles), so
    users repeat as in an SIS export and only the rows grow."""
    courses = [
        c
        for c in world.courses.values()
        if c.sis_course_id and c.workflow_state == "available" and not c.concluded
    ]
    users = [u.sis_user_id for u in world.users.values() if u.sis_user_id]
    roles = ["student", "teacher", "ta", "designer"]
    n = 0
    for round_ in range(count):
        role = roles[round_] if round_ < len(roles) else f"Custom{round_}"
        for user in users:
            for course in courses:
                if n == count:
                    return
                sections = [s.sis_section_id for s in world.sections_of(course.id)]
                section = next((s for s in sections if s), "")
                yield [course.sis_course_id or "", user or "", role, section, "active"]
                n += 1


# Both sizes keep the duplicate index at one capacity (65,536 slots: 16,384 to 32,767 rows), so
# the growth measured is what is kept per row, not the index's doubling; the gap is wide so that
# the peak's noise (~35 KB in a full session) stays under the bound.
WRITTEN_SMALL, WRITTEN_LARGE = 16_500, 32_000
WRITTEN_PER_ROW = 6  # bytes; the per-row arrays an applied plan keeps take 12


def test_a_plan_only_written_down_keeps_nothing_per_row(tmp_path: Path) -> None:
    """What `canvas-tui plan` does after reading the rosters, without Canvas: the census, the
    plan and PREFIX.json/.csv. A plan that is only written keeps counts, not the per-row arrays
    applying it needs (12 MB at a million rows, more while they grew)."""
    world = World.generate(7, users=300, courses=6)

    def source(count: int) -> CsvSource:
        path = tmp_path / f"in-{count}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([HEADER, *_world_rows(world, count)])
        return CsvSource(path)

    def written(items: Source) -> None:
        census = Census.of(items)
        rosters = {scope: Roster(scope, pages=1) for scope in census.counts.per_scope}
        plan = build_plan(items, rosters, PlanConfig(), keep_rows=False)
        assert plan.record_counts().total() == census.counts.records
        write_plan(plan, tmp_path / "plan")

    small, large = source(WRITTEN_SMALL), source(WRITTEN_LARGE)
    for warm in (small, large):
        # once untraced: what a first pass allocates for good (caches); and each source then
        # knows its row count, so every traced pass sizes its duplicate index at once, the
        # same for both (`capacity_for`), rather than the census pass alone growing it
        written(warm)
    peaks = [_peak(lambda: written(s)) for s in (small, large)]  # noqa: B023
    growth, rows = peaks[1] - peaks[0], WRITTEN_LARGE - WRITTEN_SMALL
    assert growth < WRITTEN_PER_ROW * rows, (
        f"peak grew {growth / 1024:.0f} KiB for {rows} more rows ({growth / rows:.1f} bytes a "
        "row): a plan only written down keeps something per row"
    )


def test_the_plan_command_keeps_no_per_row_arrays(arena: Arena) -> None:
    """`canvas-tui plan` and `check --deep` plan through `plan_and_preflight`, which only shows
    and writes the plan: it must not keep what applying one needs (the test above bounds what
    such a plan costs per row)."""
    rows = [arena.row(u) for u in arena.users[:12]]
    session = arena.session(arena.csv(rows), arena.config(), "written")

    async def planned() -> Plan:
        assert session.client is not None
        try:
            _checked, plan = await plan_and_preflight(
                session.client, CsvSource(arena.tmp / "in.csv"), session.config
            )
        finally:
            await session.close()
        return plan

    plan = asyncio.run(planned())
    assert plan.record_counts().total() == 12
    tally = plan.tally
    assert not tally.rows
    assert (len(tally.lines), len(tally.digests), len(tally.in_place)) == (0, 0, 0)


async def test_a_roster_keeps_what_is_read_of_each_enrollment(arena: Arena) -> None:
    """The rosters of a large source hold every enrollment Canvas has in its courses (a term's
    re-sync: as many as the rows): each is kept without the fields nothing reads, in a dict of
    its own, about half the memory of Canvas's whole JSON (issue 14)."""
    for user in arena.users[:30]:
        arena.enroll(user)
    session = arena.session(arena.csv([arena.row(arena.users[0])]), arena.config(), "lean")
    assert session.client is not None
    scope = f"course/sis_course_id:{arena.course.sis_course_id}"
    try:
        whole = await session.client.list_enrollments(
            course=f"sis_course_id:{arena.course.sis_course_id}", states=ALL_STATES
        )
        tracemalloc.start()
        try:
            rosters = await fetch_rosters(session.client, [scope])
            kept_bytes = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    finally:
        await session.close()
    enrollments = rosters[scope].enrollments
    assert len(enrollments) == len(whole) >= 30
    assert all(UNREAD_FIELDS.isdisjoint(e) for e in enrollments)
    assert all(e == kept(w) for e, w in zip(enrollments, whole, strict=True))
    # (the whole JSON: ~1.9 KB an enrollment of this simulator; kept: ~0.95 KB)
    assert kept_bytes < 1400 * len(enrollments) + 64 * 1024


RECORD = EnrollmentRecord(
    user="U1",
    course="C1",
    section=None,
    role="student",
    enrollment_type=None,
    status=SisStatus.ACTIVE,
    provenance=Provenance("in.csv", 2, {}),
)


def test_a_record_in_place_keeps_its_message_as_a_number() -> None:
    """A re-sync finds most rows in place: each keeps its journal message as a 2-byte number
    into the plan's few phrases, not a reference of its own (issue 14); past 65,536 phrases
    (warnings make more) the numbers widen."""
    tally = Tally()

    def in_place(position: int, reason: str, warnings: tuple[str, ...] = ()) -> None:
        step = Step(
            kind=StepKind.ENROLLMENT,
            action=Action.NONE,
            course="C1",
            user="U1",
            role="student",
            section="",
            reason=reason,
            enrollment_ids=(position + 1,),
            record_index=position,
            record=replace(RECORD, warnings=warnings),
        )
        tally.add(step)

    for position in range(4):
        in_place(position, "already active in Canvas")
    in_place(4, "already active in Canvas", ("a warning",))
    assert tally.in_place_kinds.itemsize == 2 and tally.in_place_kinds.tolist() == [0] * 4 + [1]
    assert [tally.in_place_message(at) for at in (0, 3, 4)] == [
        "plan: already active in Canvas",
        "plan: already active in Canvas",
        "a warning; plan: already active in Canvas",
    ]
    assert list(tally.in_place_ids) == [1, 2, 3, 4, 5]
    for position in range(5, 0x10000 + 5):
        in_place(position, "already active in Canvas", (f"w{position}",))
    assert tally.in_place_kinds.itemsize == 4
    assert tally.in_place_message(0x10000 + 4) == f"w{0x10000 + 4}; plan: already active in Canvas"
    assert tally.in_place_message(4) == "a warning; plan: already active in Canvas"
