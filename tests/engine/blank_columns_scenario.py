"""Issue 10's end-to-end scenario, shared by every way a run can send it (full mode, plan mode,
resumed after SIGKILL, console retry): what a person set in Canvas by hand must survive a source
that leaves those columns blank, and an observer row must link to the right student.

Everything goes through the simulator's HTTP API, so the same helpers work in process and against
a `canvas-tui simulate` process. The course, section and users are the generated world's fixed
documentation ones, present in every `World.generate` world and never picked by the workloads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from canvas_tui.simulator.world import DOC_COURSE, DOC_USERS
from tests.helpers import write_rows

COURSE, SECTION = DOC_COURSE, "1B"
TA, STUDENT, OBSERVER = DOC_USERS
START, END = "2026-09-01T08:00:00Z", "2026-12-20T17:00:00Z"
OPTIONAL = ("associated_user_id", "start_date", "end_date", "limit_section_privileges")
HEADER = ["course_id", "user_id", "role", "section_id", "status", *OPTIONAL]
ENROLLMENTS = f"/api/v1/courses/sis_course_id:{COURSE}/enrollments"


def rows() -> list[list[str]]:
    """The SIS rows: the TA and the student with every optional column blank, and an observer of
    the student."""
    return [
        [COURSE, TA, "ta", SECTION, "active", "", "", "", ""],
        [COURSE, STUDENT, "student", SECTION, "active", "", "", "", ""],
        [COURSE, OBSERVER, "observer", SECTION, "active", STUDENT, "", "", ""],
    ]


def write_csv(path: Path, before: Sequence[Sequence[str]] = ()) -> Path:
    """`before` (rows of the first five columns), then the scenario's rows."""
    padded = [[*row, *[""] * (len(HEADER) - len(row))] for row in before]
    return write_rows(path, [*padded, *rows()], HEADER)


async def arrange(client: httpx.AsyncClient) -> None:
    """What a person set in Canvas by hand: the TA limited to the section, the student's dates."""
    base = {
        "enrollment[enrollment_state]": "active",
        "enrollment[course_section_id]": f"sis_section_id:{SECTION}",
    }
    ta = await client.post(
        ENROLLMENTS,
        data={
            **base,
            "enrollment[user_id]": f"sis_user_id:{TA}",
            "enrollment[type]": "TaEnrollment",
            "enrollment[limit_privileges_to_course_section]": "true",
        },
    )
    student = await client.post(
        ENROLLMENTS,
        data={
            **base,
            "enrollment[user_id]": f"sis_user_id:{STUDENT}",
            "enrollment[type]": "StudentEnrollment",
            "enrollment[start_at]": START,
            "enrollment[end_at]": END,
        },
    )
    assert ta.status_code == student.status_code == 200, (ta.text, student.text)
    assert ta.json()["limit_privileges_to_course_section"] is True
    assert (student.json()["start_at"], student.json()["end_at"]) == (START, END)


async def _of(client: httpx.AsyncClient, user: str, kind: str) -> list[dict[str, Any]]:
    response = await client.get(
        ENROLLMENTS,
        params=[
            ("user_id", f"sis_user_id:{user}"),
            ("type[]", kind),
            ("per_page", "100"),
            *(("state[]", s) for s in ("active", "invited", "inactive", "completed", "deleted")),
        ],
    )
    assert response.status_code == 200, response.text
    return [e for e in response.json() if e.get("sis_section_id") == SECTION]


async def check(client: httpx.AsyncClient) -> None:
    """The TA's section limit and the student's dates are still Canvas's; the observer observes
    the student (by the student's Canvas id)."""
    (ta,) = await _of(client, TA, "TaEnrollment")
    assert ta["enrollment_state"] == "active"
    assert ta["limit_privileges_to_course_section"] is True, "the TA's section limit was reset"
    (student,) = await _of(client, STUDENT, "StudentEnrollment")
    assert (student["start_at"], student["end_at"]) == (START, END), "the student's dates moved"
    student_id = (await client.get(f"/api/v1/users/sis_user_id:{STUDENT}")).json()["id"]
    observers = await _of(client, OBSERVER, "ObserverEnrollment")
    assert [(o["associated_user_id"], o["enrollment_state"]) for o in observers] == [
        (student_id, "active")
    ], "the observer does not observe the student (issue 10 rule 2)"
