"""Rosters past SPILL_AT enrollments live in a RosterStore (issue 14): a plan's memory must not
grow with the enrollments Canvas already holds in the source's courses (a term's re-sync meets
as many as it has rows), and the plan must be the one the in-memory rosters give."""

from __future__ import annotations

import csv
import tracemalloc
from pathlib import Path

import pytest

from canvas_tui.config import PlanConfig
from canvas_tui.engine.plan.diff import Action, Plan, build_plan
from canvas_tui.engine.plan.rosters import (
    RosterIndex,
    RosterStore,
    StoredEnrollments,
    fetch_rosters,
    needs_default,
    sis_hidden,
)
from canvas_tui.simulator.world import BUILT_IN_ROLE_IDS, Course
from canvas_tui.sources import CsvSource
from tests.plan.conftest import HEADER, SIS_IMPORT, Arena

SECTIONS = 10
# enrollments Canvas holds in the course (and rows naming them): both sizes keep the source's
# duplicate index at one capacity (`capacity_for`: 16,384 slots), so what is measured is the rest
SMALL, LARGE = 4_200, 8_100
SPILL = 1_000  # both sizes spill (the default threshold keeps small plans in memory)
# Bytes of peak growth allowed per extra enrollment. In memory, each cost ~1.8 KB here (its
# dict, its place in the per-user index: 1,772 bytes measured); in the store, ~10 (the
# in-process simulator's own lists of a course's enrollments, for each page it serves).
PER_ENROLLMENT = 100


def _populate(arena: Arena, name: str, count: int) -> tuple[Course, Path]:
    """A course whose sections already hold `count` active SIS enrollments (the world's own,
    not POSTed), and a source naming each of them (a re-sync)."""
    world = arena.world
    course = world.add_course(name, name)
    sections = [
        world.add_section(course, f"{name} {n}", f"{name}-{n:02d}") for n in range(SECTIONS)
    ]
    student = world.roles[BUILT_IN_ROLE_IDS["StudentEnrollment"]]
    path = arena.tmp / f"{name}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for n in range(count // SECTIONS):
            user = world.add_user(f"Re Sync {name} {n}", f"{name}-U{n:06d}")
            for section in sections:
                world.add_enrollment(user, section, student, sis_import_id=SIS_IMPORT)
                writer.writerow(
                    [name, user.sis_user_id, "student", section.sis_section_id, "active"]
                )
    return course, path


async def test_a_plan_holds_nothing_per_enrollment_canvas_has(
    arena: Arena, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("canvas_tui.engine.plan.rosters.SPILL_AT", SPILL)
    monkeypatch.setattr("canvas_tui.sources.csv._BLOCK", 1 << 14)  # both sizes fill it
    sized = {count: _populate(arena, f"RS{count}", count) for count in (SMALL, LARGE)}
    session = arena.session(arena.csv([arena.row(arena.users[0])]), arena.config(), "store")
    client = session.client
    assert client is not None

    async def planned(count: int, traced: bool) -> int:
        """Fetch and diff the course of `count` enrollments; tracemalloc's peak."""
        course, path = sized[count]
        scope = f"course/sis_course_id:{course.sis_course_id}"
        if traced:
            tracemalloc.start()
        try:
            rosters = await fetch_rosters(client, [scope])
            plan = build_plan(CsvSource(path), rosters, PlanConfig(), keep_rows=False)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        held = rosters[scope].enrollments
        assert isinstance(held, StoredEnrollments) and len(held) == count
        assert plan.record_counts() == {Action.NONE: count}  # every row already in place
        assert not plan.canvas_only
        assert plan.brake.drops == 0
        return peak

    try:
        await planned(SMALL, traced=False)  # what a first pass allocates for good (caches)
        peaks = {count: await planned(count, traced=True) for count in (SMALL, LARGE)}
    finally:
        await session.close()
    growth, more = peaks[LARGE] - peaks[SMALL], LARGE - SMALL
    # (SQLite's own memory is outside tracemalloc: its page cache is bounded by cache_size)
    assert growth < PER_ENROLLMENT * more, (
        f"peak grew {growth / 2**20:.1f} MiB for {more} more enrollments in Canvas "
        f"({growth / more:.0f} bytes each): the rosters are held in memory"
    )


# Rosters read at once, each of several pages: a plan reads every course of the source at once
# (~100 in the benchmark's million rows), so what one roster holds while its next page is
# awaited counts that many times.
FEW, MANY = 8, 32
PAGES = 3  # pages per roster (100 enrollments each, the last one partial)
# Bytes of peak growth allowed per extra roster read at once. Holding its last page while the
# next is awaited cost ~440 KB a roster here (the page decoded, what is kept of it, its answer's
# body); without them ~18 KB is left (its task, the pagination's state, the store's rows).
PER_ROSTER = 40_000


async def test_rosters_read_at_once_hold_no_page_between_pages(arena: Arena) -> None:
    world = arena.world
    student = world.roles[BUILT_IN_ROLE_IDS["StudentEnrollment"]]
    users = [world.add_user(f"Paged {n}", f"PG-U{n:04d}") for n in range(PAGES * 100 - 40)]
    scopes = []
    for n in range(MANY):
        course = world.add_course(f"Paged {n}", f"PG{n:03d}")
        section = world.add_section(course, f"Paged {n} 01", f"PG{n:03d}-01")
        for user in users:
            world.add_enrollment(user, section, student, sis_import_id=SIS_IMPORT)
        scopes.append(f"course/sis_course_id:{course.sis_course_id}")
    session = arena.session(arena.csv([arena.row(arena.users[0])]), arena.config(), "paged")
    client = session.client
    assert client is not None

    async def peak(count: int) -> int:
        tracemalloc.start()
        try:
            rosters = await fetch_rosters(client, scopes[:count], spill_at=0)
            top = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert all(r.pages == PAGES for r in rosters.values())
        next(iter(rosters.values())).enrollments.store.close()  # type: ignore[union-attr]
        return top

    try:
        await peak(FEW)  # what a first pass allocates for good (caches)
        peaks = {count: await peak(count) for count in (FEW, MANY)}
    finally:
        await session.close()
    growth, more = peaks[MANY] - peaks[FEW], MANY - FEW
    assert growth < PER_ROSTER * more, (
        f"peak grew {growth / 2**20:.1f} MiB for {more} more rosters read at once "
        f"({growth / more / 1024:.0f} KiB each): each holds a page while awaiting the next"
    )


def _arranged(arena: Arena) -> list[list[str]]:
    """Enrollments of every kind a plan tells apart, and rows that claim some of them."""
    users = arena.users
    arena.enroll(users[0])  # in place
    arena.enroll(users[1], "inactive")  # reactivated
    arena.enroll(users[2], "deleted")  # re-created
    arena.enroll(users[3], "completed")  # no row: SIS, concluded already
    arena.enroll(users[4])  # no row: a drop
    arena.enroll(users[5], sis=False)  # no row: manual, left alone
    arena.enroll(users[6], role="TeacherEnrollment")  # the row asks another role
    arena.enroll(users[7], "invited")
    arena.enroll(users[8])  # the row deletes it
    rows = [arena.row(u) for u in users[:3]]
    rows += [arena.row(users[6]), arena.row(users[7]), arena.row(users[8], "deleted")]
    rows += [arena.row(u) for u in users[20:25]]  # not in Canvas: creates
    return rows


def _summary(plan: Plan) -> list[object]:
    steps = [(s.action, s.user, s.reason, s.enrollment_ids, s.course_id, s.via) for s in plan.steps]
    return [steps, plan.brake, plan.roster_pages, plan.roster_errors, plan.scopes]


async def test_a_stored_plan_is_the_plan_in_memory(arena: Arena) -> None:
    rows = _arranged(arena)
    session = arena.session(arena.csv(rows), arena.config(), "same")
    client = session.client
    assert client is not None
    scope = f"course/sis_course_id:{arena.course.sis_course_id}"
    missing = "course/sis_course_id:NOPE"
    try:
        listed = await fetch_rosters(client, [scope, missing], spill_at=10**9)
        stored = await fetch_rosters(client, [scope, missing], spill_at=0)
    finally:
        await session.close()
    assert isinstance(listed[scope].enrollments, list)
    held = stored[scope].enrollments
    assert isinstance(held, StoredEnrollments)
    assert list(held) == listed[scope].enrollments
    assert held[:1] == listed[scope].enrollments[:1] and held[-1] == listed[scope].enrollments[-1]
    assert list(stored[missing].enrollments) == [] and stored[missing].error is not None
    assert sis_hidden(stored) is sis_hidden(listed) is False
    users = [u.sis_user_id or "" for u in arena.users[:30]] + ["sis_login_id:X", "1"]
    assert needs_default(held, users) is needs_default(listed[scope].enrollments, users)
    a, b = RosterIndex(listed), RosterIndex(stored)
    assert dict(a.user_ids) == dict(b.user_ids) and len(a.user_ids) == len(b.user_ids)
    for user in users:
        assert a.of_user(scope, user) == b.of_user(scope, user)
        assert a.knows_user(user) is b.knows_user(user)
    for policy in (
        PlanConfig(),
        PlanConfig(drop_policy="conclude"),
        PlanConfig(drop_policy="delete"),
    ):
        source = CsvSource(arena.tmp / "in.csv")
        assert _summary(build_plan(source, stored, policy)) == _summary(
            build_plan(source, listed, policy)
        )
        # each plan claims for itself: one without rows drops what the one before kept
        assert _summary(build_plan([], stored, policy)) == _summary(build_plan([], listed, policy))


def test_the_store_is_a_private_temporary_file() -> None:
    store = RosterStore()
    store.add(0, [{"id": 1, "user_id": 5, "course_id": 9, "enrollment_state": "active"}])
    store.index()
    files = {row[2] for row in store._db.execute("PRAGMA database_list")}
    assert files == {""}  # SQLite's private temporary database: unlinked, gone on close
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "off"
    assert store.course_id(0) == 9 and store.user_id(None, "5") == 5
    store.close()
