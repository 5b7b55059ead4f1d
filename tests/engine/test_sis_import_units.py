"""The SIS import channel's pure parts: a record as a row of the file, Canvas's messages tied to
rows, REST or import by expected time, and the journal's schema 2 -> 3 migration."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path

from canvas_tui.engine.journal import SCHEMA_VERSION, Journal, JournalError
from canvas_tui.engine.plan.diff import Action, Step, StepKind, Via
from canvas_tui.engine.repost import PostFields
from canvas_tui.engine.sis_import.channel import Collector
from canvas_tui.engine.sis_import.choose import ImportModel, RestModel, choose_channel, crossover
from canvas_tui.engine.sis_import.csvfile import ImportFile, import_row, read_rows
from canvas_tui.engine.sis_import.messages import (
    category_of,
    counted,
    map_inline,
    read_errors_file,
)
from canvas_tui.records import UNCHANGED, EnrollmentRecord, Provenance, SisStatus, State


def _record(**fields: object) -> EnrollmentRecord:
    values: dict[str, object] = {
        "user": "sis_user_id:S1",
        "course": "sis_course_id:C1",
        "section": "sis_section_id:C1-01",
        "role": "student",
        "enrollment_type": "StudentEnrollment",
        "status": SisStatus.ACTIVE,
        "provenance": Provenance("in.csv", 2),
    }
    values.update(fields)
    return EnrollmentRecord(**values)  # type: ignore[arg-type]


def _step(via: Via, action: Action = Action.CREATE, **fields: object) -> Step:
    return Step(
        kind=StepKind.RECORD,
        action=action,
        course="C1",
        user="S1",
        role="student",
        section="C1-01",
        reason="",
        via=via,
        **fields,  # type: ignore[arg-type]
    )


# ---- a record as a row ------------------------------------------------------------------------


def test_each_step_gets_the_status_that_leaves_the_plans_end_state() -> None:
    post = _step(Via.POST, fields=PostFields())
    cases = [
        (_record(), post, "active"),
        (_record(status=SisStatus.INACTIVE), post, "inactive"),
        (
            _record(),
            _step(Via.PUT_REACTIVATE, Action.REACTIVATE, enrollment_ids=(5,), fields=PostFields()),
            "active",
        ),
        (
            _record(status=SisStatus.COMPLETED),
            _step(Via.DELETE_CONCLUDE, Action.CONCLUDE, enrollment_ids=(5,), fields=PostFields()),
            "completed",
        ),
        (
            _record(status=SisStatus.DELETED_LAST_COMPLETED),
            _step(Via.DELETE_DELETE, Action.DELETE, enrollment_ids=(5,), fields=PostFields()),
            "deleted",
        ),  # the plan resolved deleted_last_completed; the file says what it decided
        (
            _record(status=SisStatus.COMPLETED),
            _step(Via.POST_THEN_CONCLUDE, fields=PostFields()),
            "completed",
        ),
        (
            _record(status=SisStatus.DELETED),
            _step(Via.POST_THEN_DELETE, fields=PostFields()),
            "deleted",
        ),
    ]
    for record, step, status in cases:
        row = import_row(record, step)
        assert row.cells is not None, row.why_rest
        assert row.cells["status"] == status, (step.via, row.cells)


def test_blank_fields_never_change_canvas_in_the_file() -> None:
    """limit_section_privileges blank stays blank (the importer keeps it); a blank date carries
    Canvas's value (the importer would clear it); given values are written."""
    held = PostFields(True, "2026-09-01T04:00:00Z", None)
    row = import_row(_record(), _step(Via.PUT_REACTIVATE, enrollment_ids=(5,), fields=held))
    assert row.cells is not None
    assert row.cells["limit_section_privileges"] == ""
    assert (row.cells["start_date"], row.cells["end_date"]) == ("2026-09-01T04:00:00Z", "")
    given = _record(limit_section_privileges=False, start_at="2026-01-01", end_at="2026-05-01")
    row = import_row(given, _step(Via.POST, fields=PostFields()))
    assert row.cells is not None
    assert row.cells["limit_section_privileges"] == "false"
    assert (row.cells["start_date"], row.cells["end_date"]) == ("2026-01-01", "2026-05-01")
    assert _record().start_at is UNCHANGED


def test_rows_an_import_cannot_express_stay_on_rest_with_the_reason() -> None:
    post = _step(Via.POST, fields=PostFields())
    cases = [
        (_record(), None, "no planned step"),
        (_record(), _step(Via.LOOKUP), "decided when sent"),
        (_record(user="42"), post, "user is not named by an SIS id"),
        (_record(user="sis_login_id:jo"), post, "user is not named by an SIS id"),
        (_record(course="17"), post, "course is not named"),
        (_record(section="99"), post, "section is not named"),
        (
            _record(associated_user="12", role="observer", enrollment_type="ObserverEnrollment"),
            post,
            "observed user",
        ),
        (
            _record(status=SisStatus.COMPLETED),
            _step(Via.DELETE_CONCLUDE, enrollment_ids=(5, 6), fields=PostFields()),
            "several enrollments",
        ),
        (_record(user="sis_user_id: S1"), post, "outer spaces"),
    ]
    for record, step, why in cases:
        row = import_row(record, step)
        assert row.cells is None and row.why_rest and why in row.why_rest, (record, row)
    invited = import_row(_record(), post, active_state="invited")
    assert invited.why_rest and "invited" in invited.why_rest


def test_ids_roles_and_notify_as_the_importer_reads_them() -> None:
    post = _step(Via.POST, fields=PostFields())
    cells = import_row(_record(user="sis_integration_id:I9", course=None), post).cells
    assert cells is not None
    assert (cells["user_id"], cells["user_integration_id"], cells["course_id"]) == ("", "I9", "")
    ta = import_row(_record(role="TAEnrollment", enrollment_type="TaEnrollment"), post).cells
    assert ta is not None and ta["role"] == "ta"
    custom = import_row(_record(role="Grader", enrollment_type=None, role_id="19"), post).cells
    assert custom is not None and (custom["role"], custom["role_id"]) == ("", "19")
    notified = import_row(_record(), post, notify=True).cells
    assert notified is not None and notified["notify"] == "true"


def test_rows_are_numbered_as_canvas_numbers_them() -> None:
    file = ImportFile.new()
    post = _step(Via.POST, fields=PostFields())
    for record_id, user in ((7, "A"), (9, "B")):
        file.add(record_id, import_row(_record(user=f"sis_user_id:{user}"), post))
    assert file.rows == [(2, 7), (3, 9)]  # the header is row 1
    assert [(n, cells["user_id"]) for n, cells in read_rows(file.body())] == [(2, "A"), (3, "B")]


# ---- Canvas's messages ------------------------------------------------------------------------


def test_the_errors_file_ties_each_message_to_its_row() -> None:
    text = (
        "sis_import_id,file,message,row\n"
        '5,f.csv,"User not found for enrollment (User ID: X, Course ID: C1, Section ID: )",3\n'
        '5,f.csv,Improper role "boss" for an enrollment,4\n'
        "5,f.csv,something about the file,\n"
    )
    mapped = read_errors_file(text, [2, 3, 4])
    assert sorted(mapped.by_row) == [3, 4] and mapped.unmapped == ["something about the file"]
    assert category_of(mapped.by_row[3][0].message) == "user_not_found"
    assert category_of(mapped.by_row[4][0].message) == "invalid_role"
    mapped.expected = 3
    assert not mapped.complete


def test_inline_messages_are_tied_by_the_ids_they_quote_and_counted_past_24() -> None:
    rows = [
        (2, {"user_id": "S1", "course_id": "C1", "section_id": ""}),
        (3, {"user_id": "S2", "course_id": "C1", "section_id": ""}),
    ]
    message = "User not found for enrollment (User ID: S2, Course ID: C1, Section ID: )"
    status = {
        "processing_warnings": [["f.csv", message]] * 24
        + [
            [
                "and 6 more warnings that were not included",
                "Download the error file to see all warnings.",
            ]
        ],
        "data": {"counts": {"warning_count": 30, "error_count": 0}},
    }
    assert counted(status) == (30, 0)
    mapped = map_inline([("f.csv", message, False)], rows)
    assert list(mapped.by_row) == [3] and not mapped.unmapped


# ---- REST or import ---------------------------------------------------------------------------


def test_auto_takes_the_faster_channel_and_states_the_crossover() -> None:
    rest = RestModel(latency=0.25, cost=0.1)  # Canvas-like: about 0.1 s of bucket per write
    imp = ImportModel(rows_per_second=100, start_seconds=30)
    cross = crossover(rest, imp, 1.0)
    assert cross is not None and 100 < cross < 5000
    small = choose_channel("auto", rows=cross // 2, requests=cross // 2, rest=rest, imp=imp)
    big = choose_channel("auto", rows=cross * 2, requests=cross * 2, rest=rest, imp=imp)
    assert (small.via, big.via) == ("rest", "sis-import")
    assert f"an import pays off from {cross} changes" in big.why
    assert small.rest_seconds < small.import_seconds and big.import_seconds < big.rest_seconds
    forced = choose_channel("sis-import", rows=3, requests=3, rest=rest, imp=imp, rest_only=2)
    assert forced.via == "sis-import" and "2 more go by REST" in forced.why
    assert choose_channel("auto", rows=0, requests=0, rest=rest, imp=imp).via == "rest"


# ---- the journal -------------------------------------------------------------------------------


def test_a_schema_2_journal_gains_the_import_tables_and_reads_as_rest(tmp_path: Path) -> None:
    path = tmp_path / "old.journal"
    journal = Journal(path)
    journal.load([_record()], description="in.csv")
    journal.close()
    conn = sqlite3.connect(path)  # as canvas-tui before issue 15 left it
    conn.execute("DROP TABLE imports")
    conn.execute("DROP TABLE import_rows")
    conn.execute("ALTER TABLE records DROP COLUMN channel")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    read_only = Journal(path, read_only=True)
    try:
        assert read_only.imports() == [] and read_only.channel_counts() == {}
        (row,) = read_only.iter_rows()
        assert row.channel is None and row.state is State.PENDING
    finally:
        read_only.close()
    migrated = Journal(path)
    try:
        assert migrated.get_meta("schema_version") == SCHEMA_VERSION == "3"
        assert migrated.imports() == [] and migrated.get(1) is not None
    finally:
        migrated.close()


def test_rows_whose_source_changed_since_the_plan_go_by_rest() -> None:
    """The collector writes the file as the plan computes each step; a source line that changed
    before the load is no longer the row planned, so it leaves the file (renumbered) for REST."""
    collector = Collector()
    for position, user in enumerate("ABC"):
        step = _step(Via.POST, fields=PostFields())
        collector.add(
            replace(step, record=_record(user=f"sis_user_id:{user}"), record_index=position)
        )
    collector.add(replace(_step(Via.NOTHING, Action.NONE), record=_record(), record_index=3))
    prepared = collector.finish(changed=[1], drops=2)
    assert prepared.file.rows == [(2, 1), (3, 3)] and prepared.actions == ["create", "create"]
    assert [cells["user_id"] for _n, cells in read_rows(prepared.file.body())] == ["A", "C"]
    assert prepared.rest == 3
    assert prepared.why_rest == {
        "source rows changed since the plan": 1,
        "drops of enrollments the SIS no longer lists": 2,
    }


def test_an_import_of_records_not_pending_is_refused_whole(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.journal")
    try:
        journal.load([_record(), _record(user="sis_user_id:S2")], description="in.csv")
        journal.transition([2], State.SKIPPED, only_from=[State.PENDING], message="skipped")
        journal.flush_sync()
        try:
            asyncio.run(journal.create_import("f.csv", b"x", [(2, 1), (3, 2)], ["create"] * 2))
        except JournalError as error:
            assert "1 records of the import are not pending" in str(error)
        else:
            raise AssertionError("an import of a record not pending was kept")
        assert journal.imports() == [] and journal.get(1).state is State.PENDING  # type: ignore[union-attr]
        assert journal.get(1).channel is None  # type: ignore[union-attr]
    finally:
        journal.close()
