"""The pieces under `watch`: a SQL source read past a cursor, and the cursor's own round trip."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import pytest

from canvas_tui.engine.watch_sources import behind, decode_cursor, encode_cursor
from canvas_tui.records import EnrollmentRecord, InputError
from canvas_tui.sources import SqlSource
from tests.watch.helpers import QUERY, SqliteSis


def _users(source: SqlSource) -> list[str]:
    return [i.user for i in source if isinstance(i, EnrollmentRecord)]


def test_sql_source_reads_past_the_cursor_and_tracks_its_newest_value(tmp_path: Path) -> None:
    sis = SqliteSis(tmp_path / "sis.db")
    for n in range(1, 6):
        sis.put(n, (f"U{n}", "C1", "S1"))
    whole = SqlSource(sis.url, QUERY, cursor_column="seq")
    assert len(_users(whole)) == 5 and whole.cursor_max == 5
    since = SqlSource(sis.url, QUERY + " WHERE role = :role", params={"role": "student"},
                      cursor_column="seq", since=4)  # fmt: skip
    assert _users(since) == ["sis_user_id:U4", "sis_user_id:U5"]
    assert since.cursor_max == 5
    sis.put(2, ("U2", "C1", "S1"), status="deleted")  # an update moves the row past the cursor
    assert _users(SqlSource(sis.url, QUERY, cursor_column="seq", since=6)) == ["sis_user_id:U2"]


def test_a_query_without_the_cursor_column_is_refused(tmp_path: Path) -> None:
    sis = SqliteSis(tmp_path / "sis.db")
    sis.put(1, ("U1", "C1", "S1"))
    query = "SELECT course_id, user_id, role, section_id, status FROM enrollments"
    with pytest.raises(InputError, match=r"does not select the cursor column updated_at"):
        list(SqlSource(sis.url, query, cursor_column="updated_at"))


@pytest.mark.parametrize(
    ("value", "overlap", "back"),
    [
        (
            dt.datetime(2026, 9, 1, 8, 0, 5, tzinfo=dt.UTC),
            5,
            dt.datetime(2026, 9, 1, 8, 0, tzinfo=dt.UTC),
        ),
        (dt.datetime(2026, 9, 1, 8, 0, 5), 5, dt.datetime(2026, 9, 1, 8, 0)),
        (dt.date(2026, 9, 2), 5, dt.date(2026, 9, 1)),
        (1000, 5, 995),
        (decimal.Decimal("10.5"), 0.5, decimal.Decimal("10.0")),
        (2.5, 0.5, 2.0),
        ("v0009", 5, "v0009"),
    ],
)
def test_the_cursor_round_trips_with_its_type_and_steps_back_by_the_overlap(
    value: object, overlap: float, back: object
) -> None:
    decoded = decode_cursor(encode_cursor(value))
    assert decoded == value and type(decoded) is type(value)
    assert behind(decoded, overlap) == back
