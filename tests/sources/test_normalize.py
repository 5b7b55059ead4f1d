"""The shared row normalizer's building blocks."""

from __future__ import annotations

import random

from canvas_tui.records import EnrollmentRecord, SisStatus
from canvas_tui.sources.normalize import (
    FirstSeen,
    Layout,
    RowNormalizer,
    resolve_status,
)


def test_first_seen_agrees_with_a_dict_across_growth() -> None:
    rng = random.Random(3)
    keys = [rng.randrange(-(2**63), 2**63) for _ in range(20_000)] + [0, 1, -1, 2**63 - 1]
    keys += keys[:500]  # repeats
    seen, reference = FirstSeen(capacity=16), dict[int, int]()
    for line, key in enumerate(keys, 2):
        expected = reference.setdefault(key or 1, line)
        assert seen.first(key, line) == expected
    assert len(seen) == len(reference)


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
