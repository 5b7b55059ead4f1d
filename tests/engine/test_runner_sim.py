"""The runner and SIS semantics against the real client and the in-process simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

from canvas_tui.config import Config
from canvas_tui.engine.session import open_session
from canvas_tui.engine.state import Phase
from canvas_tui.records import State
from canvas_tui.simulator import SimConfig, World, build_app
from canvas_tui.simulator.testing import asgi_transport
from tests.engine.conftest import session_for, sim_config
from tests.engine.helpers import canvas_id
from tests.engine.workload import (
    HEADER,
    fresh_pairs,
    live_sis_students,
    sis_ids,
    write_csv,
)
from tests.helpers import eventually_async, never_within_async, write_rows


async def test_counts_reconcile_and_nothing_is_duplicated(tmp_path: Path) -> None:
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=50), world)
    rows = write_csv(tmp_path / "in.csv", world, 150, bad=4, unknown_users=3)
    session = session_for(tmp_path / "in.csv", tmp_path / "j", transport=asgi_transport(app))
    state = await session.run()
    assert state.phase == Phase.FINISHED
    assert state.total == len(rows) == state.finished
    assert state.counts[State.DONE] == 143
    assert state.failures_by_category == {"invalid_input": 4, "user_not_found": 3}
    stats = app.stats()
    assert stats["enrollments_created"] == 143
    assert stats["duplicates"] == 0
    row = session.store.get(1)
    assert row is not None and row.canvas_enrollment_id in world.enrollments
    await session.close()

    # The same file again, in a new journal: Canvas hands back the same rows, nothing new.
    again = session_for(tmp_path / "in.csv", tmp_path / "j2", transport=asgi_transport(app))
    state = await again.run()
    assert state.counts[State.DONE] == 143
    assert app.stats()["enrollments_created"] == 143
    assert app.stats()["duplicates"] == 0
    await again.close()


async def test_pause_send_one_cap_and_retry_failed(tmp_path: Path) -> None:
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=20), world)
    write_csv(tmp_path / "in.csv", world, 60, unknown_users=2)
    session = session_for(tmp_path / "in.csv", tmp_path / "j", transport=asgi_transport(app))
    await session.load()
    runner = session.runner
    runner.set_concurrency_cap(3)
    runner.pause()
    task = asyncio.create_task(session.run())
    # paused before the start: only the token check goes out
    only_token_check = {"get_user": 1}
    await eventually_async(
        lambda: app.stats()["requests_by_endpoint"] == only_token_check, what="the token check"
    )
    await never_within_async(
        lambda: app.stats()["requests_by_endpoint"] != only_token_check,
        0.3,
        what="a request beyond the token check while paused",
    )
    assert runner.send_one()
    await eventually_async(
        lambda: runner.snapshot().counts[State.DONE] >= 1, what="the one record sent", timeout=5
    )
    await never_within_async(
        lambda: runner.snapshot().counts[State.DONE] > 1, 0.2, what="more than one record done"
    )
    runner.resume()
    state = await asyncio.wait_for(task, 20)
    assert state.phase == Phase.FINISHED
    assert app.stats()["max_in_flight"] <= 3
    assert state.failures_by_category == {"user_not_found": 2}

    # The operator creates the missing users, then retries that category only.
    for k in range(2):
        world.add_user(f"New Person{k}", f"NOBODY-{k}")
    assert runner.retry_failed("server_error") == 0
    assert runner.retry_failed("user_not_found") == 2
    state = await session.run()
    assert state.counts[State.DONE] == 60
    assert state.counts[State.FAILED] == 0
    assert app.stats()["duplicates"] == 0
    await session.close()


async def test_sis_statuses_map_to_delete_tasks(tmp_path: Path) -> None:
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=50), world)
    chosen = live_sis_students(world)[:4]
    (c0, u0, s0), (c1, u1, s1), (c2, u2, s2), (c3, u3, s3) = (sis_ids(world, e) for e in chosen)
    (fu0, fc0, fs0), (fu1, fc1, fs1), (fu2, fc2, fs2), (fu3, fc3, fs3) = fresh_pairs(world, 4)
    rows = [
        [c0, u0, "student", s0, "inactive"],
        [c1, u1, "student", s1, "completed"],
        [c2, u2, "student", s2, "deleted"],
        [c3, u3, "student", s3, "deleted_last_completed"],  # no other active: concluded
        # no enrollment: Canvas's importer creates it completed (rule 4); a create, a conclude
        [fc0, fu0, "student", fs0, "completed"],
        [fc1, fu1, "student", fs1, "inactive"],  # created inactive, as Canvas's importer does
        [fc2, fu2, "Grader", fs2, "active"],  # custom role -> role_id
        [fc3, fu3, "TAEnrollment", fs3, "active"],  # normalized, with a warning kept
    ]
    session = session_for(
        write_rows(tmp_path / "in.csv", rows, HEADER[:5]),
        tmp_path / "j",
        transport=asgi_transport(app),
    )
    state = await session.run()
    assert state.counts[State.DONE] == 8, session.store.rows(0, 10)
    got = {r.record_id: r for r in session.store.rows(0, 10)}
    assert [got[i].action for i in range(1, 9)] == [
        "inactivate",
        "conclude",
        "delete",
        "conclude",
        "create_completed",
        "create_inactive",
        "create",
        "create",
    ]
    assert world.enrollments[chosen[0].id].workflow_state == "inactive"
    assert world.enrollments[chosen[1].id].workflow_state == "completed"
    assert world.enrollments[chosen[2].id].workflow_state == "deleted"
    assert world.enrollments[chosen[3].id].workflow_state == "completed"
    assert got[1].canvas_enrollment_id == chosen[0].id
    concluded_history = world.enrollments[canvas_id(got[5])]
    assert concluded_history.workflow_state == "completed"
    created_inactive = world.enrollments[canvas_id(got[6])]
    assert created_inactive.workflow_state == "inactive"
    grader = world.enrollments[canvas_id(got[7])]
    assert (grader.type, grader.role_id) == ("TaEnrollment", 10)
    ta = world.enrollments[canvas_id(got[8])]
    assert ta.type == "TaEnrollment"
    assert got[8].warnings and "TaEnrollment" in got[8].warnings[0]
    assert app.stats()["requests_by_endpoint"]["list_roles"] == 1  # looked up once per run
    await session.close()

    # Re-sending the same changes finds them already made: nothing is written twice.
    again = session_for(tmp_path / "in.csv", tmp_path / "j2", transport=asgi_transport(app))
    state = await again.run()
    assert state.counts[State.DONE] == 8
    actions = [r.action for r in again.store.rows(0, 10)]
    assert actions[:5] == ["none"] * 5
    assert app.stats()["duplicates"] == 0
    await again.close()


async def test_deleted_last_completed_deletes_when_another_section_stays(tmp_path: Path) -> None:
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=50), world)
    course = next(
        c
        for c in world.courses.values()
        if c.sis_course_id
        and c.workflow_state == "available"
        and len([s for s in world.sections_of(c.id) if s.sis_section_id]) >= 2
    )
    s1, s2 = [s for s in world.sections_of(course.id) if s.sis_section_id][:2]
    user = world.add_user("Two Sections", "TWO-1")
    student = world.built_in_role("StudentEnrollment")
    assert student is not None
    first = world.add_enrollment(user, s1, student)
    world.add_enrollment(user, s2, student)
    other = world.add_user("Also Two Sections", "TWO-2")
    kept = [world.add_enrollment(other, s, student) for s in (s1, s2)]
    rows = [
        [course.sis_course_id, "TWO-1", "student", s1.sis_section_id, "deleted_last_completed"],
        # No section: the course's default section (issue 10 rule 5), where TWO-2 has none, so
        # it is created there inactive as Canvas's importer does; the two others are not its.
        [course.sis_course_id, "TWO-2", "student", "", "inactive"],
    ]
    session = session_for(
        write_rows(tmp_path / "in.csv", rows, HEADER[:5]),
        tmp_path / "j",
        transport=asgi_transport(app),
    )
    state = await session.run()
    assert state.counts[State.DONE] == 2
    assert world.enrollments[first.id].workflow_state == "deleted"
    made = session.store.get(2)
    assert made is not None and made.action == "create_inactive"
    assert all(world.enrollments[e.id].workflow_state == "active" for e in kept)
    new = world.enrollments[made.canvas_enrollment_id or 0]
    assert new.workflow_state == "inactive"
    assert new.course_section_id == world.default_section(course).id
    await session.close()


async def test_an_observer_row_acts_on_its_own_student_link_only(tmp_path: Path) -> None:
    """A parent observes two siblings in one section: two ObserverEnrollments that differ only
    in associated_user_id. The SIS drops one link; the other must stay."""
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=50), world)
    course = next(
        c for c in world.courses.values() if c.sis_course_id and c.workflow_state == "available"
    )
    section = next(s for s in world.sections_of(course.id) if s.sis_section_id)
    student = world.built_in_role("StudentEnrollment")
    observer = world.built_in_role("ObserverEnrollment")
    assert student is not None and observer is not None
    parent = world.add_user("Parent Of Two", "PARENT-1")
    links = {}
    for sis in ("KID-A", "KID-B"):
        kid = world.add_user(f"Kid {sis}", sis)
        world.add_enrollment(kid, section, student)
        links[sis] = world.add_enrollment(parent, section, observer, associated_user_id=kid.id)
    rows = [
        [course.sis_course_id, "PARENT-1", "observer", section.sis_section_id, "deleted", "KID-A"],
        [course.sis_course_id, "PARENT-1", "observer", section.sis_section_id, "active", "KID-B"],
    ]
    header = [*HEADER[:5], "associated_user_id"]
    session = session_for(
        write_rows(tmp_path / "in.csv", rows, header), tmp_path / "j", transport=asgi_transport(app)
    )
    state = await session.run()
    await session.close()
    assert state.counts[State.DONE] == 2
    assert world.enrollments[links["KID-A"].id].workflow_state == "deleted"
    assert world.enrollments[links["KID-B"].id].workflow_state == "active"


async def test_invalid_token_aborts_before_any_record(tmp_path: Path) -> None:
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=50), world)
    write_csv(tmp_path / "in.csv", world, 40)
    session = session_for(
        tmp_path / "in.csv",
        tmp_path / "j",
        transport=asgi_transport(app),
        config=sim_config(token="not-a-real-token"),
    )
    state = await session.run()
    assert state.phase == Phase.ABORTED
    assert state.abort_reason is not None and "Invalid access token" in state.abort_reason
    assert state.counts[State.PENDING] == 40
    assert app.stats()["requests"] <= 2
    await session.close()


async def test_a_read_only_session_reads_rosters_with_its_own_client(tmp_path: Path) -> None:
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=50), world)
    write_csv(tmp_path / "in.csv", world, 20)
    session = session_for(tmp_path / "in.csv", tmp_path / "j", transport=asgi_transport(app))
    await session.run()
    course = session.store.get(1)
    assert course is not None and course.course is not None
    await session.close()

    triage = open_session(
        sim_config(), journal_path=tmp_path / "j", transport=asgi_transport(app), read_only=True
    )
    assert triage.client is not None
    roster = await triage.client.list_enrollments(course=course.course)
    assert roster
    await triage.close()
    # no token configured: the journal still opens for triage, without a client
    offline = open_session(Config(), journal_path=tmp_path / "j", read_only=True)
    assert offline.client is None
    assert offline.store.count() == 20
    await offline.close()
