"""The seeded world: deterministic, scalable, and holding the ids the documentation sample uses."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from canvas_tui.simulator.world import (
    ADMIN_TOKEN,
    GRADER_ROLE_ID,
    NO_PERMISSION_TOKEN,
    World,
)

DOC_SAMPLE = Path(__file__).parent / "data" / "canvas_doc_enrollments.csv"


def test_canvas_documentation_sample_ids_exist() -> None:
    world = World.generate(7)
    with DOC_SAMPLE.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    for row in rows:
        course = world.find_course(f"sis_course_id:{row['course_id']}")
        section = world.find_section(f"sis_section_id:{row['section_id']}")
        user = world.find_user(f"sis_user_id:{row['user_id']}")
        assert course is not None and user is not None and section is not None, row
        assert section.course_id == course.id
        assert course.workflow_state == "available" and not course.concluded


def test_the_sample_ids_exist_in_any_seed_and_size() -> None:
    world = World.generate(12345, users=10, courses=1)
    assert world.find_user("sis_user_id:13aa3") is not None
    assert world.find_section("sis_section_id:2A") is not None


def test_same_seed_same_world() -> None:
    one, two = World.generate(3), World.generate(3)
    assert [(u.id, u.name, u.sis_user_id) for u in one.users.values()] == [
        (u.id, u.name, u.sis_user_id) for u in two.users.values()
    ]
    assert [(e.user_id, e.course_section_id) for e in one.enrollments.values()] == [
        (e.user_id, e.course_section_id) for e in two.enrollments.values()
    ]
    other = World.generate(4)
    assert [u.name for u in other.users.values()] != [u.name for u in one.users.values()]


def test_world_has_the_variety_a_sync_meets() -> None:
    world = World.generate(7)
    states = {c.workflow_state for c in world.courses.values()}
    assert {"available", "unpublished", "completed", "deleted"} <= states
    assert any(c.concluded and c.workflow_state == "available" for c in world.courses.values())
    assert any("/" in (u.sis_user_id or "") for u in world.users.values() if u.id >= 1000)
    assert any(not u.name.isascii() for u in world.users.values())
    assert world.roles[GRADER_ROLE_ID].base_role_type == "TaEnrollment"
    assert world.tokens[ADMIN_TOKEN].admin and not world.tokens[NO_PERMISSION_TOKEN].admin
    assert world.duplicates() == 0


def test_large_worlds_build_quickly() -> None:
    started = time.perf_counter()
    world = World.generate(1, users=10_000, courses=200)
    assert len(world.users) >= 10_000 and len(world.courses) >= 200
    assert time.perf_counter() - started < 5  # a generous bound; benchmarks measure properly
