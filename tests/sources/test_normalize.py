"""The shared row normalizer's building blocks."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from canvas_tui.engine.plan.executor import SourceCounts
from canvas_tui.records import EnrollmentRecord, SisStatus
from canvas_tui.sources import CsvSource
from canvas_tui.sources import normalize as normalize_module
from canvas_tui.sources.normalize import (
    FirstSeen,
    Layout,
    RowNormalizer,
    capacity_for,
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


def test_a_duplicate_index_sized_from_a_count_never_grows() -> None:
    """A pass after a count sizes the index once (`capacity_for`): it never holds the old and
    the new arrays at once, nor re-inserts every key (issue 14)."""
    for rows in (0, 1, 2047, 2048, 100_000):
        seen = FirstSeen(capacity_for(rows))
        arrays = (seen._hashes, seen._lines)
        for line in range(rows):
            seen.first(hash(("U", line)), line)
        assert seen._hashes is arrays[0] and seen._lines is arrays[1]
    assert capacity_for(1_000_000) == 1 << 21  # 24 MiB: what the growth would end at


def test_a_counting_pass_sizes_the_next_pass(tmp_path: Path) -> None:
    """`SourceCounts.of` tells the source how many rows it read; its next pass's normalizer
    sizes its duplicate index for them."""
    path = tmp_path / "in.csv"
    rows = ["course_id,user_id,role,status", *(f"C,U{n},student,active" for n in range(5000))]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    source = CsvSource(path)
    assert source.expected_rows == 0
    assert SourceCounts.of(source).items == 5000
    assert source.expected_rows == 5000
    capacities = []
    original = normalize_module.FirstSeen.__init__

    def spy(self: FirstSeen, capacity: int = 1 << 12) -> None:
        capacities.append(capacity)
        original(self, capacity)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(normalize_module.FirstSeen, "__init__", spy)
        assert sum(1 for _ in source) == 5000
    assert capacities == [capacity_for(5000)]
