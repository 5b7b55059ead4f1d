"""The error taxonomy: one category per thing an operator can act on.

The same categories drive retry decisions, the failure stepper, "retry all failed in a category"
and the report, so they live here, below both the engine and the UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    THROTTLED = "throttled"
    AUTH = "auth"  # invalid, expired or revoked token: stops the whole run
    PERMISSION = "permission"
    USER_NOT_FOUND = "user_not_found"
    COURSE_NOT_FOUND = "course_not_found"
    SECTION_NOT_FOUND = "section_not_found"
    NOT_FOUND = "not_found"  # 404 we cannot pin on one object
    INVALID_ROLE = "invalid_role"  # bad role or enrollment type
    CONCLUDED = "concluded_course"
    BAD_REQUEST = "bad_request"  # any other 400
    SERVER = "server_error"  # 5xx
    NETWORK = "network"  # timeouts, resets, DNS
    UNSAFE = "unsafe"  # refused by us: foreign Link host, plain http to a remote host
    INVALID_INPUT = "invalid_input"  # the source row itself is wrong; never reached Canvas


RETRYABLE = frozenset({Category.THROTTLED, Category.SERVER, Category.NETWORK})
FATAL = frozenset({Category.AUTH, Category.UNSAFE})  # end the run instead of failing every record

TITLES: dict[Category, str] = {
    Category.THROTTLED: "Throttled by Canvas",
    Category.AUTH: "Token rejected",
    Category.PERMISSION: "Not permitted",
    Category.USER_NOT_FOUND: "User not found",
    Category.COURSE_NOT_FOUND: "Course not found",
    Category.SECTION_NOT_FOUND: "Section not found",
    Category.NOT_FOUND: "Not found",
    Category.INVALID_ROLE: "Invalid role or type",
    Category.CONCLUDED: "Course concluded",
    Category.BAD_REQUEST: "Rejected by Canvas",
    Category.SERVER: "Canvas server error",
    Category.NETWORK: "Network error",
    Category.UNSAFE: "Refused for safety",
    Category.INVALID_INPUT: "Invalid source row",
}

# Plain-language next steps. `{user}`, `{course}`, `{section}`, `{role}` are filled from the record
# (bare SIS values) by `hint_for`; a hint without a record keeps the generic wording.
HINTS: dict[Category, str] = {
    Category.THROTTLED: (
        "Canvas's rate limiter refused the request; it is retried automatically. If this persists, "
        "lower the concurrency cap or check for other jobs sharing this token."
    ),
    Category.AUTH: (
        "The API token is invalid, expired or revoked. Generate a new token and update "
        "CANVAS_API_TOKEN or the config's token_file / token_command."
    ),
    Category.PERMISSION: (
        "The token's user lacks permission for this action in this course (e.g. 'Add students'). "
        "Use an account-admin token or grant the role the permission."
    ),
    Category.USER_NOT_FOUND: (
        "No user with SIS id {user} in this account: create the user (users.csv), or fix the SIS id."
    ),
    Category.COURSE_NOT_FOUND: (
        "No course with SIS id {course}: create the course, or fix the course id in the source."
    ),
    Category.SECTION_NOT_FOUND: (
        "No active section with SIS id {section} in this course: create it, or fix the section id."
    ),
    Category.NOT_FOUND: "Canvas could not find the user, course or section this row names.",
    Category.INVALID_ROLE: (
        "Canvas does not know the role {role!r}. Use student, teacher, ta, observer, designer or a "
        "custom role that exists in the account (names are case-sensitive)."
    ),
    Category.CONCLUDED: (
        "Course {course} is concluded; Canvas refuses new enrollments. Re-open the course or drop "
        "the row."
    ),
    Category.BAD_REQUEST: "Canvas rejected the request as invalid; see the message for the field.",
    Category.SERVER: (
        "Canvas failed internally; retried automatically. Quote the error report id to Instructure "
        "support if it persists."
    ),
    Category.NETWORK: "The connection failed or timed out; retried automatically.",
    Category.UNSAFE: (
        "canvas-tui refused to send the token there. Check base_url (https, or http only to "
        "loopback) and any proxy rewriting Link headers."
    ),
    Category.INVALID_INPUT: "Fix the row in the source (see the message), then re-run or edit+retry.",
}


def hint_for(
    category: Category,
    *,
    user: str = "",
    course: str = "",
    section: str = "",
    role: str = "",
) -> str:
    """The hint for a category, filled with the record's identifiers where the text names them."""
    return HINTS[category].format(
        user=user or "?", course=course or "?", section=section or "?", role=role or "?"
    )


@dataclass(eq=False)
class CanvasError(Exception):
    """A failed Canvas call, classified. Never carries the token (URLs are stored without it)."""

    category: Category
    message: str  # Canvas's own text, or ours for transport failures
    status: int | None = None  # None for transport errors
    error_report_id: int | None = None
    method: str = ""
    url: str = ""

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def retryable(self) -> bool:
        return self.category in RETRYABLE

    @property
    def fatal(self) -> bool:
        return self.category in FATAL

    @property
    def title(self) -> str:
        return TITLES[self.category]

    def __str__(self) -> str:
        status = f"{self.status} " if self.status is not None else ""
        report = f" (error report {self.error_report_id})" if self.error_report_id else ""
        return f"{status}{self.title}: {self.message}{report}"
