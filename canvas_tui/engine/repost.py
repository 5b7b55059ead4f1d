"""What a create (POST) re-applies to an enrollment that already exists, and what to send so that
a blank column changes nothing.

Canvas's create reuses the row with the same user, type, role, observed user and section, and
then writes `limit_privileges_to_course_section = opts[...] || false`, `start_at = start_at` and
`end_at = end_at` on it whatever they were (`Course#enroll_user`, app/models/course.rb;
../shared/CANVAS_API.md §2.4). A POST that leaves a field out therefore turns a section limit off
and clears dates. A record's UNCHANGED field is sent as the value Canvas holds now, which the
caller read first; a record with every such field explicit may be sent without reading.

`self_enrolled` (and the internal `sis_pseudonym_id`) are reset the same way and the API neither
shows nor takes them from canvas-tui: that is why an enrollment already in place is never
re-POSTed at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from canvas_tui.records import UNCHANGED, EnrollmentRecord, SisStatus

# record field -> the Enrollment JSON field it sets
RESET_FIELDS = {
    "limit_section_privileges": "limit_privileges_to_course_section",
    "start_at": "start_at",
    "end_at": "end_at",
}


@dataclass(frozen=True, slots=True)
class PostFields:
    """The concrete values a POST carries for the fields Canvas re-applies."""

    limit_section_privileges: bool = False
    start_at: str | None = None
    end_at: str | None = None


def post_fields(record: EnrollmentRecord, current: Mapping[str, Any] | None) -> PostFields:
    """The record's values, with each UNCHANGED one taken from the enrollment the POST will
    reuse (`current`); with none to reuse, Canvas's own default for a new row."""
    limit = record.limit_section_privileges
    start, end = record.start_at, record.end_at
    now = current or {}
    return PostFields(
        bool(now.get("limit_privileges_to_course_section")) if limit is UNCHANGED else limit,
        (now.get("start_at") or None) if start is UNCHANGED else start,
        (now.get("end_at") or None) if end is UNCHANGED else end,
    )


def blind_post_is_safe(record: EnrollmentRecord) -> bool:
    """Whether the record may be POSTed without reading the enrollment first: it states every
    field a re-POST resets. Only `active` rows are sent by a blind POST at all."""
    return record.status is SisStatus.ACTIVE and not record.leaves_unchanged


def differs(record: EnrollmentRecord, enrollment: Mapping[str, Any]) -> str | None:
    """The first field the record gives a value for that the enrollment does not hold."""
    limit = record.limit_section_privileges
    if limit is not UNCHANGED and bool(enrollment.get("limit_privileges_to_course_section")) != (
        limit
    ):
        return "limit_section_privileges"
    for name, value in (("start_at", record.start_at), ("end_at", record.end_at)):
        if value is not UNCHANGED and not same_time(value, enrollment.get(name)):
            return name
    return None


def _instant(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# Canvas reads a date, or a time without an offset, in a zone the API does not tell us (the
# account's or the token user's) and returns the instant in UTC: "2026-09-01" comes back as
# "2026-09-01T04:00:00Z" from New York. Such a value matches when Canvas's instant is that wall
# time in some zone between UTC-12 and UTC+14; otherwise every plan would re-send it.
_WALL_TIME_SPREAD = (timedelta(hours=-14), timedelta(hours=12))


def same_time(sis: Any, canvas: Any) -> bool:
    if not sis or not canvas:
        return bool(sis) == bool(canvas)
    stored = _instant(canvas)
    try:
        wanted = datetime.fromisoformat(str(sis))
    except ValueError:
        return stored is None  # neither side is a time we can compare: as before
    if stored is None:
        return False
    if wanted.tzinfo is not None:
        return wanted == stored
    wall = wanted.replace(tzinfo=UTC)
    earliest, latest = _WALL_TIME_SPREAD
    return wall + earliest <= stored <= wall + latest


__all__ = [
    "RESET_FIELDS",
    "PostFields",
    "blind_post_is_safe",
    "differs",
    "post_fields",
    "same_time",
]
