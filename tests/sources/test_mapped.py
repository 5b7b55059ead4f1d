"""Mapped sources: a registrar's own columns, constant defaults, value maps, Canvas numeric ids."""

from __future__ import annotations

import pytest

from canvas_tui.records import InputError, SisStatus
from canvas_tui.sources import CsvSource, IdKind, Layout
from tests.sources.conftest import Write, split

REGISTRAR = Layout(
    format="mapped",
    mapping={"course_id": "CRN", "user_id": "STUDENT_ID", "role": "ROLE"},
    defaults={"status": "active"},
    values={"role": {"S": "student", "I": "teacher", "TA": "ta"}},
)


def test_registrar_export_with_defaults_and_value_map(write: Write) -> None:
    path = write("TERM,CRN,STUDENT_ID,ROLE\n2026FA,40123,900001,S\n2026FA,40123,900002,I\n")
    records, problems = split(CsvSource(path, layout=REGISTRAR))
    assert problems == []
    assert [(r.course, r.user, r.role, r.enrollment_type, r.status) for r in records] == [
        (
            "sis_course_id:40123",
            "sis_user_id:900001",
            "student",
            "StudentEnrollment",
            SisStatus.ACTIVE,
        ),
        (
            "sis_course_id:40123",
            "sis_user_id:900002",
            "teacher",
            "TeacherEnrollment",
            SisStatus.ACTIVE,
        ),
    ]
    assert records[0].provenance.raw == {
        "TERM": "2026FA",
        "CRN": "40123",
        "STUDENT_ID": "900001",
        "ROLE": "S",
    }


def test_value_missing_from_the_value_map_is_a_problem_naming_the_source_column(
    write: Write,
) -> None:
    path = write("CRN,STUDENT_ID,ROLE\n40123,900001,X\n40123,900002,S\n")
    records, problems = split(CsvSource(path, layout=REGISTRAR))
    assert len(records) == 1
    (problem,) = problems
    assert (problem.provenance.line, problem.field, problem.column) == (2, "ROLE", 3)
    assert (
        "value 'X' has no entry in [source.values.role]; expected one of: I, S, TA"
        in problem.message
    )


def test_missing_value_names_the_source_column(write: Write) -> None:
    path = write("CRN,STUDENT_ID,ROLE\n40123,,S\n")
    (problem,) = list(CsvSource(path, layout=REGISTRAR))
    assert (problem.field, problem.column) == ("STUDENT_ID", 2)  # type: ignore[union-attr]
    assert "expected a user id in STUDENT_ID" in problem.message  # type: ignore[union-attr]


def test_default_fills_an_empty_mapped_cell(write: Write) -> None:
    layout = Layout(
        format="mapped",
        mapping={"course_id": "CRN", "user_id": "ID", "role": "ROLE", "status": "ST"},
        defaults={"status": "active"},
    )
    path = write("CRN,ID,ROLE,ST\n1,2,student,\n1,3,student,deleted\n")
    records, _ = split(CsvSource(path, layout=layout))
    assert [r.status for r in records] == [SisStatus.ACTIVE, SisStatus.DELETED]


def test_mapping_to_a_missing_column_is_an_input_error_with_a_suggestion(write: Write) -> None:
    path = write("CRN,STUDENT_IDS,ROLE\n1,2,S\n")
    with pytest.raises(InputError, match=r"user_id = 'STUDENT_ID'.*did you mean 'STUDENT_IDS'"):
        list(CsvSource(path, layout=REGISTRAR))


def test_mapped_column_names_match_case_insensitively_when_unambiguous(write: Write) -> None:
    path = write("crn,student_id,role\n1,2,S\n")
    records, _ = split(CsvSource(path, layout=REGISTRAR))
    assert records[0].user == "sis_user_id:2"


def test_canvas_numeric_ids(write: Write) -> None:
    layout = Layout(
        format="mapped",
        mapping={"section_id": "SECTION", "user_id": "USER", "role": "ROLE"},
        defaults={"status": "active"},
        ids={"user": IdKind.CANVAS, "course": IdKind.CANVAS, "section": IdKind.CANVAS},
    )
    path = write(
        "SECTION,USER,ROLE\n55,1001,student\n55,S-1,student\n55,12345678901234567890,student\n"
    )
    records, problems = split(CsvSource(path, layout=layout))
    assert [(r.user, r.section, r.course) for r in records] == [("1001", "55", None)]
    assert [(p.field, p.column) for p in problems] == [("USER", 2), ("USER", 2)]
    assert "'S-1' is not a Canvas id; expected digits only" in problems[0].message


def test_canvas_layout_ignores_unmapped_extra_columns_silently_in_mapped_format(
    write: Write,
) -> None:
    source = CsvSource(write("CRN,STUDENT_ID,ROLE,NAME\n1,2,S,Ann\n"), layout=REGISTRAR)
    records, _ = split(source)
    assert len(records) == 1 and source.notes == []
