"""Canvas SIS enrollments.csv, read as Canvas reads it, and the bad-input corpus of issue 4."""

from __future__ import annotations

from pathlib import Path

import pytest

from canvas_tui.records import UNCHANGED, EnrollmentRecord, InputError, Provenance, SisStatus
from canvas_tui.sources import CsvSource, open_source
from tests.sources.conftest import HEADER, Write, split

# The shared fixture when present (the project workspace), else the repository's copy of it.
SHARED = Path("/work/shared/fixtures/canvas_doc_enrollments.csv")
FIXTURE = SHARED if SHARED.exists() else Path(__file__).parent / "data" / SHARED.name


def test_canvas_doc_fixture_parses_to_the_expected_records() -> None:
    records, problems = split(open_source(FIXTURE))
    src = str(FIXTURE)
    header = ("course_id", "user_id", "role", "section_id", "status")

    def expected(line: int, user: str, role: str, section: str, type_: str) -> EnrollmentRecord:
        raw = dict(zip(header, ("E411208", user, role, section, "active"), strict=True))
        return EnrollmentRecord(
            user=f"sis_user_id:{user}",
            course="sis_course_id:E411208",
            section=f"sis_section_id:{section}",
            role=role,
            enrollment_type=type_,
            status=SisStatus.ACTIVE,
            provenance=Provenance(src, line, raw),
        )

    assert problems == []
    assert records == [
        expected(2, "01103", "student", "1B", "StudentEnrollment"),
        expected(3, "13834", "student", "2A", "StudentEnrollment"),
        expected(4, "13aa3", "teacher", "2A", "TeacherEnrollment"),
    ]
    assert [r.provenance.raw for r in records][2]["user_id"] == "13aa3"
    assert all(r.warnings == () and r.role_id is None and not r.notify for r in records)


def read(path: Path, **options: object) -> tuple[list[EnrollmentRecord], list]:  # type: ignore[type-arg]
    return split(CsvSource(path, **options))  # type: ignore[arg-type]


def lines_of(items: list) -> list[int]:  # type: ignore[type-arg]
    return [item.provenance.line for item in items]


# -- encodings, line ends, quoting, blank lines ----------------------------------------------


def test_utf8_bom_is_not_part_of_the_first_column(write: Write) -> None:
    path = write(b"\xef\xbb\xbf" + f"{HEADER}\nC1,U1,student,,active\n".encode())
    records, problems = read(path)
    assert problems == []
    assert records[0].course == "sis_course_id:C1"
    assert "course_id" in records[0].provenance.raw


def test_crlf_line_ends(write: Write) -> None:
    path = write(f"{HEADER}\r\nC1,U1,student,S1,active\r\nC1,U2,teacher,S1,active\r\n")
    records, problems = read(path)
    assert problems == []
    assert [(r.user, r.section, r.provenance.line) for r in records] == [
        ("sis_user_id:U1", "sis_section_id:S1", 2),
        ("sis_user_id:U2", "sis_section_id:S1", 3),
    ]
    assert records[1].provenance.raw["status"] == "active"  # no stray \r


def test_quoted_fields_commas_doubled_quotes_and_embedded_newlines(write: Write) -> None:
    text = (
        f"{HEADER}\n"
        '"C,1","U ""the"" one",student,,active\n'
        'C2,"multi\nline\nuser",student,,active\n'
        "C3,U3,student,,active\n"
    )
    records, problems = read(write(text))
    # parsed whole, then refused: a line break is no part of an id (issue 11)
    assert [(p.provenance.line, p.field) for p in problems] == [(3, "user_id")]
    assert problems[0].provenance.raw["user_id"] == "multi\nline\nuser"
    assert [r.course for r in records] == ["sis_course_id:C,1", "sis_course_id:C3"]
    assert records[0].user == 'sis_user_id:U "the" one'
    # a row's line is the physical line it starts on; the quoted newlines push C3 to line 6
    assert lines_of(records) == [2, 6]


def test_blank_lines_are_skipped_and_not_counted(write: Write) -> None:
    text = f"\n{HEADER}\n\nC1,U1,student,,active\n,,,,\n   \n\r\nC1,U2,student,,active\n\n"
    records, problems = read(write(text))
    assert problems == []
    assert lines_of(records) == [4, 8]


def test_cp1252_with_the_encoding_option(write: Write) -> None:
    path = write(f"{HEADER}\nC1,Jos\xe9,student,,active\n".encode("cp1252"))
    records, problems = read(path, encoding="cp1252")
    assert problems == []
    assert records[0].user == "sis_user_id:José"


def test_utf16_with_its_byte_order_mark(write: Write) -> None:
    path = write(f"{HEADER}\r\nC1,Jösé,student,,active\r\n".encode("utf-16"))
    records, problems = read(path, encoding="utf-16")
    assert problems == [] and records[0].user == "sis_user_id:Jösé"
    with pytest.raises(InputError, match="cannot decode the file as utf-16"):
        read(write(HEADER.encode()), encoding="utf-16")


def test_undecodable_bytes_fail_only_their_row_and_name_the_line(write: Write) -> None:
    data = (
        f"{HEADER}\nC1,U1,student,,active\n".encode()
        + b"C1,Jos\xe9,student,,active\n"
        + b"C1,U3,student,,active\n"
    )
    records, problems = read(write(data))
    assert [r.user for r in records] == ["sis_user_id:U1", "sis_user_id:U3"]
    assert len(problems) == 1
    problem = problems[0]
    assert problem.provenance.line == 3
    assert "undecodable bytes b'\\xe9'" in problem.message and "utf-8" in problem.message
    assert "encoding" in problem.message  # tells the operator what to change
    assert str(problem).startswith(f"{problem.provenance.source}:3")


def test_undecodable_bytes_inside_a_multiline_field_name_the_physical_line(write: Write) -> None:
    data = f'{HEADER}\nC1,"U1\n'.encode() + b'x\xff",student,,active\nC1,U2,student,,active\n'
    records, problems = read(write(data))
    assert [r.user for r in records] == ["sis_user_id:U2"]
    assert problems[0].provenance.line == 2
    assert "(on line 3)" in problems[0].message


def test_undecodable_header_is_an_input_error(write: Write) -> None:
    with pytest.raises(InputError, match=r"enrollments\.csv:1: header row: undecodable"):
        read(write(b"course_id,us\xe9r_id\nC1,U1\n"))


def test_semicolon_and_tab_delimiters(write: Write) -> None:
    semi = write(HEADER.replace(",", ";") + "\nC1;U1;student;;active\n", "semi.csv")
    tab = write(HEADER.replace(",", "\t") + "\nC1\tU1\tta\t\tactive\n", "tab.csv")
    assert read(semi, delimiter=";")[0][0].user == "sis_user_id:U1"
    assert read(tab, delimiter="\t")[0][0].enrollment_type == "TaEnrollment"


def test_block_boundaries_keep_line_numbers(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("canvas_tui.sources.csv._BLOCK", 1000)  # many blocks, \r\n cut anywhere
    rows = [f"C{i % 7},U{i:06d},student,,active" for i in range(3_000)]
    rows[1500] = 'C1,"U\r\nx",student,,active'  # a quoted line break across a block end
    text = HEADER + "\r\n" + "\r\n".join(rows) + "\r\n"
    records, problems = read(write(text))
    # the two-line row (1502-1503) is parsed whole, then refused: no line break in an id
    assert [(p.provenance.line, p.provenance.raw["user_id"]) for p in problems] == [
        (1502, "U\r\nx")
    ]
    assert len(records) == 2_999
    assert records[1500].provenance.line == 1504  # after the two-line row
    assert records[-1].provenance.line == 3_002
    assert records[-1].user == "sis_user_id:U002999"


def test_old_mac_line_ends_across_blocks(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("canvas_tui.sources.csv._BLOCK", 64)
    rows = [f"C1,U{i},student,,active" for i in range(200)]
    records, problems = read(write(HEADER + "\r" + "\r".join(rows) + "\r"))
    assert problems == [] and len(records) == 200
    assert records[-1].provenance.line == 201


def test_undecodable_bytes_in_a_later_block(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("canvas_tui.sources.csv._BLOCK", 256)
    good = "".join(f"C1,U{i},student,,active\n" for i in range(100)).encode()
    data = (
        f"{HEADER}\n".encode() + good + b"C1,\xff\xfe,student,,active\n" + good.replace(b"U", b"V")
    )
    records, problems = read(write(data))
    assert len(records) == 200
    (problem,) = problems
    assert problem.provenance.line == 102
    assert "undecodable bytes b'\\xff' at byte 4: not utf-8" in problem.message


# -- header --------------------------------------------------------------------------------


def test_empty_file_is_an_input_error(write: Write) -> None:
    with pytest.raises(InputError, match="the file is empty; expected a header row"):
        read(write(""))


def test_blank_only_file_is_an_input_error(write: Write) -> None:
    with pytest.raises(InputError, match="empty"):
        read(write("\n\r\n  \n"))


def test_header_only_yields_nothing_and_says_so(write: Write) -> None:
    source = CsvSource(write(HEADER + "\n"))
    assert list(source) == []
    assert any("header only" in note for note in source.notes)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot open"):
        list(CsvSource(tmp_path / "nope.csv"))


def test_header_without_a_user_column_is_an_input_error(write: Write) -> None:
    with pytest.raises(InputError, match=r":1: no user_id or user_integration_id in the source"):
        read(write("course_id,role,status\nC1,student,active\n"))


def test_header_without_status_is_an_input_error(write: Write) -> None:
    with pytest.raises(InputError, match="no status in the source"):
        read(write("course_id,user_id,role\nC1,U1,student\n"))


def test_header_names_are_case_insensitive_and_unknown_columns_are_ignored(write: Write) -> None:
    source = CsvSource(
        write("Course_ID, USER_ID ,role,status,favourite_colour\nC1,U1,student,active,red\n")
    )
    records, problems = split(source)
    assert problems == []
    assert records[0].user == "sis_user_id:U1"
    assert records[0].provenance.raw["favourite_colour"] == "red"
    assert any("favourite_colour" in note for note in source.notes)


# -- rows ----------------------------------------------------------------------------------


def test_extra_field_in_a_row_is_a_problem_naming_the_column(write: Write) -> None:
    text = f"{HEADER}\nC1,U1,student,,active,oops\nC1,U2,student,,active\n"
    records, problems = read(write(text))
    assert [r.user for r in records] == ["sis_user_id:U2"]
    (problem,) = problems
    assert problem.provenance.line == 2
    assert problem.column == 6
    assert "6 fields, expected 5 as in the header (line 1)" in problem.message
    assert "'oops'" in problem.message
    assert problem.provenance.raw["column 6"] == "oops"


def test_trailing_empty_fields_are_not_extra_columns(write: Write) -> None:
    records, problems = read(write(f"{HEADER}\nC1,U1,student,,active,,\nC1,U2,student,,active, \n"))
    assert problems == []
    assert [r.user for r in records] == ["sis_user_id:U1", "sis_user_id:U2"]


def test_short_row_is_a_problem_naming_the_first_missing_column(write: Write) -> None:
    records, problems = read(write(f"{HEADER}\nC1,U1,student\nC1,U2,student,,active\n"))
    assert len(records) == 1
    (problem,) = problems
    assert (problem.field, problem.column) == ("section_id", 4)
    assert "3 fields, expected 5" in problem.message


def test_missing_user_and_missing_course(write: Write) -> None:
    text = f"{HEADER}\nC1,,student,,active\n,U2,student,,active\nC1,U3,student,,active\n"
    records, problems = read(write(text))
    assert [r.user for r in records] == ["sis_user_id:U3"]
    no_user, no_course = problems
    assert (no_user.provenance.line, no_user.field, no_user.column) == (2, "user_id", 2)
    assert no_user.message.startswith("No user_id given for an enrollment; expected a user id in")
    assert (no_course.provenance.line, no_course.field, no_course.column) == (3, "course_id", 1)
    assert "No course_id or section_id given" in no_course.message
    assert "course_id or section_id" in no_course.message


def test_section_only_row_has_no_course(write: Write) -> None:
    records, _ = read(write(f"{HEADER}\n,U1,student,S1,active\n"))
    assert (records[0].course, records[0].section) == (None, "sis_section_id:S1")
    assert records[0].course_label == "S1"


def test_user_integration_id_wins_over_user_id(write: Write) -> None:
    text = "course_id,user_id,user_integration_id,role,status\nC1,U1,INT-9,student,active\nC1,U2,,student,active\n"
    records, _ = read(write(text))
    assert [r.user for r in records] == ["sis_integration_id:INT-9", "sis_user_id:U2"]


@pytest.mark.parametrize(
    ("role", "enrollment_type", "recorded", "warning"),
    [
        ("student", "StudentEnrollment", "student", None),
        ("Students", "StudentEnrollment", "Students", None),  # Canvas: `student` is a prefix
        ("student_other", "StudentEnrollment", "student_other", None),
        ("TEACHER", "TeacherEnrollment", "TEACHER", None),
        ("ta", "TaEnrollment", "ta", None),
        ("Observer", "ObserverEnrollment", "Observer", None),
        ("designer", "DesignerEnrollment", "designer", None),
        ("TaEnrollment", "TaEnrollment", "TaEnrollment", None),
        ("TAEnrollment", "TaEnrollment", "TaEnrollment", "read as TaEnrollment"),
        ("teacherenrollment", "TeacherEnrollment", "TeacherEnrollment", "case-sensitive"),
        ("Grader", None, "Grader", None),  # a custom role: passed through, case kept
        ("grader", None, "grader", None),
        ("teachr", None, "teachr", 'did you mean "teacher"'),
    ],
)
def test_roles_resolve_as_canvas_resolves_them(
    write: Write, role: str, enrollment_type: str | None, recorded: str, warning: str | None
) -> None:
    records, problems = read(write(f"{HEADER}\nC1,U1,{role},,active\n"))
    assert problems == []
    (record,) = records
    assert (record.enrollment_type, record.role) == (enrollment_type, recorded)
    if warning is None:
        assert record.warnings == ()
    else:
        assert any(warning in w for w in record.warnings), record.warnings


def test_bad_role_and_role_id(write: Write) -> None:
    text = (
        "course_id,user_id,role,role_id,status\n"
        "C1,U1,,,active\n"
        "C1,U2,,abc,active\n"
        "C1,U3,,19,active\n"
        "C1,U4,student,,active\n"
    )
    records, problems = read(write(text))
    assert [(r.user, r.role_id, r.enrollment_type) for r in records] == [
        ("sis_user_id:U3", "19", None),
        ("sis_user_id:U4", None, "StudentEnrollment"),
    ]
    no_role, bad_id = problems
    assert (no_role.field, no_role.column) == ("role", 3)
    assert no_role.message.startswith('Improper role "" for an enrollment; expected student,')
    assert (bad_id.field, bad_id.column) == ("role_id", 4)
    assert "expected a numeric Canvas role id" in bad_id.message


@pytest.mark.parametrize(
    ("value", "status", "warned"),
    [
        ("active", SisStatus.ACTIVE, False),
        ("ACTIVE", SisStatus.ACTIVE, False),
        ("active_2026", SisStatus.ACTIVE, True),
        ("deleted", SisStatus.DELETED, False),
        ("deleted_last_completed", SisStatus.DELETED_LAST_COMPLETED, False),
        ("Completed", SisStatus.COMPLETED, False),
        ("inactive", SisStatus.INACTIVE, False),
    ],
)
def test_status_prefix_matching(write: Write, value: str, status: SisStatus, warned: bool) -> None:
    records, _ = read(write(f"{HEADER}\nC1,U1,student,,{value}\n"))
    assert records[0].status is status
    assert bool(records[0].warnings) is warned


def test_bad_status(write: Write) -> None:
    text = f"{HEADER}\nC1,U1,student,,enrolled\nC1,U2,student,,\nC1,U3,student,,active\n"
    records, problems = read(write(text))
    assert len(records) == 1
    assert [(p.provenance.line, p.field, p.column) for p in problems] == [
        (2, "status", 5),
        (3, "status", 5),
    ]
    assert problems[0].message.startswith('Improper status "enrolled" for an enrollment; expected')
    assert "deleted_last_completed" in problems[0].message


def test_duplicates_are_reported_once_each_naming_the_first_line(write: Write) -> None:
    text = (
        f"{HEADER}\n"
        "C1,U1,student,S1,active\n"
        "C1,U1,Student,S1,active\n"  # the same enrollment, spelled differently
        "C1,U1,student,S1,deleted\n"  # a different status: not a duplicate
        "C1,U1,student,S1,active\n"
    )
    records, problems = read(write(text))
    assert lines_of(records) == [2, 4]
    assert [(p.provenance.line, p.skip) for p in problems] == [(3, True), (5, True)]
    assert all("duplicate of line 2" in p.message for p in problems)


def test_malformed_quoting_fails_the_row_and_the_rest_go_on(write: Write) -> None:
    text = f'{HEADER}\nC1,"U1"x,student,,active\nC1,U2,student,,active\n'
    records, problems = read(write(text))
    assert [r.user for r in records] == ["sis_user_id:U2"]
    assert problems[0].provenance.line == 2
    assert "malformed CSV" in problems[0].message


def test_unterminated_quote_swallows_the_rest_as_one_bad_row(write: Write) -> None:
    text = f'{HEADER}\nC1,U1,student,,active\nC1,"U2,student,,active\nC1,U3,student,,active\n'
    records, problems = read(write(text))
    assert [r.user for r in records] == ["sis_user_id:U1"]
    assert len(problems) == 1 and problems[0].provenance.line == 3


def test_optional_columns(write: Write) -> None:
    header = (
        "course_id,user_id,role,status,associated_user_id,start_date,end_date,"
        "limit_section_privileges,notify,root_account"
    )
    text = (
        f"{header}\n"
        "C1,P1,observer,active,S9,2026-01-15T08:00:00Z,2026-05-01,true,FALSE,\n"
        "C1,U2,student,active,S9,2026-01-15,,0,yes,other.example.edu\n"
        "C1,U3,student,active,,15/01/2026,2026-05-01,,,\n"
        "C1,U4,student,active,,,,maybe,,\n"
        "C1,U5,student,active,,,,,,\n"
    )
    records, problems = read(write(text))
    observer, student, blank = records
    # a blank column is "unchanged", never false or null (issue 10 rule 1)
    assert blank.limit_section_privileges is blank.start_at is blank.end_at is UNCHANGED
    assert blank.leaves_unchanged == ("limit_section_privileges", "start_at", "end_at")
    assert observer.leaves_unchanged == ()
    assert observer.associated_user == "sis_user_id:S9"
    assert (observer.start_at, observer.end_at) == ("2026-01-15T08:00:00Z", "2026-05-01")
    assert (observer.limit_section_privileges, observer.notify) == (True, False)
    assert student.associated_user is None and student.notify is True
    # only one of the pair: Canvas ignores it, so both stay as they are in Canvas
    assert student.start_at is student.end_at is UNCHANGED
    assert student.limit_section_privileges is False  # "0" is an explicit false
    assert any("observers only" in w for w in student.warnings)
    assert any("both are set" in w for w in student.warnings)
    assert any("root_account ignored" in w for w in student.warnings)
    bad_date, bad_flag = problems
    assert (bad_date.provenance.line, bad_date.field, bad_date.column) == (4, "start_date", 6)
    assert "Bad date format '15/01/2026'" in bad_date.message and "ISO 8601" in bad_date.message
    assert (bad_flag.field, bad_flag.column) == ("limit_section_privileges", 8)
    assert "expected true or false" in bad_flag.message


def test_every_item_has_a_distinct_increasing_line(write: Write) -> None:
    text = f'{HEADER}\nC1,U1,student,,active\n\nbad\nC1,"U\n2",x\nC1,U1,student,,active\nC1,U9,student,,active\n'
    items = list(CsvSource(write(text)))
    lines = lines_of(items)
    assert lines == sorted(set(lines)) == [2, 4, 5, 7, 8]
