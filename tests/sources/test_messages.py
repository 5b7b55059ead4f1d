"""A topic's messages become the same records as rows (sources/messages.py): the documented
shape, and a reason for every message that cannot be one."""

from __future__ import annotations

import json

from canvas_tui.records import UNCHANGED, EnrollmentRecord, RowProblem, SisStatus
from canvas_tui.sources.messages import message_item
from canvas_tui.sources.normalize import Layout

SOURCE = "enrollments:3"


def _item(value: object, layout: Layout | None = None) -> EnrollmentRecord | RowProblem:
    raw = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
    return message_item(raw, SOURCE, 41, layout or Layout())


def test_a_change_in_enrollments_csv_names_is_the_record_a_row_would_be() -> None:
    item = _item(
        {
            "course_id": "BIO-101",
            "section_id": "BIO-101-01",
            "user_id": 1001,  # a number is its decimal text
            "role": "student",
            "status": "deleted",
            "limit_section_privileges": True,
            "start_date": None,  # null: a blank column, left as Canvas has it
        }
    )
    assert isinstance(item, EnrollmentRecord)
    assert (item.user, item.course, item.section) == (
        "sis_user_id:1001",
        "sis_course_id:BIO-101",
        "sis_section_id:BIO-101-01",
    )
    assert item.status is SisStatus.DELETED
    assert item.limit_section_privileges is True
    assert item.start_at is UNCHANGED
    assert str(item.provenance) == "enrollments:3:41"  # topic:partition:offset
    assert item.provenance.raw["user_id"] == "1001"


def test_a_mapped_layout_reads_the_registrars_own_names() -> None:
    layout = Layout(
        format="mapped",
        mapping={"course_id": "crn", "user_id": "pidm", "role": "kind", "status": "action"},
        values={"status": {"ADD": "active", "DROP": "deleted"}, "role": {"S": "student"}},
    )
    item = _item({"crn": "4410", "pidm": "P9", "kind": "S", "action": "DROP"}, layout)
    assert isinstance(item, EnrollmentRecord)
    assert (item.user, item.course, item.status) == (
        "sis_user_id:P9",
        "sis_course_id:4410",
        SisStatus.DELETED,
    )


def test_an_unknown_key_is_a_warning_on_the_record() -> None:
    item = _item(
        {"course_id": "C", "user_id": "U", "role": "student", "status": "active", "end_dat": "x"}
    )
    assert isinstance(item, EnrollmentRecord)
    assert any("end_dat" in w for w in item.warnings)


def test_messages_that_are_no_change_fail_alone_with_the_reason() -> None:
    cases: list[tuple[object, str]] = [
        (b"\xff\xfe", "not UTF-8"),
        (b"{broken", "not a JSON object"),
        (["a"], "a JSON array where an object"),
        ("text", "a JSON string where an object"),
        ({"course_id": {"id": 1}}, "course_id holds a JSON object"),
        ({"course_id": "C", "user_id": "U", "role": "student"}, "no status in the message"),
        (
            {"course_id": "C", "user_id": "U", "role": "student", "status": "maybe"},
            'Improper status "maybe"',
        ),
    ]
    for value, reason in cases:
        item = _item(value)
        assert isinstance(item, RowProblem), value
        assert reason in item.message, (value, item.message)
        assert not item.skip
        assert (item.provenance.source, item.provenance.line) == (SOURCE, 41)


def test_a_tombstone_is_skipped_and_the_same_add_twice_is_no_duplicate() -> None:
    tombstone = _item(None)
    assert isinstance(tombstone, RowProblem)
    assert tombstone.skip
    assert "tombstone" in tombstone.message
    add = {"course_id": "C", "user_id": "U", "role": "student", "status": "active"}
    # a stream has no duplicate rows: the same add after a drop is a change of its own
    assert isinstance(_item(add), EnrollmentRecord)
    assert isinstance(_item(add), EnrollmentRecord)
