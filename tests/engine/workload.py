"""Enrollment CSVs that refer to a simulator world: valid creates that collide with nothing the
world already holds, plus chosen bad rows, so duplicates can only come from the tool."""

from __future__ import annotations

import csv
from pathlib import Path

from canvas_tui.simulator import World

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
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return rows
