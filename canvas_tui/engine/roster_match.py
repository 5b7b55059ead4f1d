"""Does an SIS record name this Canvas enrollment? The one answer the plan, the SIS actions and the
roster inspector share.

An enrollment is the record's when its user, role and section all agree (the identity Canvas
reuses on a re-POST, ../shared/CANVAS_API.md §2.4); a record without a section names the
enrollment in the course's default section, where Canvas puts it (`DefaultSection`). Each may be given in any API id form: the
user as a Canvas id, `sis_user_id`, `sis_login_id` (case-insensitive) or `sis_integration_id`;
the section as a Canvas id or `sis_section_id`. What a row then asks of the enrollments it
names is the rule in engine/plan/diff.py, which the same three share.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from canvas_tui.records import split_api_id
from canvas_tui.sources.normalize import resolve_role

UserKey = tuple[str | None, str]

# Every workflow state, so a lookup also sees concluded, inactive and deleted rows (§2.6).
ALL_STATES = (
    "active",
    "invited",
    "creation_pending",
    "inactive",
    "completed",
    "deleted",
    "rejected",
)


def user_keys(enrollment: Mapping[str, Any]) -> Iterator[UserKey]:
    """Every API id that names the enrollment's user, as (kind, value) pairs."""
    user = enrollment.get("user") or {}
    yield None, str(enrollment.get("user_id"))
    sis = enrollment.get("sis_user_id") or user.get("sis_user_id")
    if sis:
        yield "sis_user_id", str(sis)
    if user.get("integration_id"):
        yield "sis_integration_id", str(user["integration_id"])
    if user.get("login_id"):
        yield "sis_login_id", str(user["login_id"]).lower()


def user_key(ref: str) -> UserKey:
    """A record's user (API id form) as the key `user_keys` would yield for that user."""
    kind, value = split_api_id(ref)
    return kind, value.lower() if kind == "sis_login_id" else value


def same_user(enrollment: Mapping[str, Any], user: str) -> bool:
    return user_key(user) in set(user_keys(enrollment))


def same_section(enrollment: Mapping[str, Any], section: str | None) -> bool:
    """Whether an enrollment is in the record's section; any section matches a record that names
    none. A section id kind the JSON does not carry never matches."""
    if section is None:
        return True
    kind, value = split_api_id(section)
    if kind == "sis_section_id":
        return str(enrollment.get("sis_section_id") or "") == value
    if kind is None:
        return str(enrollment.get("course_section_id")) == value
    return False  # an id kind the enrollment JSON does not carry; never act on a guess


@dataclass(frozen=True, slots=True)
class DefaultSection:
    """The section a course-only row acts on: Canvas's `course.default_section`.

    Canvas enrolls a row without a section into the course's default section
    (`Course#enroll_user`: `section ||= self.default_section`, app/models/course.rb; the SIS
    importer does the same), which is the active section flagged `default_section`, created on
    demand. No API answer carries that flag, so it is inferred from the course's sections: SIS
    imports never make the default section, so it is the one section without a
    `sis_section_id`; with none, Canvas has no default section yet and will make one. With two
    or more, which one is the default cannot be told: `candidates` lists them, and a caller
    refuses to guess when the user has an enrollment in any of them.
    """

    section_id: int | None  # None: the course has no default section yet
    candidates: tuple[int, ...] = ()

    @property
    def known(self) -> bool:
        return not self.candidates

    def holds(self, enrollment: Mapping[str, Any]) -> bool:
        """Whether the enrollment is in the default section (or, unknown, might be)."""
        section = enrollment.get("course_section_id")
        if section is None:
            return False
        if self.candidates:
            return int(section) in self.candidates
        return self.section_id is not None and int(section) == self.section_id

    def describe(self, course: str) -> str:
        return (
            f"{course} has {len(self.candidates)} sections without an SIS id and Canvas does not "
            "say which is its default section"
        )


def default_section_from(sections: Iterable[Mapping[str, Any]]) -> DefaultSection:
    """The default section, inferred from a course's active sections (see DefaultSection)."""
    plain = tuple(
        int(s["id"]) for s in sections if s.get("id") is not None and not s.get("sis_section_id")
    )
    if len(plain) == 1:
        return DefaultSection(plain[0])
    return DefaultSection(None, plain if len(plain) > 1 else ())


def in_section(
    enrollment: Mapping[str, Any], section: str | None, default: DefaultSection | None
) -> bool:
    """`same_section` for a row that names its section; the default section for one that does
    not (any section when the default is not given: callers that only list, never act)."""
    if section is None and default is not None:
        return default.holds(enrollment)
    return same_section(enrollment, section)


def base_type(role: str) -> str | None:
    """The built-in enrollment type a role word stands for; None for a custom role name."""
    return resolve_role(role).enrollment_type


def same_role(
    enrollment: Mapping[str, Any], role: str, enrollment_type: str | None, role_id: str | None
) -> bool:
    """By `role_id` when known (the record's, or its custom role's looked-up id), else the
    built-in type, else the role name."""
    if role_id is not None:
        return str(enrollment.get("role_id")) == str(role_id)
    if enrollment_type is not None:
        # A role word names the built-in role, whose name equals its type (§2.8).
        return bool(
            enrollment.get("type") == enrollment_type
            and enrollment.get("role", enrollment_type) == enrollment_type
        )
    return enrollment.get("role") == role


def names_enrollment(
    enrollment: Mapping[str, Any],
    *,
    user: str,
    role: str,
    section: str | None,
    enrollment_type: str | None,
    role_id: str | None = None,
    default: DefaultSection | None = None,
) -> bool:
    """Whether a record with this user, role and section (API id forms) names the enrollment;
    a record without a section names the one in the course's `default` section."""
    return (
        same_user(enrollment, user)
        and same_role(enrollment, role, enrollment_type, role_id)
        and in_section(enrollment, section, default)
    )


__all__ = [
    "DefaultSection",
    "UserKey",
    "base_type",
    "default_section_from",
    "in_section",
    "names_enrollment",
    "same_role",
    "same_section",
    "same_user",
    "user_key",
    "user_keys",
]
