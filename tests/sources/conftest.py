"""Helpers for source tests: write an input file, read every item a source yields."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import pytest

from canvas_tui.records import EnrollmentRecord, RowProblem, SourceItem

HEADER = "course_id,user_id,role,section_id,status"


class Write(Protocol):
    """The `write` fixture: the content to a file in the test's directory; its path."""

    def __call__(self, content: str | bytes, name: str = ...) -> Path: ...


def split(items: Iterable[SourceItem]) -> tuple[list[EnrollmentRecord], list[RowProblem]]:
    records: list[EnrollmentRecord] = []
    problems: list[RowProblem] = []
    for item in items:
        (records if isinstance(item, EnrollmentRecord) else problems).append(item)  # type: ignore[arg-type]
    return records, problems


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """write(content, name=...) -> path; str content is UTF-8 encoded unchanged (no newline
    translation), bytes are written as they are."""

    def _write(content: str | bytes, name: str = "enrollments.csv") -> Path:
        path = tmp_path / name
        data = content.encode("utf-8") if isinstance(content, str) else content
        path.write_bytes(data)
        return path

    return _write
