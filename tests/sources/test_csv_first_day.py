"""Messages that lead to the fix (issue 12, item 6): another delimiter, a short row."""

from __future__ import annotations

import pytest

from canvas_tui.sources import CsvSource
from tests.sources.conftest import HEADER, Write, split


@pytest.mark.parametrize(
    ("delimiter", "name", "toml"), [(";", "semicolon", '";"'), ("\t", "tab", '"\\t"')]
)
def test_a_semicolon_or_tab_file_is_read_and_the_note_says_how_to_configure_it(
    write: Write,
    delimiter: str,
    name: str,
    toml: str,
) -> None:
    header = HEADER.replace(",", delimiter)
    source = CsvSource(
        write(f"{header}\nC1{delimiter}U1{delimiter}student{delimiter}{delimiter}active\n")
    )
    records, problems = split(source)
    assert problems == []
    assert [(r.course, r.user) for r in records] == [("sis_course_id:C1", "sis_user_id:U1")]
    assert records[0].provenance.line == 2
    assert any(
        f"read as {name}-delimited" in n and f"delimiter = {toml}" in n for n in source.notes
    )


def test_a_one_column_file_that_is_no_other_delimiter_is_not_guessed(write: Write) -> None:
    from canvas_tui.records import InputError

    with pytest.raises(InputError, match="no course_id or section_id"):
        split(CsvSource(write("name;age\nx;1\n")))


def test_a_short_row_names_the_columns_it_lacks(write: Write) -> None:
    records, problems = split(CsvSource(write(f"{HEADER}\nC1,U1,student\nC1,U2,student,,active\n")))
    assert len(records) == 1
    (problem,) = problems
    assert problem.provenance.line == 2 and problem.column == 4
    assert (
        "3 fields, expected 5 as in the header (line 1): the row ends after 'role', so "
        "'section_id', 'status' are missing" in problem.message
    )
