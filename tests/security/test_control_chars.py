"""A control character in an id (NUL, ESC, BEL, a C1 code) is a row error: the row fails with
the field and the character named, and nothing of it is sent to Canvas."""

from __future__ import annotations

from pathlib import Path

import pytest

from canvas_tui.records import RowProblem, State
from canvas_tui.simulator import SimConfig, World, build_app
from canvas_tui.simulator.testing import asgi_transport
from canvas_tui.sources import CsvSource
from tests.engine.conftest import session_for
from tests.engine.workload import fresh_pairs
from tests.helpers import write_rows

HEADER = ["course_id", "user_id", "role", "section_id", "status", "associated_user_id"]


def _rows(world: World) -> tuple[list[list[str]], list[tuple[str, str]]]:
    """Good rows, then one row per poisoned field: (rows, [(field, character)])."""
    pairs = fresh_pairs(world, 8)
    rows = [[c, u, "student", s, "active", ""] for u, c, s in pairs[:3]]
    poisoned = [
        ("user_id", "\x00"),
        ("course_id", "\x1b"),
        ("section_id", "\x85"),
        ("role", "\x07"),
        ("associated_user_id", "\x01"),
    ]
    for (user, course, section), (field, char) in zip(pairs[3:], poisoned, strict=True):
        row = {"course_id": course, "user_id": user, "role": "student"}
        row |= {"section_id": section, "status": "active", "associated_user_id": ""}
        if field == "associated_user_id":
            row["role"] = "observer"
            row[field] = "S1" + char + "x"
        else:
            row[field] = row[field][:2] + char + row[field][2:]
        rows.append([row[h] for h in HEADER])
    return rows, poisoned


def test_control_characters_in_ids_are_row_errors(tmp_path: Path) -> None:
    rows, poisoned = _rows(World.generate(7))
    items = list(CsvSource(write_rows(tmp_path / "in.csv", rows, HEADER)))
    problems = items[3:]
    assert all(isinstance(p, RowProblem) for p in problems), problems
    for problem, (field, char) in zip(problems, poisoned, strict=True):
        assert isinstance(problem, RowProblem)
        assert problem.field == field
        assert f"U+{ord(char):04X} at position 3" in problem.message


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x9b"])
async def test_nothing_with_a_control_character_reaches_canvas(tmp_path: Path, char: str) -> None:
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=50), world)
    (user, course, section), *good = fresh_pairs(world, 4)
    rows = [[c, u, "student", s, "active", ""] for u, c, s in good]
    rows.append([course, user[:2] + char + user[2:], "student", section, "active", ""])
    write_rows(tmp_path / "in.csv", rows, HEADER)
    session = session_for(tmp_path / "in.csv", tmp_path / "j", transport=asgi_transport(app))
    state = await session.run()
    bad = session.store.get(len(rows))
    await session.close()
    assert bad is not None and bad.state == State.FAILED and bad.category == "invalid_input"
    assert bad.attempts == 0
    assert state.counts[State.DONE] == len(good)
    assert app.stats()["enrollments_created"] == len(good)
