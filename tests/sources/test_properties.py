"""Property tests: no input crashes the CSV parser, and every data row is accounted for."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canvas_tui.records import EnrollmentRecord, InputError, RowProblem
from canvas_tui.sources import CsvSource, SqlSource
from tests.sources.conftest import HEADER

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

cell = st.text(alphabet='abcS01 ,"\n\r\t;é\x00\u2028', max_size=6)
valid_row = st.tuples(
    st.sampled_from(["C1", "C2", " C3 ", ""]),
    st.sampled_from(["U1", "U2", "U3", "", "1"]),
    st.sampled_from(["student", "Teacher", "TAEnrollment", "Grader", "", "ta"]),
    st.sampled_from(["", "S1", "S2"]),
    st.sampled_from(["active", "deleted", "bogus", "", "Completed "]),
).map(list)
junk_row = st.lists(cell, min_size=0, max_size=8)
rows = st.lists(st.one_of(valid_row, junk_row), max_size=30)


def quote(field: str, delimiter: str) -> str:
    """CSV quoting as RFC 4180 wants it (csv.writer leaves a lone \r unquoted with "\n" ends)."""
    if any(c in field for c in (delimiter, '"', "\r", "\n")) or field != field.strip(" "):
        return '"' + field.replace('"', '""') + '"'
    return field


def consume(data: bytes, **options: object) -> list[EnrollmentRecord | RowProblem]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.csv"
        path.write_bytes(data)
        return list(CsvSource(path, **options))  # type: ignore[arg-type]


def assert_lines_distinct_and_increasing(items: list[EnrollmentRecord | RowProblem]) -> None:
    lines = [item.provenance.line for item in items]
    assert lines == sorted(set(lines))
    assert all(line >= 2 for line in lines)  # the header is line 1 at the earliest


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    try:
        items = consume(data)
    except InputError:
        return  # the only way a source may refuse: no usable header
    assert_lines_distinct_and_increasing(items)


@SETTINGS
@given(st.text(max_size=300), st.sampled_from(["utf-8", "cp1252", "latin-1"]))
def test_arbitrary_text_never_crashes_the_parser(text: str, encoding: str) -> None:
    try:
        items = consume(HEADER.encode() + b"\n" + text.encode("utf-8"), encoding=encoding)
    except InputError:
        return
    assert_lines_distinct_and_increasing(items)


@SETTINGS
@given(rows, st.sampled_from(["\n", "\r\n", "\r"]), st.sampled_from([",", ";", "\t"]))
def test_records_plus_problems_equal_data_rows(
    table: list[list[str]], terminator: str, delimiter: str
) -> None:
    lines = [
        delimiter.join(quote(f, delimiter) for f in row) for row in [HEADER.split(","), *table]
    ]
    text = terminator.join(lines) + terminator
    items = consume(text.encode("utf-8"), delimiter=delimiter)

    # A data row is one that is not blank: Canvas skips rows whose fields are all empty.
    data_rows = sum(1 for row in table if "".join(row).strip())
    records = sum(isinstance(item, EnrollmentRecord) for item in items)
    problems = sum(isinstance(item, RowProblem) for item in items)
    assert records + problems == data_rows
    assert_lines_distinct_and_increasing(items)
    for item, row in zip(items, (r for r in table if "".join(r).strip()), strict=True):
        # the raw row survives the round trip, in column order
        assert list(item.provenance.raw.values())[: len(row)] == row[: len(item.provenance.raw)]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(*(st.one_of(st.none(), cell) for _ in range(5))), max_size=25))
def test_sql_rows_are_all_accounted_for(table: list[tuple[str | None, ...]]) -> None:
    """Every result row becomes a record or a problem: NULLs, junk, duplicates included."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sis.sqlite"
        db = sqlite3.connect(path)
        db.execute(f"CREATE TABLE e ({HEADER})")
        db.executemany("INSERT INTO e VALUES (?, ?, ?, ?, ?)", table)
        db.commit()
        db.close()
        items = list(SqlSource(f"sqlite:///{path}", "SELECT * FROM e ORDER BY rowid"))
    assert len(items) == len(table)
    assert [item.provenance.line for item in items] == list(range(1, len(table) + 1))
