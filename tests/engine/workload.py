"""Enrollment CSVs that refer to a simulator world: valid creates that collide with nothing the
world already holds, plus chosen bad rows, so duplicates can only come from the tool."""

from __future__ import annotations

from pathlib import Path

from canvas_tui.simulator import World
from canvas_tui.simulator.world import Enrollment
from tests.helpers import write_rows

HEADER = ["course_id", "user_id", "role", "section_id", "status", "term"]


def fresh_pairs(world: World, n: int) -> list[tuple[str, str, str]]:
    """(user SIS id, course SIS id, section SIS id) with no existing enrollment of the user in
    the course, across live, open courses."""
    courses = [
        c
        for c in world.courses.values()
        if c.sis_course_id and c.workflow_state == "available" and not c.concluded
    ]
    users = [u for u in world.users.values() if u.sis_user_id and u.sis_user_id.startswith("S1")]
    taken = {(e.user_id, e.course_id) for e in world.enrollments.values()}
    out: list[tuple[str, str, str]] = []
    i = 0
    while len(out) < n:
        user = users[i % len(users)]
        course = courses[(i // len(users) + i) % len(courses)]
        i += 1
        if (user.id, course.id) in taken:
            continue
        sections = [s for s in world.sections_of(course.id) if s.sis_section_id]
        if not sections:
            continue
        taken.add((user.id, course.id))
        assert user.sis_user_id and course.sis_course_id
        out.append((user.sis_user_id, course.sis_course_id, sections[0].sis_section_id or ""))
    return out


def live_sis_students(world: World) -> list[Enrollment]:
    """The world's active student enrollments in open courses whose user, course and section
    all have SIS ids: the ones a CSV row can name, to change them."""
    return [
        e
        for e in world.enrollments.values()
        if e.type == "StudentEnrollment"
        and e.workflow_state == "active"
        and world.users[e.user_id].sis_user_id
        and world.courses[e.course_id].sis_course_id
        and world.courses[e.course_id].workflow_state == "available"
        and world.sections[e.course_section_id].sis_section_id
    ]


def sis_ids(world: World, enrollment: Enrollment) -> tuple[str, str, str]:
    """(course, user, section) SIS ids of an enrollment from `live_sis_students`."""
    return (
        world.courses[enrollment.course_id].sis_course_id or "",
        world.users[enrollment.user_id].sis_user_id or "",
        world.sections[enrollment.course_section_id].sis_section_id or "",
    )


def write_csv(
    path: Path, world: World, n: int, *, bad: int = 0, unknown_users: int = 0
) -> list[list[str]]:
    """`n` data rows: `bad` with an invalid status, `unknown_users` naming no user, rest creates."""
    rows: list[list[str]] = []
    for k, (user, course, section) in enumerate(fresh_pairs(world, n - bad - unknown_users)):
        rows.append([course, user, "student", section, "active", f"T{k}"])
    for k in range(unknown_users):
        rows.append([rows[k][0], f"NOBODY-{k}", "student", rows[k][3], "active", "x"])
    for k in range(bad):
        rows.append([rows[k][0], rows[k][1], "student", rows[k][3], "enrolled", "x"])
    write_rows(path, rows, HEADER)
    return rows
