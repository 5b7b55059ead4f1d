"""Journals written before a blank column was stored as "unchanged" are resumed safely."""

from __future__ import annotations

import json

from canvas_tui.engine.journal import record_from_json, record_to_json
from canvas_tui.records import UNCHANGED, EnrollmentRecord, Provenance, SisStatus

RAW = {"course_id": "C1", "user_id": "S1", "role": "ta", "status": "active"}


def _old_format(limit: bool, *, start_at: str | None = None, end_at: str | None = None) -> str:
    """A record as journals stored it before "unchanged": a blank flag false, blank dates null."""
    return json.dumps({
        "user": "sis_user_id:S1", "course": "sis_course_id:C1", "section": None, "role": "ta",
        "enrollment_type": "TaEnrollment", "status": "active", "role_id": None,
        "associated_user": None, "start_at": start_at, "end_at": end_at,
        "limit_section_privileges": limit, "notify": False, "warnings": [],
    })  # fmt: skip


def test_an_old_journals_blank_flag_is_read_back_as_unchanged() -> None:
    """Resuming it must not POST false: Course#enroll_user (app/models/course.rb) would turn a
    TA's section limit off."""
    record = record_from_json(_old_format(False), Provenance("in.csv", 2, RAW))
    assert record.limit_section_privileges is UNCHANGED
    assert record.start_at is UNCHANGED and record.end_at is UNCHANGED


def test_an_old_journals_explicit_false_stays_false() -> None:
    raw = {**RAW, "limit_section_privileges": "false"}
    record = record_from_json(_old_format(False), Provenance("in.csv", 2, raw))
    assert record.limit_section_privileges is False


def test_a_current_journals_explicit_false_stays_false() -> None:
    """A current journal never stores a null date, so its false is the source's even when the
    raw row names the column otherwise (a SQL layout)."""
    record = EnrollmentRecord(
        user="sis_user_id:S1",
        course="sis_course_id:C1",
        section=None,
        role="ta",
        enrollment_type="TaEnrollment",
        status=SisStatus.ACTIVE,
        provenance=Provenance("in.csv", 2, RAW),
        limit_section_privileges=False,
    )
    back = record_from_json(record_to_json(record), record.provenance)
    assert back.limit_section_privileges is False and back.start_at is UNCHANGED
