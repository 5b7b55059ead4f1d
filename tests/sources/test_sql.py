"""SQL sources: SQLite (embedded), PostgreSQL and MariaDB for real, streamed and read-only."""

from __future__ import annotations

import socket
import sqlite3
import tracemalloc
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from canvas_tui.records import EnrollmentRecord, InputError, SisStatus
from canvas_tui.sources import IdKind, Layout, SqlSource, mask_url
from tests.conftest import listening, require_service
from tests.sources.conftest import split

ROWS = [
    ("2026FA", "BIO-101", "U1", "student", "BIO-101-01", "active"),
    ("2026FA", "BIO-101", "U2", "TAEnrollment", "BIO-101-01", "active"),
    ("2026FA", "BIO-101", "U3", "student", "BIO-101-01", "bogus"),
    ("2026SP", "CHEM-1", "U4", "teacher", None, "active"),
    ("2026FA", "BIO-101", "U1", "student", "BIO-101-01", "active"),  # duplicate of row 1
]
COLUMNS = "term, course_id, user_id, role, section_id, status"
QUERY = "SELECT course_id, user_id, role, section_id, status FROM {table} WHERE term = :term ORDER BY user_id, status"


def make_sqlite(path: Path, rows: Sequence[tuple[object, ...]] = ROWS) -> str:
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE enrollments ({COLUMNS})")
    db.executemany("INSERT INTO enrollments VALUES (?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    return f"sqlite:///{path}"


def check_fall_rows(source: SqlSource) -> None:
    records, problems = split(source)
    assert [
        (r.user, r.course, r.section, r.enrollment_type, r.provenance.line) for r in records
    ] == [
        (
            "sis_user_id:U1",
            "sis_course_id:BIO-101",
            "sis_section_id:BIO-101-01",
            "StudentEnrollment",
            1,
        ),
        ("sis_user_id:U2", "sis_course_id:BIO-101", "sis_section_id:BIO-101-01", "TaEnrollment", 3),
    ]
    assert records[1].warnings  # TAEnrollment was normalized, with a warning
    assert records[0].provenance.source.startswith("sql:")
    assert records[0].provenance.raw["role"] == "student"
    duplicate, bad_status = problems
    assert (duplicate.provenance.line, duplicate.skip) == (2, True)
    assert "duplicate of line 1" in duplicate.message
    assert (bad_status.provenance.line, bad_status.field, bad_status.column) == (4, "status", 5)


def test_sqlite_query_with_a_bound_parameter(tmp_path: Path) -> None:
    url = make_sqlite(tmp_path / "sis.sqlite")
    check_fall_rows(SqlSource(url, QUERY.format(table="enrollments"), params={"term": "2026FA"}))


def test_the_transaction_is_read_only(tmp_path: Path) -> None:
    url = make_sqlite(tmp_path / "sis.sqlite")
    writer = SqlSource(url, "DELETE FROM enrollments RETURNING course_id, user_id, role, status")
    with pytest.raises(InputError, match=r"the query failed on sqlite:///.*readonly"):
        list(writer)
    count = sqlite3.connect(tmp_path / "sis.sqlite").execute("SELECT count(*) FROM enrollments")
    assert count.fetchone()[0] == len(ROWS)


def test_sql_syntax_error_is_an_input_error(tmp_path: Path) -> None:
    url = make_sqlite(tmp_path / "sis.sqlite")
    with pytest.raises(InputError, match=r"the query failed on .*syntax error"):
        list(SqlSource(url, "SELEC course_id FROM enrollments"))


def test_missing_table_is_an_input_error(tmp_path: Path) -> None:
    url = make_sqlite(tmp_path / "sis.sqlite")
    with pytest.raises(InputError, match="no such table: enrolments"):
        list(SqlSource(url, "SELECT * FROM enrolments"))


def test_unbound_parameter_is_refused_before_connecting() -> None:
    with pytest.raises(InputError, match=r"uses :term but \[source.params\] has no value"):
        SqlSource("sqlite://", "SELECT * FROM e WHERE term = :term")


def test_unreachable_database_is_an_input_error_with_the_password_masked() -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://sis:hunter2@127.0.0.1:{port}/sis"
    source = SqlSource(url, "SELECT 1")
    assert source.description == f"postgresql+psycopg://sis:***@127.0.0.1:{port}/sis"
    with pytest.raises(InputError) as caught:
        list(source)
    assert f"cannot connect to postgresql+psycopg://sis:***@127.0.0.1:{port}/sis" in str(
        caught.value
    )
    assert "hunter2" not in str(caught.value)


def test_missing_driver_names_the_extra() -> None:
    with pytest.raises(InputError, match=r"no database driver .*pip install 'canvas-tui\[mssql\]'"):
        list(SqlSource("mssql+pyodbc://u:p@dsn", "SELECT 1"))


def test_columns_that_cannot_carry_an_enrollment(tmp_path: Path) -> None:
    url = make_sqlite(tmp_path / "sis.sqlite")
    with pytest.raises(InputError, match="no user_id or user_integration_id"):
        list(SqlSource(url, "SELECT course_id, role, status FROM enrollments"))


def test_typed_columns_and_canvas_ids_through_a_mapping(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "sis.sqlite")
    db.execute("CREATE TABLE roster (crn INTEGER, pidm INTEGER, kind TEXT, starts DATE)")
    db.execute(
        "INSERT INTO roster VALUES (40123, 9001, 'S', '2026-01-15'), (40123, NULL, 'S', NULL)"
    )
    db.commit()
    layout = Layout(
        format="mapped",
        mapping={"section_id": "crn", "user_id": "pidm", "role": "kind"},
        defaults={"status": "active"},
        values={"role": {"S": "student"}},
        ids={"user": IdKind.CANVAS, "section": IdKind.CANVAS},
    )
    records, problems = split(
        SqlSource(f"sqlite:///{tmp_path / 'sis.sqlite'}", "SELECT * FROM roster", layout=layout)
    )
    assert [(r.user, r.section, r.status) for r in records] == [("9001", "40123", SisStatus.ACTIVE)]
    assert (problems[0].provenance.line, problems[0].field) == (2, "pidm")


def test_empty_result_yields_nothing_and_says_so(tmp_path: Path) -> None:
    url = make_sqlite(tmp_path / "sis.sqlite")
    source = SqlSource(url, QUERY.format(table="enrollments"), params={"term": "1999"})
    assert list(source) == []
    assert any("no rows" in note for note in source.notes)


def test_mask_url() -> None:
    assert mask_url("mysql+pymysql://root:s3cret@db/test") == "mysql+pymysql://root:***@db/test"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"


def test_streaming_does_not_hold_the_rows(tmp_path: Path) -> None:
    """Peak memory grows by far less per row than a record costs: rows are not retained."""

    def peak(rows: int) -> int:
        path = tmp_path / f"big{rows}.sqlite"
        data = [("T", f"C{i % 50}", f"U{i}", "student", "", "active") for i in range(rows)]
        url = make_sqlite(path, data)
        tracemalloc.start()
        count = sum(1 for _ in SqlSource(url, "SELECT * FROM enrollments"))
        result = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == rows
        return result

    small, large = peak(2_000), peak(20_000)
    per_row = (large - small) / 18_000
    # A record with its provenance costs > 1 KB; the duplicate index ~100 bytes per row.
    assert per_row < 300, per_row


# -- real servers ----------------------------------------------------------------------------


@pytest.fixture
def server_table(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    url, port = request.param
    require_service(url.split("+")[0], listening(port), f"127.0.0.1:{port}")
    table = f"canvas_tui_src_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE {table} (term VARCHAR(10), course_id VARCHAR(20), user_id VARCHAR(20), "
                "role VARCHAR(20), section_id VARCHAR(20), status VARCHAR(30))"
            )
        )
        conn.execute(
            text(f"INSERT INTO {table} VALUES (:t, :c, :u, :r, :s, :st)"),
            [dict(zip(("t", "c", "u", "r", "s", "st"), row, strict=True)) for row in ROWS],
        )
    try:
        yield url, table
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {table}"))
        engine.dispose()


POSTGRES = ("postgresql+psycopg://postgres@127.0.0.1:5432/test", 5432)
MARIADB = ("mysql+pymysql://root@127.0.0.1:3306/test", 3306)
SERVERS = [
    pytest.param(POSTGRES, marks=pytest.mark.postgres, id="postgresql"),
    pytest.param(MARIADB, marks=pytest.mark.mysql, id="mariadb"),
]


@pytest.mark.parametrize("server_table", SERVERS, indirect=True)
def test_real_server_streams_the_query(server_table: tuple[str, str]) -> None:
    url, table = server_table
    check_fall_rows(SqlSource(url, QUERY.format(table=table), params={"term": "2026FA"}))


@pytest.mark.parametrize("server_table", SERVERS, indirect=True)
def test_real_server_transaction_is_read_only(server_table: tuple[str, str]) -> None:
    url, table = server_table
    engine = create_engine(url)
    if url.startswith("postgresql"):
        # (a DELETE inside WITH is refused by the server-side cursor itself; nextval() writes)
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SEQUENCE {table}_seq"))
        writes = f"SELECT course_id, user_id, role, status, nextval('{table}_seq') FROM {table}"
    else:
        writes = f"DELETE FROM {table} RETURNING course_id, user_id, role, status"
    try:
        with pytest.raises(InputError, match=r"(?i)read.only"):
            list(SqlSource(url, writes))
    finally:
        if url.startswith("postgresql"):
            with engine.begin() as conn:
                conn.execute(text(f"DROP SEQUENCE {table}_seq"))
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() == len(ROWS)
    engine.dispose()


@pytest.mark.parametrize("server_table", SERVERS, indirect=True)
def test_real_server_syntax_error(server_table: tuple[str, str]) -> None:
    url, table = server_table
    with pytest.raises(InputError, match=r"(?i)the query failed on .*syntax"):
        list(SqlSource(url, f"SELEC * FROM {table}"))


@pytest.mark.parametrize("server_table", SERVERS, indirect=True)
def test_real_server_stream_stops_cleanly_midway(server_table: tuple[str, str]) -> None:
    url, table = server_table
    items = iter(SqlSource(url, QUERY.format(table=table), params={"term": "2026FA"}))
    first = next(items)
    assert isinstance(first, EnrollmentRecord)
    items.close()  # type: ignore[attr-defined]  # the consumer stops early: connection released
