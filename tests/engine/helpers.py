"""Small builders shared by the engine tests (records, not HTTP)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from canvas_tui.engine.state import RecordRow
from canvas_tui.records import EnrollmentRecord, Provenance, RowProblem, SisStatus, SourceItem


def record(
    n: int,
    *,
    status: SisStatus = SisStatus.ACTIVE,
    course: str = "C1",
    section: str | None = None,
    role: str = "student",
    enrollment_type: str | None = "StudentEnrollment",
    warnings: tuple[str, ...] = (),
) -> EnrollmentRecord:
    raw = {
        "course_id": course,
        "user_id": f"U{n}",
        "role": role,
        "section_id": section or "",
        "status": str(status),
        "term": "2026",
    }
    return EnrollmentRecord(
        user=f"sis_user_id:U{n}",
        course=f"sis_course_id:{course}",
        section=f"sis_section_id:{section}" if section else None,
        role=role,
        enrollment_type=enrollment_type,
        status=status,
        provenance=Provenance("in.csv", n + 1, raw),
        warnings=warnings,
    )


def problem(n: int, message: str = "Improper status", *, skip: bool = False) -> RowProblem:
    raw = {"course_id": "C1", "user_id": f"U{n}", "role": "student", "status": "bogus"}
    return RowProblem(
        Provenance("in.csv", n + 1, raw), message, field="status", column=5, skip=skip
    )


def items(n: int, *, bad_every: int = 0) -> list[SourceItem]:
    out: list[SourceItem] = []
    for i in range(1, n + 1):
        out.append(problem(i) if bad_every and i % bad_every == 0 else record(i))
    return out


def canvas_id(row: RecordRow) -> int:
    """The Canvas enrollment a done record names (a done record always names one)."""
    assert row.canvas_enrollment_id is not None, row
    return row.canvas_enrollment_id


def journal_tally(path: Path) -> tuple[dict[str, int], dict[int, int]]:
    """(counts by state, attempts rows per record)"""
    conn = sqlite3.connect(path)
    try:
        counts = dict(conn.execute("SELECT state, COUNT(*) FROM records GROUP BY state"))
        attempts = dict(conn.execute("SELECT record_id, COUNT(*) FROM attempts GROUP BY record_id"))
        done = {r for (r,) in conn.execute("SELECT record_id FROM records WHERE state = 'done'")}
    finally:
        conn.close()
    return counts, {r: attempts.get(r, 0) for r in done}
