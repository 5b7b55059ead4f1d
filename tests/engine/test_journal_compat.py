"""Old journals: those written before a blank column was stored as "unchanged" are resumed
safely, and a whole journal of schema 1 (before issue 14's compact rows) reads and resumes as it
was written."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from canvas_tui.engine.journal import SCHEMA_VERSION, Journal, Outcome, written_enrollment_ids
from canvas_tui.engine.journal_codec import record_from_json, record_to_json, url_of, url_to_stored
from canvas_tui.records import UNCHANGED, EnrollmentRecord, Provenance, SisStatus, State

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


# ---- a whole journal of schema 1 (tests/engine/data/schema1.journal.md says how it was made) ----

SCHEMA1 = Path(__file__).parent / "data" / "schema1.journal"
ROOT = "https://canvas.test/api/v1"
BODY1 = (
    '{"enrollment":{"user_id":"sis_user_id:U1","enrollment_state":"active","notify":false,'
    '"limit_privileges_to_course_section":false,"type":"StudentEnrollment",'
    '"course_section_id":"sis_section_id:S1"}}'
)


def _schema1(tmp_path: Path) -> Path:
    path = tmp_path / "old.journal"
    shutil.copyfile(SCHEMA1, path)
    return path


def _what_an_operator_sees(journal: Journal) -> dict[str, Any]:
    """Everything the console, the stepper, the report and a resume read of a journal."""
    return {
        "counts": journal.counts(),
        "rows": journal.rows(0, 100),
        "by_course": [r.record_id for r in journal.rows(0, 100, order="-course")],
        "by_key": [r.record_id for r in journal.rows(0, 100, order="key")],
        "records": [journal.record(i) for i in range(1, 7)],
        "attempts": [journal.attempts(i) for i in range(1, 7)],
        "search": [
            [r.record_id for r in journal.rows(0, 100, text=t)]
            for t in ("U2", "not found", "Improper", "sis_section_id:S", "S3")
        ],
        "failed": journal.failed_ids(),
        "statuses": journal.status_counts(State.PENDING, source="in.csv"),
        "totals": journal.attempt_totals(),
        "meta": {k: v for k, v in journal.meta().items() if k != "schema_version"},
    }


def test_a_schema1_journal_reads_as_it_was_written(tmp_path: Path) -> None:
    journal = Journal(_schema1(tmp_path), read_only=True)
    try:
        seen = _what_an_operator_sees(journal)
    finally:
        journal.close()
    assert seen["counts"] == {
        State.PENDING: 1,
        State.IN_FLIGHT: 1,
        State.DONE: 2,
        State.FAILED: 2,
        State.SKIPPED: 0,
    }
    one, two, three, _, five, _ = seen["rows"]
    assert (one.source, one.line, one.raw["user_id"], one.canvas_enrollment_id) == (
        "in.csv",
        2,
        "U1",
        101,
    )
    assert one.key == "sis_user_id:U1|sis_course_id:C1|sis_section_id:S1|student"
    assert three.key == "sis_user_id:U3|sis_course_id:C3|sis_section_id:S3|19"  # the role id
    assert two.warnings == ("TA spelled TAEnrollment",) and two.message == "user U2 not found"
    assert (
        five.record_id == 5 and five.category == "invalid_input" and five.raw["status"] == "bogus"
    )
    record = seen["records"][2]
    assert record is not None
    assert (record.role_id, record.start_at, record.end_at) == (
        "19",
        "2026-09-01T00:00:00Z",
        UNCHANGED,
    )
    assert record.limit_section_privileges is True and record.notify is True
    assert seen["records"][4] is None
    first, second = seen["attempts"][0]
    assert (first.status, first.category, second.status) == (429, "throttled", 200)
    assert second.url == f"{ROOT}/courses/sis_course_id:C1/enrollments"
    assert second.request_body == BODY1
    assert seen["search"] == [[2], [2], [5], [1, 2, 3, 4, 6], [3]]
    assert seen["failed"] == [2, 5]
    assert seen["statuses"] == {"active": 1}
    assert seen["totals"] == {"requests": 4, "throttled": 1, "retries": 1}
    assert written_enrollment_ids([SCHEMA1], actions={"create"}) == {101, 103}


async def test_a_schema1_journal_is_migrated_when_resumed(tmp_path: Path) -> None:
    path = _schema1(tmp_path)
    old = Journal(path, read_only=True)
    before = _what_an_operator_sees(old)
    old.close()
    journal = Journal(path)
    try:
        assert journal.get_meta("schema_version") == SCHEMA_VERSION == "3"
        assert _what_an_operator_sees(journal) == before
        assert journal.reset_in_flight() == [4]  # a resume goes on from where it stopped
        assert await journal.claim([4, 6]) == [4, 6]
        record = journal.record(6)
        assert record is not None
        body = BODY1.replace("U1", "U6").replace("S1", "S6")
        journal.post_attempt(6, _Attempt(f"{ROOT}/courses/sis_course_id:C6/enrollments", body))
        journal.post_outcome(6, Outcome(State.DONE, "create", canvas_enrollment_id=106), attempts=1)
        await journal.flush()
        (sent,) = journal.attempts(6)
        assert (sent.url, sent.request_body) == (
            f"{ROOT}/courses/sis_course_id:C6/enrollments",
            body,
        )
    finally:
        journal.close()
    assert written_enrollment_ids([path], actions={"create"}) == {101, 103, 106}


async def test_an_edit_keeps_the_bodies_its_record_sent_before(tmp_path: Path) -> None:
    """A body is stored as what it changes in the record's own; an operator's edit of the
    record must not change what the trace says was sent."""
    journal = Journal(tmp_path / "new.journal")
    try:
        record = EnrollmentRecord(
            user="sis_user_id:U1",
            course="sis_course_id:C1",
            section="sis_section_id:S1",
            role="student",
            enrollment_type="StudentEnrollment",
            status=SisStatus.ACTIVE,
            provenance=Provenance("in.csv", 2, RAW),
        )
        journal.load([record], description="in.csv")
        assert await journal.claim([1]) == [1]
        url = f"{ROOT}/courses/sis_course_id:C1/enrollments"
        odd = BODY1.replace('"notify":false', '"notify":true').replace(
            ',"type"', ',"role_id":"7","type"'
        )
        for body in (BODY1, odd, "not json at all"):
            journal.post_attempt(1, _Attempt(url, body))
        journal.post_outcome(1, Outcome(State.FAILED, category="server_error"), attempts=3)
        await journal.flush()
        stored = journal._query("SELECT url, request_body, body_delta FROM attempts ORDER BY id")
        assert stored[0] == ("~/courses/{c}/enrollments", None, "")  # all rebuilt
        assert stored[2][1:] == ("not json at all", None)  # kept whole
        sent = [a.request_body for a in journal.attempts(1)]
        assert sent == [BODY1, odd, "not json at all"]
        edited = replace(record, user="sis_user_id:U9", role_id="5")
        journal.post_fields(1, edited, {**RAW, "user_id": "U9"})
        await journal.flush()
        assert [a.request_body for a in journal.attempts(1)] == sent
        assert {a.url for a in journal.attempts(1)} == {url}
        assert journal.record(1) == replace(
            edited, provenance=Provenance("in.csv", 2, {**RAW, "user_id": "U9"})
        )
        row = journal.get(1)
        assert row is not None and row.key == "sis_user_id:U9|sis_course_id:C1|sis_section_id:S1|5"
    finally:
        journal.close()


async def test_attempts_share_their_url_templates(tmp_path: Path) -> None:
    """Every record's POST goes to the same route: the route is stored once, and each attempt
    reads back the URL it was sent to, also in a read-only journal."""
    path = tmp_path / "new.journal"
    journal = Journal(path)
    try:
        journal.load(
            [
                EnrollmentRecord(
                    user=f"sis_user_id:U{i}",
                    course=f"sis_course_id:C{i}",
                    section=None,
                    role="student",
                    enrollment_type="StudentEnrollment",
                    status=SisStatus.ACTIVE,
                    provenance=Provenance("in.csv", i + 1, RAW),
                )
                for i in (1, 2, 3)
            ],
            description="in.csv",
        )
        assert await journal.claim([1, 2, 3]) == [1, 2, 3]
        for i in (1, 2, 3):
            journal.post_attempt(
                i, _Attempt(f"{ROOT}/courses/sis_course_id:C{i}/enrollments", None)
            )
        await journal.flush()
        stored = [u for (u,) in journal._query("SELECT url FROM attempts ORDER BY id")]
        assert stored == ["~/courses/{c}/enrollments", "#1", "#1"]
    finally:
        journal.close()
    reader = Journal(path, read_only=True)
    try:
        for i in (1, 2, 3):
            (sent,) = reader.attempts(i)
            assert sent.url == f"{ROOT}/courses/sis_course_id:C{i}/enrollments"
    finally:
        reader.close()


@dataclass(frozen=True)
class _Attempt:
    url: str
    request_body: str | None
    number: int = 1
    method: str = "POST"
    status: int | None = 200
    category: str | None = None
    message: str | None = None
    error_report_id: int | None = None
    cost: float | None = 0.1
    remaining: float | None = 590.0
    started_at: float = 1795900000.0
    finished_at: float | None = 1795900000.5
    will_retry: bool = False
    wait: float | None = None


@pytest.mark.parametrize(
    ("user", "course", "section", "path"),
    [
        ("sis_user_id:U1", "sis_course_id:C1", None, "/courses/sis_course_id:C1/enrollments"),
        ("12", "123", "1", "/courses/123/sections/1/users/12?x=12&y=1231"),
        ("123", "12", None, "/courses/12/users/123/enrollments"),
        ("sis_user_id:a{u}b", "sis_course_id:{c}", None, "/users/sis_user_id:a%7Bu%7Db/x?q={c}"),
        (
            "sis_user_id:A/1",
            "sis_course_id:C 1",
            None,
            "/users/sis_user_id:A%2F1/c/sis_course_id:C%201",
        ),
        ("u", "c", "s", "/nothing/of/theirs"),
        ("u", "u", "c", "/courses/u/sections/c/users/u"),
        ("sis_user_id:S1", "C1", None, "/courses/C1/enrollments?user_id=sis_user_id%3AS1&x=1"),
    ],
)
def test_a_stored_url_reads_back_exactly(
    user: str, course: str, section: str | None, path: str
) -> None:
    record = EnrollmentRecord(
        user=user,
        course=course,
        section=section,
        role="student",
        enrollment_type="StudentEnrollment",
        status=SisStatus.ACTIVE,
        provenance=Provenance("in.csv", 2, RAW),
    )
    url = ROOT + path
    stored = url_to_stored(url, ROOT, record)
    assert url_of(stored, ROOT, record) == url
    assert url_to_stored("https://elsewhere.test/api/v1" + path, ROOT, record).startswith("https:")


def test_a_migrated_journal_has_the_indexes_of_a_new_one(tmp_path: Path) -> None:
    """Schema 1 named its indexes as today's per-column ones: the migration must not leave the
    new table without them (nor without the state-first ones the console's windows read)."""

    def indexes(journal: Journal) -> set[str]:
        found = journal._query("SELECT name FROM sqlite_master WHERE type = 'index'")
        return {str(name) for (name,) in found if not str(name).startswith("sqlite_")}

    migrated = Journal(_schema1(tmp_path))
    fresh = Journal(tmp_path / "new.journal")
    try:
        assert indexes(migrated) == indexes(fresh)
        assert {"records_course", "records_state_course", "records_state_updated"} <= indexes(fresh)
    finally:
        migrated.close()
        fresh.close()
