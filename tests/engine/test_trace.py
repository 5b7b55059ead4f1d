"""`canvas-tui trace USER`: one person across three runs' journals and a source that changed
since, against the simulator on loopback (tests/conftest.py `sim`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from canvas_tui.cli import build_parser
from canvas_tui.commands.trace import main as trace_main
from canvas_tui.engine.journal import Journal
from canvas_tui.engine.trace import TraceRequest, trace, user_forms
from canvas_tui.paths import default_journal_dir
from canvas_tui.simulator import Simulator
from tests.engine.helpers import items
from tests.engine.workload import HEADER
from tests.helpers import sync, write_rows


def _read(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


def _run_trace(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = trace_main(build_parser().parse_args(["trace", *argv]), out=out)
    return code, out.getvalue()


@pytest.fixture
def three_runs(sim: Simulator, tmp_path: Path) -> tuple[str, list[list[str]]]:
    """good.csv synced three times, changed before the second and third runs and once more
    after the third: (the person's SIS id, the source's rows now)."""
    source = tmp_path / "good.csv"
    rows = _read(source)
    person = rows[0][1]
    mine = next(i for i, r in enumerate(rows) if r[1] == person)
    assert sync(str(source), "--log-format", "json") == 0  # run 1: created
    rows[mine][4] = "completed"
    rows.append([rows[mine][0], person, "student", rows[mine][3], "enrolled", "bad"])
    write_rows(source, rows, HEADER)
    assert sync(str(source), "--log-format", "json") == 1  # run 2: concluded; one invalid row
    rows[mine][4] = "active"
    write_rows(source, rows, HEADER)
    assert sync(str(source), "--log-format", "json") == 1  # run 3: active again
    rows[mine][5] = "T-changed"  # after run 3: the row changed, not yet sent
    other = next(r for r in rows if r[1] != person and r[0] != rows[mine][0])
    rows.append([other[0], person, "student", other[3], "active", "new"])  # not yet sent
    write_rows(source, rows, HEADER)
    return person, rows


def test_user_forms_cover_every_id_kind() -> None:
    assert user_forms("S1") == (
        "sis_user_id:S1",
        "sis_login_id:S1",
        "sis_integration_id:S1",
        "S1",
    )
    assert user_forms("sis_login_id:a@b") == ("sis_login_id:a@b", "a@b")


def test_three_runs_and_a_changed_source(three_runs: tuple[str, list[list[str]]]) -> None:
    person, _ = three_runs
    journals = sorted(default_journal_dir().glob("*.journal"))
    assert len(journals) == 3
    code, out = _run_trace(person, "--source", "good.csv", "--json")
    assert code == 0
    found = json.loads(out)
    assert found["schema_version"] == 1
    assert len(found["journals"]) == 3
    records = found["records"]
    # oldest first: run 1's create, run 2's conclude and its invalid row, run 3's reactivation
    assert [r["when"] for r in records] == sorted(r["when"] for r in records)
    ran = [Path(r["journal"]).name for r in records]
    assert ran == sorted(ran, key=lambda n: [Path(j).name for j in found["journals"]].index(n))
    valid = [r for r in records if r["state"] != "failed"]
    assert [r["status"] for r in valid] == ["active", "completed", "active"]
    assert all(r["state"] == "done" for r in valid)
    assert all(r["attempts"] for r in valid)
    first = valid[0]["attempts"][-1]
    assert first["method"] == "POST" and first["status"] == 200
    assert "enrollments" in first["url"] and person in first["request_body"]
    assert valid[1]["verdict"] in ("conclude", "none")
    invalid = [r for r in records if r["state"] == "failed"]
    assert len(invalid) == 2  # runs 2 and 3 read the invalid row
    assert {r["category"] for r in invalid} == {"invalid_input"}
    assert invalid[0]["user"] == person  # a rejected row keeps the id as written
    # every run's row is the one the source has changed since (its term column)
    assert {r["in_source_now"] for r in valid} == {"changed"}
    assert {r["in_source_now"] for r in invalid} == {"same"}
    # the source now: the changed row, the invalid row, the new row
    by_status = {(r["status"], r["raw"].get("term")): r for r in found["source_rows"]}
    changed = by_status[("active", "T-changed")]
    assert changed["sent"].startswith("changed since") and changed["verdict"] == "create"
    assert by_status[("active", "new")]["sent"].startswith("in no run yet")
    assert by_status[("enrolled", "bad")]["verdict"].startswith("invalid")
    assert found["enrollments"] is None  # Canvas is read only on request


def test_text_output_reads_oldest_first(three_runs: tuple[str, list[list[str]]]) -> None:
    person, _ = three_runs
    code, out = _run_trace(person, "--source", "good.csv")
    assert code == 0
    assert out.index("active · as sis_user_id:") < out.index("completed · as sis_user_id:")
    assert "POST " in out and "→ HTTP 200" in out
    assert "The source now: good.csv (3 rows)" in out
    assert "in no run yet" in out and "changed since" in out


def test_live_resolves_a_login_and_reads_the_enrollments(
    three_runs: tuple[str, list[list[str]]], sim: Simulator
) -> None:
    person, rows = three_runs
    user = next(u for u in sim.world.users.values() if u.sis_user_id == person)
    code, out = _run_trace(user.login_id, "--source", "good.csv", "--live", "--json")
    assert code == 0
    found = json.loads(out)
    assert [p["id"] for p in found["people"]] == [user.id]
    assert f"sis_user_id:{person}" in found["forms"]  # the login found the SIS id's records
    assert len([r for r in found["records"] if r["state"] == "done"]) == 3
    courses = {e.get("sis_course_id") for e in found["enrollments"]}
    mine = next(r for r in rows if r[1] == person)
    assert mine[0] in courses
    live = {r["raw"].get("term"): r["live"] for r in found["source_rows"]}
    assert live["T-changed"].startswith("in sync")  # active in Canvas after run 3
    assert live["new"].startswith("missing")


def test_nothing_found_exits_1(sim: Simulator) -> None:
    code, out = _run_trace("NOBODY-AT-ALL", "--no-source")
    assert code == 1
    assert "Nothing names this person" in out


def test_schema1_journal_is_searched_read_only(tmp_path: Path) -> None:
    """An older journal is searched as it is (read through views), and left unchanged."""
    fixture = Path(__file__).parent / "data" / "schema1.journal"
    copy = tmp_path / "old.journal"
    copy.write_bytes(fixture.read_bytes())
    found = trace(TraceRequest("U2", journals=[copy]))
    assert [r.user for r in found.records] == ["sis_user_id:U2"]
    assert copy.read_bytes() == fixture.read_bytes()


def test_a_journal_that_is_not_one_is_reported(tmp_path: Path) -> None:
    good = Journal(tmp_path / "a.journal")
    good.load(items(5), description="in.csv")
    good.close()
    (tmp_path / "b.journal").write_text("not sqlite at all, just text" * 100)
    found = trace(TraceRequest("U3", journals=sorted(tmp_path.glob("*.journal"))))
    assert [r.record_id for r in found.records] == [3]
    assert len(found.problems) == 1 and "b.journal" in found.problems[0]


def test_a_missing_source_named_by_hand_is_a_usage_error(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _run_trace("S1", "--source", "no-such.csv")
    assert code == 2
    assert "no-such.csv: no such file" in capsys.readouterr().err


def test_a_sql_source_is_traced_by_query_row(tmp_path: Path) -> None:
    """A SQL source's rows are named by their row in the query's result (`sql:<url>:row`)."""
    import sqlite3

    from canvas_tui.sources.sql import SqlSource

    db = tmp_path / "sis.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE e (course_id, user_id, role, section_id, status)")
    conn.executemany(
        "INSERT INTO e VALUES (?, ?, ?, ?, ?)",
        [
            ("C1", "U1", "student", "", "active"),
            ("C2", "U2", "student", "", "active"),
            ("C3", "U2", "teacher", "", "completed"),
        ],
    )
    conn.commit()
    conn.close()
    source = SqlSource(f"sqlite:///{db}", "SELECT * FROM e ORDER BY rowid")
    found = trace(TraceRequest("U2", source_items=source, source_description=source.description))
    assert [(r.line, r.course, r.verdict) for r in found.source_rows] == [
        (2, "sis_course_id:C2", "create"),
        (3, "sis_course_id:C3", "conclude"),
    ]
    assert all(r.source.startswith("sql:") for r in found.source_rows)
    assert all(r.sent.startswith("in no run yet") for r in found.source_rows)


def test_a_record_that_failed_after_its_requests_is_not_called_unsent(sim: Simulator) -> None:
    """A full-mode run journals no action: the verdict is the planned one, and "not sent yet"
    only for a record still pending (this one lists the requests it made)."""
    assert sync("mixed.csv", "--no-plan", "--report", "r.json") == 1
    report = json.loads(Path("r.json").read_text())
    unknown = next(r for r in report["records"] if r.get("category") == "user_not_found")
    code, out = _run_trace(unknown["user"], "--json")
    assert code == 0
    record = next(r for r in json.loads(out)["records"] if r["state"] == "failed")
    assert record["attempts"] and "not sent yet" not in record["verdict"]
