"""Regenerate examples/enrollments.csv and examples/sis.sqlite from the seed-7 simulator world.

    .venv/bin/python examples/make_examples.py [--check]

Both files are derived from `World.generate(7)` (the world `canvas-tui demo` and
`canvas-tui simulate` serve by default), so they never drift from the generator; a test runs
`--check`. They hold realistic bad rows on purpose: an unknown user, an unknown course, concluded
and deleted courses, a `TAEnrollment` role, a bad status, missing fields, an exact duplicate, a
section of another course, and users with non-ASCII names and slashes in their SIS ids.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from canvas_tui.simulator.world import (
    BUILT_IN_ROLE_IDS,
    COMPLETED_COURSE,
    DELETED_COURSE,
    DOC_COURSE,
    NON_ASCII_USER,
    SLASH_COURSE,
    SLASH_SECTION,
    SLASH_USER,
    SOFT_CONCLUDED_COURSE,
    UNPUBLISHED_COURSE,
    World,
)

SEED = 7
HERE = Path(__file__).resolve().parent
CSV_PATH = HERE / "enrollments.csv"
SQLITE_PATH = HERE / "sis.sqlite"
COLUMNS = (
    "course_id",
    "user_id",
    "role",
    "section_id",
    "status",
    "associated_user_id",
    "limit_section_privileges",
)
TARGET_ROWS = 2650
SQL_ROWS = 800  # the SQLite SIS holds a smaller registrar extract

Row = dict[str, str]


def row(
    course: str, user: str, role: str, section: str, status: str = "active", **extra: str
) -> Row:
    values = dict.fromkeys(COLUMNS, "")
    values.update(
        course_id=course, user_id=user, role=role, section_id=section, status=status, **extra
    )
    return values


def roster_rows(world: World, rng: random.Random) -> Iterator[Row]:
    """A term's feed: every live course's teacher, some TAs and Graders, and its students.

    Students already enrolled in Canvas stay in the feed (a real SIS sends everyone, every time),
    so a run meets re-posts as well as new enrollments.
    """
    students = [u for u in world.users.values() if u.id >= 1000 and u.sis_user_id]
    teacher_role = BUILT_IN_ROLE_IDS["TeacherEnrollment"]
    courses = [
        c
        for c in world.courses.values()
        if c.sis_course_id
        and c.workflow_state in ("available", "unpublished")
        and not c.concluded
        and c.sis_course_id != DOC_COURSE
    ]
    per_course = max(1, TARGET_ROWS // max(1, len(courses)))
    for course in courses:
        sections = [s for s in world.sections_of(course.id) if s.sis_section_id]
        if not sections:
            continue
        existing = world.enrollments_in_course(course.id)
        course_id = course.sis_course_id or ""
        for enrollment in existing:
            user = world.users[enrollment.user_id]
            section = world.sections[enrollment.course_section_id]
            if enrollment.role_id == teacher_role:
                yield row(
                    course_id, user.sis_user_id or "", "teacher", section.sis_section_id or ""
                )
            elif rng.random() < 0.6:
                yield row(
                    course_id, user.sis_user_id or "", "student", section.sis_section_id or ""
                )
        if rng.random() < 0.35:
            ta = rng.choice(students)
            yield row(course_id, ta.sis_user_id or "", rng.choice(("ta", "TA", "Grader")),
                      sections[0].sis_section_id or "")  # fmt: skip
        enrolled = {e.user_id for e in existing}
        for user in rng.sample(students, per_course - 3):
            if user.id in enrolled:
                continue
            roll = rng.random()
            status = (
                "active"
                if roll < 0.93
                else "inactive"
                if roll < 0.96
                else "completed"
                if roll < 0.98
                else "deleted"
            )
            section = rng.choice(sections)
            yield row(course_id, user.sis_user_id or "", "student", section.sis_section_id or "",
                      status)  # fmt: skip


def special_rows(world: World) -> list[tuple[str, Row]]:
    """Rows every demo should show, good and bad, each with why it is there."""
    observed = world.find_user("sis_user_id:S100100")
    assert observed is not None
    return [
        ("Canvas documentation sample", row(DOC_COURSE, "01103", "student", "1B")),
        ("Canvas documentation sample", row(DOC_COURSE, "13834", "student", "2A")),
        ("Canvas documentation sample", row(DOC_COURSE, "13aa3", "teacher", "2A")),
        ("non-ASCII name (Zoë Ångström-Núñez)", row(DOC_COURSE, NON_ASCII_USER, "student", "1B")),
        ("non-ASCII name (Ngọc Đặng)", row(DOC_COURSE, "S900002", "student", "2A")),
        ("slashes in course, section and user SIS ids",
         row(SLASH_COURSE, SLASH_USER, "student", SLASH_SECTION)),
        ("custom role, case-sensitive name", row(DOC_COURSE, "S900003", "Grader", "2A")),
        ("observer of a student",
         row(DOC_COURSE, "S100101", "observer", "1B", associated_user_id="S100100")),
        ("section-limited TA", row(DOC_COURSE, "S100102", "ta", "1B",
                                    limit_section_privileges="true")),
        ("course only: Canvas uses the default section", row(UNPUBLISHED_COURSE, "S100103", "student", "")),
        ("bad: unknown user", row(DOC_COURSE, "S999999", "student", "1B")),
        ("bad: unknown course", row("NOPE101-F26", "S100104", "student", "")),
        ("bad: hard-concluded course", row(COMPLETED_COURSE, "S100105", "student", "")),
        ("bad: soft-concluded course", row(SOFT_CONCLUDED_COURSE, "S100106", "student", "")),
        ("bad: deleted course", row(DELETED_COURSE, "S100107", "student", "")),
        ("bad: TAEnrollment is not a role (TaEnrollment is)",
         row(DOC_COURSE, "S100108", "TAEnrollment", "1B")),
        ("bad: status", row(DOC_COURSE, "S100109", "student", "1B", "enrolled")),
        ("bad: missing user_id", row(DOC_COURSE, "", "student", "1B")),
        ("bad: missing course_id and section_id", row("", "S100110", "student", "")),
        ("bad: section of another course", row(DOC_COURSE, "S100111", "student", SLASH_SECTION)),
        ("bad: custom role name in the wrong case", row(DOC_COURSE, "S100112", "grader", "1B")),
    ]  # fmt: skip


def build_rows(world: World) -> list[Row]:
    rng = random.Random(f"examples:{SEED}")
    rows = list(roster_rows(world, rng))
    rng.shuffle(rows)
    specials = [r for _, r in special_rows(world)]
    # spread the special rows through the file, so the first screenful already shows problems
    for index, special in enumerate(specials):
        rows.insert(min(len(rows), 7 + index * 37), special)
    duplicate_of = rows[12]
    rows.insert(40, dict(duplicate_of))  # an exact duplicate row, as SIS exports do have
    return rows


def csv_text(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


SCHEMA = """
CREATE TABLE people (
    person_id INTEGER PRIMARY KEY,
    sis_user_id TEXT,
    full_name TEXT NOT NULL
);
CREATE TABLE registrations (
    registration_id INTEGER PRIMARY KEY,
    person_id INTEGER REFERENCES people(person_id),
    sis_course_id TEXT,
    sis_section_id TEXT,
    role TEXT,
    status TEXT,
    observes_sis_user_id TEXT,
    section_only INTEGER NOT NULL DEFAULT 0
);
-- The view a canvas-tui SQL source queries: Canvas enrollments.csv column names.
CREATE VIEW enrollments AS
SELECT r.sis_course_id AS course_id,
       p.sis_user_id AS user_id,
       r.role AS role,
       r.sis_section_id AS section_id,
       r.status AS status,
       r.observes_sis_user_id AS associated_user_id,
       CASE r.section_only WHEN 1 THEN 'true' ELSE 'false' END AS limit_section_privileges,
       p.full_name AS full_name
FROM registrations r LEFT JOIN people p ON p.person_id = r.person_id
ORDER BY r.registration_id;
"""


def write_sqlite(world: World, rows: list[Row], path: Path) -> None:
    """A small registrar database: people + registrations, and an `enrollments` view."""
    people: dict[str, int] = {}
    by_sis = {u.sis_user_id: u for u in world.users.values() if u.sis_user_id}
    extract = rows[:SQL_ROWS]
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "sis.sqlite"
        db = sqlite3.connect(scratch)
        db.executescript(SCHEMA)
        for index, item in enumerate(extract, start=1):
            sis = item["user_id"]
            person_id: int | None = None
            if sis:
                if sis not in people:
                    known = by_sis.get(sis)
                    name = known.name if known else "Unknown Applicant"
                    people[sis] = len(people) + 1
                    db.execute("INSERT INTO people VALUES (?, ?, ?)", (people[sis], sis, name))
                person_id = people[sis]
            db.execute(
                "INSERT INTO registrations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    index,
                    person_id,
                    item["course_id"] or None,
                    item["section_id"] or None,
                    item["role"],
                    item["status"],
                    item["associated_user_id"] or None,
                    1 if item["limit_section_privileges"] == "true" else 0,
                ),
            )
        db.commit()
        db.execute("VACUUM")
        db.close()
        path.write_bytes(scratch.read_bytes())


def sqlite_rows(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT * FROM enrollments").fetchall()
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    world = World.generate(SEED)
    rows = build_rows(world)
    text = csv_text(rows)
    if args.check:
        stale = []
        if not CSV_PATH.is_file() or CSV_PATH.read_text(encoding="utf-8") != text:
            stale.append(CSV_PATH.name)
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "sis.sqlite"
            write_sqlite(world, rows, fresh)
            if not SQLITE_PATH.is_file() or sqlite_rows(SQLITE_PATH) != sqlite_rows(fresh):
                stale.append(SQLITE_PATH.name)
        if stale:
            print(f"stale: {', '.join(stale)}; run examples/make_examples.py", file=sys.stderr)
            return 1
        return 0
    CSV_PATH.write_text(text, encoding="utf-8")
    write_sqlite(world, rows, SQLITE_PATH)
    print(
        f"wrote {CSV_PATH} ({len(rows)} rows) and {SQLITE_PATH} ({min(len(rows), SQL_ROWS)} rows)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
