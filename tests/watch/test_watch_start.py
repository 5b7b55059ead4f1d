"""`watch` at start: a source that cannot be read as configured is the config's fault (exit 2,
before a journal is made); a database server that is down is waited out, as it is later."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from canvas_tui.engine.watch_sources import open_poller
from canvas_tui.records import InputError, SourceUnavailable
from canvas_tui.simulator.testing import free_port
from tests.helpers import write_rows
from tests.watch.helpers import QUERY, SqliteSis, csv_config, sql_config

HEADER = ["course_id", "user_id", "role", "section_id", "status"]


def _refused(source: str | Path, config_path: Path) -> InputError:
    poller = open_poller(csv_config(config_path), source)
    with pytest.raises(InputError) as caught:
        poller.check()
    assert not isinstance(caught.value, SourceUnavailable)
    return caught.value


def test_a_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    error = _refused(tmp_path / "nothere.csv", tmp_path)
    assert "nothere.csv: no such file or folder" in str(error)
    assert "CSV file" in str(error) and "drop folder" in str(error)


def test_a_file_without_the_columns_is_a_config_error(tmp_path: Path) -> None:
    write_rows(tmp_path / "in.csv", [["x", "y"]], ["name", "email"])
    error = _refused(tmp_path / "in.csv", tmp_path)
    assert "in.csv" in str(error)
    (tmp_path / "empty.csv").write_text("")
    assert "the file is empty" in str(_refused(tmp_path / "empty.csv", tmp_path))


def test_a_readable_file_and_folder_pass(tmp_path: Path) -> None:
    write_rows(tmp_path / "in.csv", [["C1", "U1", "student", "S1", "active"]], HEADER)
    open_poller(csv_config(tmp_path), tmp_path / "in.csv").check()
    (tmp_path / "incoming").mkdir()
    open_poller(csv_config(tmp_path), tmp_path / "incoming").check()  # empty: files come later


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists any folder")
def test_a_folder_this_user_cannot_list_is_a_config_error(tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    folder.chmod(0)
    try:
        assert "cannot list and read" in str(_refused(folder, tmp_path))
    finally:
        folder.chmod(0o700)


def test_a_query_the_database_refuses_is_a_config_error(tmp_path: Path) -> None:
    sis = SqliteSis(tmp_path / "sis.db")
    sis.put(1, ("U1", "C1", "S1"))
    open_poller(sql_config(sis.url)).check()  # the right query: fine
    for query, said in [
        (QUERY.replace("enrollments", "enrolments"), "no such table"),
        ("SELECT id, seq FROM enrollments", "course_id"),  # a column the layout needs
        (QUERY.replace(", seq", ""), "cursor column seq"),  # [watch] cursor_column unselected
    ]:
        with pytest.raises(InputError, match=said) as caught:
            open_poller(sql_config(sis.url, query)).check()
        assert not isinstance(caught.value, SourceUnavailable)
    # a SQLite file is not a server: a path that cannot be opened is wrong, not down
    with pytest.raises(InputError) as caught:
        open_poller(sql_config(f"sqlite:///{tmp_path}/no/such/dir/sis.db")).check()
    assert not isinstance(caught.value, SourceUnavailable)
    with sqlite3.connect(tmp_path / "sis.db") as db:  # the check wrote nothing
        assert db.execute("SELECT COUNT(*) FROM enrollments").fetchone() == (1,)


def test_a_database_server_that_refuses_the_connection_is_down_not_wrong() -> None:
    url = f"postgresql+psycopg://reader@127.0.0.1:{free_port()}/sis"  # nobody listens
    with pytest.raises(SourceUnavailable, match="cannot connect to"):
        open_poller(sql_config(url)).check()
