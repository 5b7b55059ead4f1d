"""Batch mode with its change_threshold, and diffing (instructure/canvas-lms
app/models/sis_batch.rb: remove_previous_imports, detect_change_item, generate_diff)."""

from __future__ import annotations

from canvas_tui.simulator import Simulator
from canvas_tui.simulator.world import DOC_COURSE, Enrollment, World
from tests.simulator.conftest import client_for, form
from tests.simulator.sis_helpers import (
    enrollments_csv,
    enrollments_in_world,
    import_rows,
    run_to_end,
    sis_app,
    upload,
)

TERM = {"batch_mode": "1", "batch_mode_term_id": "sis_term_id:F26"}


def sis_made(app: Simulator) -> list[Enrollment]:
    """The enrollments an earlier SIS import made (the generated students)."""
    return [e for e in app.world.enrollments.values() if e.sis_import_id is not None]


def as_row(app: Simulator, enrollment: Enrollment) -> tuple[str, str, str, str, str]:
    world = app.world
    course = world.courses[enrollment.course_id]
    section = world.sections[enrollment.course_section_id]
    user = world.users[enrollment.user_id]
    return (
        course.sis_course_id or "",
        user.sis_user_id or "",
        "student",
        section.sis_section_id or "",
        "active",
    )


async def test_batch_mode_drops_what_earlier_imports_made_and_this_one_left_out() -> None:
    world = World.generate(7, users=3000, courses=40, students_per_course=60)
    app, clock = sis_app(world, rate=100.0, start_delay=0.0)
    earlier = sis_made(app)
    assert len(earlier) > 2000
    teacher = next(e for e in app.world.enrollments.values() if e.type == "TeacherEnrollment")
    async with client_for(app) as client:
        rest = await client.post(
            "/api/v1/courses/sis_course_id:E411208/enrollments",
            data=form(user_id="sis_user_id:13aa3", enrollment_state="active"),
        )
        assert rest.status_code == 200
        response = await upload(
            client, enrollments_csv([(DOC_COURSE, "01103", "student", "1B", "active")]), **TERM
        )
        final, seen = await run_to_end(client, clock, response.json()["id"], step=1.0)
    assert final["workflow_state"] == "imported"
    cleanup = [progress for state, progress in seen if state == "cleanup_batch"]
    assert cleanup, seen
    # a one-row import runs immediately and sets no progress; cleanup moves it per 1000 dropped
    assert cleanup[0] == 0
    steps = {round(k * 100 / len(earlier)) for k in range(1000, len(earlier), 1000)}
    assert set(cleanup) == {0} | steps, cleanup
    assert final["data"]["counts"]["batch_enrollments_deleted"] == len(earlier)
    assert final["data"]["statistics"]["Enrollment"]["deleted"] == len(earlier)
    assert {e.workflow_state for e in earlier} == {"deleted"}
    (kept,) = enrollments_in_world(app, DOC_COURSE, "01103")
    assert kept.workflow_state == "active"
    (made_by_rest,) = enrollments_in_world(app, DOC_COURSE, "13aa3")
    assert made_by_rest.workflow_state == "active"  # no sis_import_id: batch mode never drops it
    assert teacher.workflow_state in ("active", "completed")


async def test_a_change_threshold_refusal_aborts_the_cleanup_and_says_why() -> None:
    app, clock = sis_app(rate=100.0, start_delay=0.0)
    earlier = sis_made(app)
    states = {e.id: e.workflow_state for e in earlier}
    async with client_for(app) as client:
        final = await import_rows(
            app,
            clock,
            client,
            [(DOC_COURSE, "01103", "student", "1B", "active")],
            change_threshold="10",
            **TERM,
        )
        download = await client.get(final["errors_attachment"]["url"])
    message = f"{len(earlier)} enrollments would be deleted and exceeds the set threshold of 10%"
    assert final["workflow_state"] == "aborted"
    assert final["progress"] == 100
    assert final["ended_at"] is not None
    assert final["processing_warnings"] == [[None, message]]
    assert download.text.splitlines()[1] == f"{final['id']},,{message},"
    assert {e.id: e.workflow_state for e in earlier} == states  # nothing dropped
    (applied,) = enrollments_in_world(app, DOC_COURSE, "01103")
    assert applied.workflow_state == "active"  # the rows themselves went in before the check


async def test_under_the_threshold_the_cleanup_runs_with_another_drop_status() -> None:
    world = World.generate(7, users=60, courses=2, students_per_course=5)
    app, clock = sis_app(world, rate=100.0, start_delay=0.0)
    earlier = sorted(sis_made(app), key=lambda e: e.id)
    left_out = earlier[0]
    rows = [as_row(app, e) for e in earlier[1:]]
    async with client_for(app) as client:
        final = await import_rows(
            app,
            clock,
            client,
            rows,
            change_threshold="20",
            batch_mode_enrollment_drop_status="completed",
            **TERM,
        )
    assert final["workflow_state"] == "imported"
    assert final["data"]["counts"]["batch_enrollments_deleted"] == 1
    assert left_out.workflow_state == "completed"
    assert final["data"]["statistics"]["Enrollment"]["concluded"] >= 1


async def test_multi_term_batch_mode_without_a_terms_file_is_aborted() -> None:
    app, clock = sis_app()
    async with client_for(app) as client:
        final = await import_rows(
            app,
            clock,
            client,
            [(DOC_COURSE, "01103", "student", "1B", "active")],
            multi_term_batch_mode="1",
            change_threshold="5",
        )
    assert final["workflow_state"] == "aborted"
    assert final["processing_warnings"] == [
        [None, "Terms not found. Terms must be included with multi_term_batch_mode"]
    ]


async def test_diffing_imports_only_the_changes_and_drops_vanished_rows() -> None:
    app, clock = sis_app()
    first = [
        (DOC_COURSE, "01103", "student", "1B", "active"),
        (DOC_COURSE, "13834", "student", "1B", "active"),
        (DOC_COURSE, "13aa3", "student", "1B", "active"),
    ]
    second = [
        (DOC_COURSE, "01103", "student", "1B", "active"),
        (DOC_COURSE, "13834", "student", "1B", "active"),
        (DOC_COURSE, "GHOST", "student", "1B", "active"),  # line 4 of the upload
    ]
    identity = {"diffing_data_set_identifier": "fall-2026", "diffing_drop_status": "inactive"}
    async with client_for(app) as client:
        one = await import_rows(app, clock, client, first, **identity)
        two = await import_rows(app, clock, client, second, **identity)
    assert one["diffing_threshold_exceeded"] is None  # nothing to diff against
    assert two["data"]["diffed_against_sis_batch_id"] == one["id"]
    assert two["diffed_against_import_id"] is None  # as_json reads options, the diff writes data
    assert two["diffing_threshold_exceeded"] is False
    # the importer read the diff: the ghost is its line 2, the dropped row its line 3
    assert two["processing_warnings"] == [
        [
            "sis_import.csv",
            "User not found for enrollment (User ID: GHOST, Course ID: E411208, Section ID: 1B)",
        ]
    ]
    assert two["data"]["counts"]["enrollments"] == 1
    (dropped,) = enrollments_in_world(app, DOC_COURSE, "13aa3")
    assert dropped.workflow_state == "inactive"
    (untouched,) = enrollments_in_world(app, DOC_COURSE, "01103")
    assert untouched.sis_import_id == one["id"]  # not in the diff, so not re-stamped


async def test_a_diff_over_a_threshold_is_not_performed() -> None:
    app, clock = sis_app()
    rows = [(DOC_COURSE, u, "student", "1B", "active") for u in ("01103", "13834", "13aa3")]
    async with client_for(app) as client:
        await import_rows(app, clock, client, rows, diffing_data_set_identifier="a")
        shrunk = await import_rows(
            app, clock, client, rows[:1], diffing_data_set_identifier="a", change_threshold="5"
        )
        await import_rows(app, clock, client, rows, diffing_data_set_identifier="b")
        counted = await import_rows(
            app,
            clock,
            client,
            rows[:1],
            diffing_data_set_identifier="b",
            diff_row_count_threshold="1",
        )
    assert shrunk["workflow_state"] == "imported_with_messages"
    assert shrunk["diffing_threshold_exceeded"] is True
    assert shrunk["processing_warnings"] == [
        [None, "Diffing not performed because file size difference exceeded threshold"]
    ]
    assert counted["processing_warnings"] == [
        [None, "Diffing not performed because difference row count exceeded threshold"]
    ]
    # the whole file was imported, which deletes nothing
    states = {
        e.workflow_state
        for u in ("13834", "13aa3")
        for e in enrollments_in_world(app, DOC_COURSE, u)
    }
    assert states == {"active"}


async def test_a_remaster_joins_the_chain_without_diffing() -> None:
    app, clock = sis_app()
    rows = [(DOC_COURSE, u, "student", "1B", "active") for u in ("01103", "13834")]
    async with client_for(app) as client:
        await import_rows(app, clock, client, rows, diffing_data_set_identifier="c")
        remaster = await import_rows(
            app,
            clock,
            client,
            rows[:1],
            diffing_data_set_identifier="c",
            diffing_remaster_data_set="true",
        )
    assert "diffed_against_sis_batch_id" not in remaster["data"]
    assert remaster["diffing_remaster"] is True
    assert [e.workflow_state for e in enrollments_in_world(app, DOC_COURSE, "13834")] == ["active"]


async def test_abort_during_cleanup_stops_the_drops_and_still_finishes_the_batch() -> None:
    """fast_update_progress raises Aborted in the cleanup; remove_previous_imports rescues it
    and do_batch_end_work goes on (progress 100, ended_at)."""
    world = World.generate(7, users=3000, courses=40, students_per_course=60)
    app, clock = sis_app(world, rate=100.0, start_delay=0.0)
    earlier = sis_made(app)
    rows = [(DOC_COURSE, "01103", "student", "1B", "active")]
    async with client_for(app) as client:
        import_id = (await upload(client, enrollments_csv(rows), **TERM)).json()["id"]
        clock.now += 0.02  # the row is in; the cleanup has started
        status_now = await client.get(f"/api/v1/accounts/1/sis_imports/{import_id}")
        assert status_now.json()["workflow_state"] == "cleanup_batch"
        clock.now += 10  # about 1,000 of the drops are done
        aborted = (await client.put(f"/api/v1/accounts/1/sis_imports/{import_id}/abort")).json()
        clock.now += 1000
        final, _ = await run_to_end(client, clock, import_id)
    assert (aborted["workflow_state"], aborted["progress"]) == ("aborted", 100)
    assert aborted["ended_at"] is not None
    assert final["workflow_state"] == "aborted"
    dropped = sum(1 for e in earlier if e.workflow_state == "deleted")
    assert 0 < dropped < len(earlier)


async def test_an_unchanged_file_under_diffing_imports_nothing() -> None:
    app, clock = sis_app()
    rows = [(DOC_COURSE, "01103", "student", "1B", "active")]
    async with client_for(app) as client:
        await import_rows(app, clock, client, rows, diffing_data_set_identifier="d")
        (enrollment,) = enrollments_in_world(app, DOC_COURSE, "01103")
        enrollment.workflow_state = "inactive"  # changed in Canvas since: a diff cannot know
        same = await import_rows(app, clock, client, rows, diffing_data_set_identifier="d")
    assert same["workflow_state"] == "imported"
    assert "supplied_batches" not in same["data"]
    assert enrollment.workflow_state == "inactive"
