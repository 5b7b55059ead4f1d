"""The shared row normalizer's building blocks."""

from __future__ import annotations

import random

from canvas_tui.records import EnrollmentRecord, Provenance, SisStatus
from canvas_tui.sources.normalize import (
    FirstSeen,
    Layout,
    RowNormalizer,
    _record,
    resolve_status,
)


def test_first_seen_agrees_with_a_dict_across_growth() -> None:
    rng = random.Random(3)
    keys = [rng.randrange(-(2**63), 2**63) for _ in range(20_000)] + [0, 1, -1, 2**63 - 1]
    keys += keys[:500]  # repeats
    seen, reference = FirstSeen(capacity=16), {}
    for line, key in enumerate(keys, 2):
        expected = reference.setdefault(key or 1, line)
        assert seen.first(key, line) == expected
    assert len(seen) == len(reference)


def test_fast_record_constructor_builds_genuine_equal_records() -> None:
    provenance = Provenance("f.csv", 2, {"a": "b"})
    values = ("sis_user_id:U", "sis_course_id:C", None, "student", "StudentEnrollment",
              SisStatus.ACTIVE, provenance)  # fmt: skip
    fast, slow = _record(*values), EnrollmentRecord(*values)
    assert type(fast) is EnrollmentRecord
    assert fast == slow and hash(fast) == hash(slow)
    assert fast.warnings == () and fast.notify is False  # defaults filled


def test_status_prefixes_prefer_the_longest() -> None:
    assert resolve_status("Deleted_Last_Completed") is SisStatus.DELETED_LAST_COMPLETED
    assert resolve_status("deleted_later") is SisStatus.DELETED
    assert resolve_status("enrolled") is None


def test_normalizer_accepts_rows_from_any_sequence_type() -> None:
    normalizer = RowNormalizer(
        "edit", ["course_id", "user_id", "role", "status"], Layout(), header_line=0
    )
    record = normalizer.normalize(("C", "U", "teacher", "active"), 7)
    assert isinstance(record, EnrollmentRecord)
    assert (record.user, record.provenance.line, str(record.provenance)) == (
        "sis_user_id:U",
        7,
        "edit:7",
    )
