"""examples/: generated from the seed-7 world, never drifting, and answered by the simulator as a
real Canvas would answer each good and bad row."""

from __future__ import annotations

import csv
import importlib.util
import sqlite3
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

import pytest

from canvas_tui.simulator import build_app
from canvas_tui.simulator.world import World
from tests.helpers import fast_config
from tests.simulator.conftest import client_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def make_examples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_examples_are_current(make_examples: ModuleType) -> None:
    assert make_examples.main(["--check"]) == 0


def test_csv_shape_and_bad_rows() -> None:
    with (EXAMPLES / "enrollments.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert 2800 <= len(rows) <= 3500
    world = World.generate(7)
    unknown_users = {
        r["user_id"]
        for r in rows
        if r["user_id"] and world.find_user(f"sis_user_id:{r['user_id']}") is None
    }
    assert unknown_users == {"S999999"}
    assert {r["status"] for r in rows} >= {"active", "inactive", "completed", "deleted", "enrolled"}
    assert "TAEnrollment" in {r["role"] for r in rows}
    as_tuples = [tuple(r.values()) for r in rows]
    assert len(as_tuples) - len(set(as_tuples)) == 1  # exactly one duplicate row
    assert any(r["user_id"] == "" for r in rows)
    assert any("/" in r["user_id"] for r in rows)


def test_sqlite_sis_is_small_and_has_the_view() -> None:
    path = EXAMPLES / "sis.sqlite"
    assert path.stat().st_size < 1_000_000
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cursor = db.execute("SELECT * FROM enrollments LIMIT 1")
        columns = [c[0] for c in cursor.description]
        count = db.execute("SELECT count(*) FROM enrollments").fetchone()[0]
        names = [n for (n,) in db.execute("SELECT full_name FROM people")]
    finally:
        db.close()
    assert columns[:5] == ["course_id", "user_id", "role", "section_id", "status"]
    assert count == 800
    assert any(not n.isascii() for n in names)


ROLE_TYPES = {"student": "StudentEnrollment", "teacher": "TeacherEnrollment",
              "ta": "TaEnrollment", "observer": "ObserverEnrollment"}  # fmt: skip
EXPECTED = {
    "bad: unknown user": 404,
    "bad: unknown course": 404,
    "bad: deleted course": 404,
    "bad: hard-concluded course": 400,
    "bad: soft-concluded course": 400,
    "bad: TAEnrollment is not a role (TaEnrollment is)": 400,
    "bad: custom role name in the wrong case": 400,
}
NOT_SENT = ("bad: status", "bad: missing", "bad: section of another course")


async def test_special_rows_get_canvas_answers(make_examples: ModuleType) -> None:
    world = World.generate(7)
    app = build_app(fast_config(), world)
    async with client_for(app) as client:
        for reason, row in make_examples.special_rows(world):
            if reason.startswith(NOT_SENT):
                continue  # the source rejects these before anything is sent
            fields = {
                "enrollment[user_id]": f"sis_user_id:{row['user_id']}",
                "enrollment[enrollment_state]": "active",
            }
            role = row["role"]
            if role.lower() in ROLE_TYPES:
                fields["enrollment[type]"] = ROLE_TYPES[role.lower()]
            else:
                fields["enrollment[role]"] = role
            if row["associated_user_id"]:
                # an integer column: Canvas never resolves an SIS id there (see test_enrollments)
                observed = world.find_user(f"sis_user_id:{row['associated_user_id']}")
                assert observed is not None
                fields["enrollment[associated_user_id]"] = str(observed.id)
            if row["limit_section_privileges"]:
                fields["enrollment[limit_privileges_to_course_section]"] = row[
                    "limit_section_privileges"
                ]
            if row["section_id"]:
                path = f"/api/v1/sections/sis_section_id:{quote(row['section_id'], safe='')}/enrollments"
            else:
                path = (
                    f"/api/v1/courses/sis_course_id:{quote(row['course_id'], safe='')}/enrollments"
                )
            response = await client.post(path, data=fields)
            assert response.status_code == EXPECTED.get(reason, 200), (reason, response.text)
