"""What one enrollments row does to the world, as instructure/canvas-lms
lib/sis/enrollment_importer.rb and lib/sis/csv/enrollment_importer.rb do it, and how that meets
what the REST side made (the same enrollment is found, never duplicated)."""

from __future__ import annotations

from canvas_tui.simulator.world import (
    BUILT_IN_ROLE_IDS,
    DELETED_COURSE,
    DOC_COURSE,
    GRADER_ROLE_ID,
)
from tests.simulator.conftest import client_for, form
from tests.simulator.sis_helpers import enrollments_in_world, import_rows, sis_app

DOC = "/api/v1/courses/sis_course_id:E411208/enrollments"
FULL = ("course_id", "user_id", "role", "section_id", "status", "start_date", "end_date",
        "limit_section_privileges", "associated_user_id")  # fmt: skip


async def test_each_status_gives_its_state_on_one_enrollment() -> None:
    app, clock = sis_app()
    async with client_for(app) as client:
        for status, state in (
            ("active", "active"),
            ("inactive", "inactive"),
            ("completed", "completed"),
            ("active", "active"),  # restored
            ("deleted", "deleted"),
            ("ACTIVE_and_more", "active"),  # only the start is matched, any case
        ):
            final = await import_rows(
                app, clock, client, [(DOC_COURSE, "01103", "student", "1B", status)]
            )
            assert final["workflow_state"] == "imported", final
            (enrollment,) = enrollments_in_world(app, DOC_COURSE, "01103")
            assert enrollment.workflow_state == state
            assert enrollment.sis_import_id == final["id"]
    stats = final["data"]["statistics"]["Enrollment"]
    assert stats["restored"] == 1


async def test_completed_or_deleted_rows_create_the_enrollment_in_that_state() -> None:
    app, clock = sis_app()
    async with client_for(app) as client:
        final = await import_rows(
            app,
            clock,
            client,
            [
                (DOC_COURSE, "01103", "student", "1B", "completed"),
                (DOC_COURSE, "13834", "student", "1B", "deleted"),
            ],
        )
    assert [e.workflow_state for e in enrollments_in_world(app, DOC_COURSE, "01103")] == [
        "completed"
    ]
    assert [e.workflow_state for e in enrollments_in_world(app, DOC_COURSE, "13834")] == ["deleted"]
    stats = final["data"]["statistics"]["Enrollment"]
    assert (stats["concluded"], stats["deleted"], stats["created"]) == (1, 1, 0)


async def test_deleted_last_completed_keeps_the_users_last_enrollment_as_completed() -> None:
    app, clock = sis_app()
    async with client_for(app) as client:
        rows = [
            (DOC_COURSE, "01103", "student", "1B", "active"),
            (DOC_COURSE, "01103", "student", "2A", "active"),
        ]
        await import_rows(app, clock, client, rows)
        await import_rows(
            app, clock, client, [(DOC_COURSE, "01103", "student", "1B", "deleted_last_completed")]
        )
        states = [e.workflow_state for e in enrollments_in_world(app, DOC_COURSE, "01103")]
        assert states == ["deleted", "active"]
        await import_rows(
            app, clock, client, [(DOC_COURSE, "01103", "student", "2A", "deleted_last_completed")]
        )
    states = [e.workflow_state for e in enrollments_in_world(app, DOC_COURSE, "01103")]
    assert states == ["deleted", "completed"]


async def test_a_course_only_row_finds_the_enrollment_rest_made_in_the_default_section() -> None:
    app, clock = sis_app()
    async with client_for(app) as client:
        made = await client.post(
            DOC, data=form(user_id="sis_user_id:13834", enrollment_state="active")
        )
        assert made.status_code == 200
        final = await import_rows(
            app, clock, client, [(DOC_COURSE, "13834", "student", "", "inactive")]
        )
        stats = (await client.get("/__sim__/stats")).json()
    (enrollment,) = enrollments_in_world(app, DOC_COURSE, "13834")
    assert enrollment.id == made.json()["id"]
    assert enrollment.workflow_state == "inactive"
    assert final["data"]["statistics"]["Enrollment"]["deactivated"] == 1
    assert stats["duplicates"] == 0


async def test_roles_by_name_keyword_and_id() -> None:
    app, clock = sis_app()
    header = ("course_id", "user_id", "role", "role_id", "status")
    rows = [
        (DOC_COURSE, "01103", "Grader", "", "active"),  # a custom role's exact name
        (DOC_COURSE, "13834", "students", "", "active"),  # student is a prefix keyword
        (DOC_COURSE, "13aa3", "TA", "", "active"),  # ta, any case
        (DOC_COURSE, "S900001", "", str(GRADER_ROLE_ID), "active"),  # role_id
        (DOC_COURSE, "S900002", "TeacherEnrollment", "", "active"),  # a built-in's name
        (DOC_COURSE, "S900003", "grader", "", "active"),  # names are case-sensitive
        (DOC_COURSE, "S900003", "Auditor", "", "active"),  # an inactive role is unavailable
    ]
    async with client_for(app) as client:
        final = await import_rows(app, clock, client, rows, header)
    roles = {
        user: [(e.type, e.role_id) for e in enrollments_in_world(app, DOC_COURSE, user)]
        for user in ("01103", "13834", "13aa3", "S900001", "S900002", "S900003")
    }
    assert roles == {
        "01103": [("TaEnrollment", GRADER_ROLE_ID)],
        "13834": [("StudentEnrollment", BUILT_IN_ROLE_IDS["StudentEnrollment"])],
        "13aa3": [("TaEnrollment", BUILT_IN_ROLE_IDS["TaEnrollment"])],
        "S900001": [("TaEnrollment", GRADER_ROLE_ID)],
        "S900002": [("TeacherEnrollment", BUILT_IN_ROLE_IDS["TeacherEnrollment"])],
        "S900003": [],
    }
    assert [w[1] for w in final["processing_warnings"]] == [
        'Improper role "grader" for an enrollment',
        'Improper role "Auditor" for an enrollment',
    ]


async def test_limit_section_privileges_changes_only_when_the_column_has_a_value() -> None:
    app, clock = sis_app()
    header = ("course_id", "user_id", "role", "section_id", "status", "limit_section_privileges")
    async with client_for(app) as client:
        for value, expected in (("true", True), ("", True), ("false", False)):
            row = (DOC_COURSE, "01103", "student", "1B", "active", value)
            await import_rows(app, clock, client, [row], header)
            (enrollment,) = enrollments_in_world(app, DOC_COURSE, "01103")
            assert enrollment.limit_privileges_to_course_section is expected, value


async def test_blank_dates_clear_unless_sticky_and_override_wins() -> None:
    app, clock = sis_app()
    header = ("course_id", "user_id", "role", "section_id", "status", "start_date", "end_date")
    async with client_for(app) as client:
        # dates without an offset are UTC (DateTime.parse), unlike the REST API's Time.zone
        row = (DOC_COURSE, "01103", "student", "1B", "active", "2026-09-01", "2026-12-01T10:00:00")
        await import_rows(app, clock, client, [row], header)
        (enrollment,) = enrollments_in_world(app, DOC_COURSE, "01103")
        assert (enrollment.start_at, enrollment.end_at) == (
            "2026-09-01T00:00:00Z",
            "2026-12-01T10:00:00Z",
        )
        blank = (DOC_COURSE, "01103", "student", "1B", "active", "", "")
        await import_rows(app, clock, client, [blank], header)
        assert (enrollment.start_at, enrollment.end_at) == (None, None)
        # the REST side sets a date: it becomes sticky, and an import leaves both dates alone
        fields = form(
            user_id="sis_user_id:01103",
            course_section_id="sis_section_id:1B",
            enrollment_state="active",
            start_at="2026-09-15T00:00:00Z",
        )
        assert (await client.post(DOC, data=fields)).status_code == 200
        await import_rows(app, clock, client, [blank], header)
        assert enrollment.start_at == "2026-09-15T00:00:00Z"
        other = (DOC_COURSE, "01103", "student", "1B", "active", "2026-10-01", "")
        await import_rows(app, clock, client, [other], header)
        assert enrollment.start_at == "2026-09-15T00:00:00Z"
        await import_rows(app, clock, client, [other], header, override_sis_stickiness="true")
        assert enrollment.start_at == "2026-10-01T00:00:00Z"


async def test_a_bad_date_is_a_warning_and_the_row_goes_on_without_it() -> None:
    app, clock = sis_app()
    header = ("course_id", "user_id", "role", "section_id", "status", "start_date")
    async with client_for(app) as client:
        final = await import_rows(
            app,
            clock,
            client,
            [
                (DOC_COURSE, "01103", "student", "1B", "active", "2026-13-45"),
                ("", "13834", "student", "1B", "active", "soon"),
            ],
            header,
        )
    assert final["processing_warnings"] == [
        ["sis_import.csv", "Bad date format for user 01103 in course E411208"],
        ["sis_import.csv", "Bad date format for user 13834 in section 1B"],
    ]
    assert final["data"]["counts"]["enrollments"] == 2
    (enrollment,) = enrollments_in_world(app, DOC_COURSE, "01103")
    assert (enrollment.workflow_state, enrollment.start_at) == ("active", None)


async def test_observers_link_to_the_student_named_by_associated_user_id() -> None:
    app, clock = sis_app()
    header = ("course_id", "user_id", "role", "section_id", "status", "associated_user_id")
    rows = [
        (DOC_COURSE, "01103", "student", "1B", "active", ""),
        (DOC_COURSE, "13834", "observer", "1B", "active", "01103"),
        (DOC_COURSE, "13aa3", "observer", "1B", "active", "NOBODY"),
        (DOC_COURSE, "S900001", "student", "1B", "active", "01103"),  # ignored: no observer
        (DOC_COURSE, "S900002", "observer", "1B", "active", "S900002"),
    ]
    async with client_for(app) as client:
        final = await import_rows(app, clock, client, rows, header)
    student = app.world.user_by_sis("01103")
    assert student is not None
    (observer,) = enrollments_in_world(app, DOC_COURSE, "13834")
    assert (observer.type, observer.associated_user_id) == ("ObserverEnrollment", student.id)
    (plain,) = enrollments_in_world(app, DOC_COURSE, "S900001")
    assert plain.associated_user_id is None
    prefix = "An enrollment did not pass validation (course: E411208, section: 1B, "
    assert [w[1] for w in final["processing_warnings"]] == [
        "An enrollment referenced a non-existent associated user NOBODY",
        f"{prefix}user: S900002, role: observer, error: {prefix}"
        "Associated user Cannot observe yourself)",
    ]


async def test_lookups_by_integration_id_and_into_a_deleted_course() -> None:
    app, clock = sis_app()
    header = ("course_id", "user_id", "user_integration_id", "role", "status")
    rows = [
        (DOC_COURSE, "ignored-when-integration-id-given", "INT-13834", "student", "active"),
        (DELETED_COURSE, "01103", "", "student", "active"),
        # valid_course? spares a deleted enrollment: this one is made, deleted
        (DELETED_COURSE, "13aa3", "", "student", "deleted"),
    ]
    async with client_for(app) as client:
        final = await import_rows(app, clock, client, rows, header)
    assert [e.workflow_state for e in enrollments_in_world(app, DOC_COURSE, "13834")] == ["active"]
    assert [e.workflow_state for e in enrollments_in_world(app, DELETED_COURSE, "13aa3")] == [
        "deleted"
    ]
    assert final["data"]["counts"]["enrollments"] == 2
    prefix = f"An enrollment did not pass validation (course: {DELETED_COURSE}, section: , "
    assert final["processing_warnings"] == [
        [
            "sis_import.csv",
            f"{prefix}user: 01103, role: student, error: {prefix}Course is not a valid course)",
        ]
    ]


async def test_skip_deletes_drops_delete_rows_silently_and_root_account_rows_vanish() -> None:
    app, clock = sis_app()
    header = ("course_id", "user_id", "role", "section_id", "status", "root_account")
    async with client_for(app) as client:
        await import_rows(
            app, clock, client, [(DOC_COURSE, "01103", "student", "1B", "active", "")], header
        )
        rows = [
            (DOC_COURSE, "01103", "student", "1B", "deleted", ""),
            (DOC_COURSE, "13834", "student", "1B", "active", "other.instructure.com"),
        ]
        final = await import_rows(app, clock, client, rows, header, skip_deletes="true")
    assert final["workflow_state"] == "imported"
    assert final["data"]["counts"]["enrollments"] == 0
    assert [e.workflow_state for e in enrollments_in_world(app, DOC_COURSE, "01103")] == ["active"]
    assert enrollments_in_world(app, DOC_COURSE, "13834") == []


async def test_rest_reposts_reuse_what_an_import_made() -> None:
    app, clock = sis_app()
    async with client_for(app) as client:
        await import_rows(app, clock, client, [(DOC_COURSE, "01103", "student", "", "deleted")])
        again = await client.post(
            DOC, data=form(user_id="sis_user_id:01103", enrollment_state="active")
        )
    (enrollment,) = enrollments_in_world(app, DOC_COURSE, "01103")
    assert again.json()["id"] == enrollment.id
    assert enrollment.workflow_state == "active"
    assert enrollment.sis_import_id is None  # Canvas clears sis_batch_id on revival
