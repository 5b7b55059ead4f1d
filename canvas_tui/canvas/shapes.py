"""What a success answer must look like before the engine believes it.

A proxy or a broken gateway can answer 200 with JSON of the wrong shape (`{}`, `[]`,
`{"id": null}`). Taken at its word, such an answer marks a record done that Canvas never saw,
so every answer the engine relies on is checked here: the enrollment's id, user, course or
section, type and state (lib/api/v1/enrollment.rb in canvas-lms always includes them). A wrong
shape is a BAD_ANSWER error, retried like a 5xx; the body is quoted in the message.

Each check is a few dict lookups: nothing here may cost measurable time per request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# problem(body) -> None when the body is usable, else what is wrong with it
Check = Callable[[Any], str | None]

ENROLLMENT_STATES = frozenset(
    {"active", "invited", "creation_pending", "inactive", "completed", "deleted", "rejected"}
)


def _is_id(value: object) -> bool:
    # Canvas ids are JSON integers (no `application/json+canvas-string-ids` Accept is sent)
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def object_problem(body: Any) -> str | None:
    """A Canvas object (user, course, section, role): a JSON object with an integer id."""
    if not isinstance(body, dict):
        return f"expected a JSON object, got {_kind(body)}"
    if not _is_id(body.get("id")):
        return f"the object has no valid id (id: {body.get('id')!r})"
    return None


def enrollment_problem(body: Any) -> str | None:
    """An Enrollment: id, user_id, course_id or course_section_id, type and enrollment_state."""
    problem = object_problem(body)
    if problem:
        return problem.replace("the object", "the enrollment")
    if not _is_id(body.get("user_id")):
        return f"the enrollment has no valid user_id ({body.get('user_id')!r})"
    if not (_is_id(body.get("course_id")) or _is_id(body.get("course_section_id"))):
        return "the enrollment names no course_id or course_section_id"
    kind = body.get("type")
    if not isinstance(kind, str) or not kind.endswith("Enrollment"):
        return f"the enrollment has no valid type ({kind!r})"
    if body.get("enrollment_state") not in ENROLLMENT_STATES:
        return f"the enrollment has no valid state ({body.get('enrollment_state')!r})"
    return None


def list_of(item: Check) -> Check:
    """A page of a list endpoint: a JSON array whose every item passes `item`."""

    def problem(body: Any) -> str | None:
        if not isinstance(body, list):
            return f"expected a JSON array, got {_kind(body)}"
        for index, entry in enumerate(body):
            found = item(entry)
            if found:
                return f"item {index}: {found}"
        return None

    return problem


def _kind(body: object) -> str:
    if body is None:
        return "null"
    if isinstance(body, dict):
        return "an empty object" if not body else "an object"
    if isinstance(body, list):
        return "an empty array" if not body else "an array"
    return type(body).__name__
