"""The roster inspector's verdict: a course's live Canvas roster against the SIS records for it.

A view over the plan's rule (diff.py): which enrollment a SIS row names is `roster_match`'s answer
(user + type/role + section in any API id form, ../shared/CANVAS_API.md §2.4; a row without a
section names the user's enrollment with that role in the course's default section only), and
whether the row holds is `HOLDS`, the states diff.py's `settle` leaves alone. The verdict asks
whether the roster already is what the SIS says, where the plan asks which requests make it so:
a gone row (deleted) with no enrollment at all is in sync here, though a sync creates and ends
one as Canvas's importer does, and an invited `active` row is in sync (`HOLDS`).
Each SIS row gets at most one enrollment, and a verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from canvas_tui.engine.plan.diff import GONE, HOLDS
from canvas_tui.engine.roster_match import (
    DefaultSection,
    UserKey,
    base_type,
    names_enrollment,
    user_key,
    user_keys,
)
from canvas_tui.engine.state import RecordRow
from canvas_tui.records import ROLE_WORDS, SisStatus, State, api_id, sis_value, split_api_id


class Verdict(StrEnum):
    OK = "in sync"
    MISSING = "missing in Canvas"
    EXTRA = "extra in Canvas"
    DIFFERS = "state differs"
    INVALID = "invalid SIS row"  # rejected by validation: never sendable as it stands


def course_ref(text: str) -> str:
    """What the operator typed -> an API id: digits are a Canvas id, the rest a sis_course_id."""
    text = text.strip()
    kind, _ = split_api_id(text)
    if kind is not None or text.isdigit():
        return text
    return api_id("sis_course_id", text)


def role_key(role: str) -> str:
    """A SIS role word -> Canvas's base type (how Canvas names it in `role`); custom names stay."""
    lower = role.strip().lower()
    if lower.startswith("student"):
        return "StudentEnrollment"
    return ROLE_WORDS.get(lower, role.strip())


@dataclass(frozen=True, slots=True)
class RosterLine:
    user: str  # bare SIS user id (or Canvas user id when the SIS gave none)
    name: str
    role: str
    section: str
    canvas_state: str  # "" when not in Canvas
    sis_status: str  # "" when not in the SIS source
    verdict: Verdict
    record_id: int | None = None  # the journal record, when the SIS source has this enrollment
    record_state: State | None = None


@dataclass(frozen=True, slots=True)
class RosterDiff:
    lines: Sequence[RosterLine]
    canvas_count: int
    sis_count: int

    def count(self, verdict: Verdict) -> int:
        return sum(1 for line in self.lines if line.verdict is verdict)

    @property
    def missing(self) -> list[RosterLine]:
        return [line for line in self.lines if line.verdict is Verdict.MISSING]


def _holds(status: str) -> frozenset[str]:
    """The states in which a journal row's status holds (`HOLDS`)."""
    try:
        return HOLDS[SisStatus(status)]
    except ValueError:  # not a status the source validation lets through
        return frozenset({status})


def _canvas_user(e: Mapping[str, Any]) -> str:
    sis = e.get("sis_user_id") or (e.get("user") or {}).get("sis_user_id")
    return str(sis) if sis else str(e.get("user_id", ""))


def _record_user(row: RecordRow) -> str:
    return sis_value(row.user)


def records_for_course(
    rows: Iterable[RecordRow], course_sis_id: str | None, course_id: str
) -> list[RecordRow]:
    """The SIS records that name this course (by SIS id or by its Canvas id)."""
    wanted = {course_id}
    if course_sis_id:
        wanted.add(course_sis_id)
    return [r for r in rows if r.course is not None and sis_value(r.course) in wanted]


def _without_canvas_row(row: RecordRow, role: str, section: str, verdict: Verdict) -> RosterLine:
    """The line of a SIS record that no Canvas enrollment answers."""
    return RosterLine(
        _record_user(row), "", role, section, "", row.status, verdict, row.record_id, row.state
    )


def compare(
    enrollments: Sequence[Mapping[str, Any]],
    records: Sequence[RecordRow],
    default: DefaultSection | None = None,
) -> RosterDiff:
    """Each SIS row against the roster; `default` is the course's default section (from its
    sections), which rows without a section are matched in."""
    by_user: dict[UserKey, list[Mapping[str, Any]]] = {}
    for e in enrollments:
        for key in user_keys(e):
            by_user.setdefault(key, []).append(e)
    matched: set[int] = set()
    lines: list[RosterLine] = []
    for row in records:
        role = role_key(row.role)
        section = sis_value(row.section)

        if row.category == "invalid_input":
            lines.append(_without_canvas_row(row, role, section, Verdict.INVALID))
            continue
        enrollment_type = base_type(row.role)
        free = [
            e
            for e in by_user.get(user_key(row.user), [])
            if id(e) not in matched
            and names_enrollment(
                e,
                user=row.user,
                role=row.role,
                section=row.section,
                enrollment_type=enrollment_type,
                default=default,
            )
        ]
        wanted = _holds(row.status)
        # The roster holds every state (deleted rows included): prefer the row that satisfies
        # the SIS status, so an old deleted row never hides the live one.
        found = next((e for e in free if e.get("enrollment_state") in wanted), None) or next(
            iter(free), None
        )
        if found is None:
            lines.append(
                _without_canvas_row(
                    row, role, section, Verdict.OK if row.status in GONE else Verdict.MISSING
                )
            )
            continue
        matched.add(id(found))
        canvas_state = str(found.get("enrollment_state", ""))
        ok = canvas_state in wanted
        lines.append(
            RosterLine(
                _record_user(row),
                str((found.get("user") or {}).get("name", "")),
                role,
                str(found.get("sis_section_id") or found.get("course_section_id") or ""),
                canvas_state,
                row.status,
                Verdict.OK if ok else Verdict.DIFFERS,
                row.record_id,
                row.state,
            )
        )
    for e in enrollments:
        if id(e) in matched or e.get("enrollment_state") == "deleted":
            continue  # a deleted row nobody asked for is history, not an extra enrollment
        lines.append(
            RosterLine(
                _canvas_user(e),
                str((e.get("user") or {}).get("name", "")),
                str(e.get("role") or e.get("type") or ""),
                str(e.get("sis_section_id") or e.get("course_section_id") or ""),
                str(e.get("enrollment_state", "")),
                "",
                Verdict.EXTRA,
            )
        )
    lines.sort(key=lambda line: (line.user, line.role, line.section))
    live = sum(1 for e in enrollments if e.get("enrollment_state") != "deleted")
    return RosterDiff(lines, canvas_count=live, sis_count=len(records))
