"""JSON shapes and error bodies exactly as Canvas sends them (../shared/CANVAS_API.md §0, §2.8, §5)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from canvas_tui.simulator.world import (
    ROOT_ACCOUNT_ID,
    TIME_ZONE,
    Account,
    Course,
    Enrollment,
    Role,
    Section,
    User,
    World,
)

JSON_TYPE = b"application/json; charset=utf-8"
NOT_FOUND_MESSAGE = "The specified resource does not exist."
USER_AGENT_MESSAGE = (
    "You are not authorized to access this site because you have not provided a valid user agent."
)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: bytes = JSON_TYPE
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class HttpError(Exception):
    """A handler's early answer: raised, caught by the pipeline, sent as is."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, dumps(value))


WWW_AUTHENTICATE = (b"www-authenticate", b'Bearer realm="canvas-lms"')


def not_found() -> HttpError:
    return HttpError(json_response({"errors": [{"message": NOT_FOUND_MESSAGE}]}, 404))


def unauthorized() -> HttpError:
    body = {
        "status": "unauthorized",
        "errors": [{"message": "user not authorized to perform that action"}],
    }
    return HttpError(json_response(body, 401))


def invalid_token() -> Response:
    response = json_response({"errors": [{"message": "Invalid access token."}]}, 401)
    response.headers.append(WWW_AUTHENTICATE)
    return response


def unauthenticated() -> Response:
    body = {"status": "unauthenticated", "errors": [{"message": "user authorization required"}]}
    response = json_response(body, 401)
    response.headers.append(WWW_AUTHENTICATE)
    return response


def bad_request(message: str) -> HttpError:
    """Hand-written controller errors (enrollment create): `{"message": ...}`."""
    return HttpError(json_response({"message": message}, 400))


def error_400(message: str) -> HttpError:
    """Other hand-written errors: `{"error": ...}`."""
    return HttpError(json_response({"error": message}, 400))


def generic_bad_request() -> HttpError:
    body = {"errors": [{"message": "An error occurred.", "error_code": "bad_request"}]}
    return HttpError(json_response(body, 400))


def validation_error(attribute: str, message: str, *, kind: str | None = None) -> HttpError:
    """A model validation failure; `kind` is the validator's type when it is not the message
    (a built-in validator such as `inclusion` given a custom message)."""
    entry = {"attribute": attribute, "type": kind or message, "message": message}
    return HttpError(json_response({"errors": {attribute: [entry]}}, 400))


def internal_error(report_id: int) -> Response:
    body = {
        "errors": [{"message": "An error occurred.", "error_code": "internal_server_error"}],
        "error_report_id": report_id,
    }
    return json_response(body, 500)


def user_agent_required() -> Response:
    # Instructure's announced answer to a request without User-Agent (2025-26): 403 with this JSON.
    return json_response({"error": "Forbidden", "message": USER_AGENT_MESSAGE}, 403)


# ---- objects -------------------------------------------------------------------------------

# Fields a caller sees only with read_sis (or manage_sis), and only with manage_sis:
# instructure/canvas-lms lib/api/v1/enrollment.rb (`user_can_read_sis_data?`: sis_account_id,
# sis_course_id, *_integration_id, sis_section_id, sis_user_id; `manage_sis`: sis_import_id),
# lib/api/v1/user.rb (sis_user_id, integration_id; sis_import_id), and the Course and Section
# objects' documentation ("only included if the user has permission to view SIS information").
READ_SIS_FIELDS = frozenset(
    {
        "sis_user_id",
        "sis_course_id",
        "sis_section_id",
        "sis_account_id",
        "integration_id",
        "course_integration_id",
        "section_integration_id",
    }
)
MANAGE_SIS_FIELDS = frozenset({"sis_import_id"})


def for_rights(data: Any, *, read_sis: bool, manage_sis: bool) -> Any:
    """An answer as a caller with these rights sees it: the keys it may not read are absent
    (Canvas omits them, it does not send null). Objects, lists of them, and a nested `user`."""
    if read_sis and manage_sis:
        return data
    hidden = (set() if read_sis else READ_SIS_FIELDS) | (set() if manage_sis else MANAGE_SIS_FIELDS)

    def strip(item: Any) -> Any:
        if isinstance(item, list):
            return [strip(i) for i in item]
        if not isinstance(item, dict):
            return item
        out = {k: v for k, v in item.items() if k not in hidden}
        if isinstance(out.get("user"), dict):
            out["user"] = strip(out["user"])
        return out

    return strip(data)


def user_json(user: User, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": user.id,
        "name": user.name,
        "created_at": user.created_at,
        "sortable_name": user.sortable_name,
        "short_name": user.short_name,
        "sis_user_id": user.sis_user_id,
        "integration_id": user.integration_id,
        "sis_import_id": None,
        "login_id": user.login_id,
    }
    if full:
        first, _, last = user.name.rpartition(" ")
        data.update(
            first_name=first or user.name,
            last_name=last,
            avatar_url="https://canvas.example.edu/images/messages/avatar-50.png",
            email=user.login_id,
            locale=None,
            effective_locale="en",
            permissions={"can_update_name": True, "can_update_avatar": False},
        )
    return data


def enrollment_json(
    world: World, enrollment: Enrollment, base_url: str, *, with_user: bool = False
) -> dict[str, Any]:
    course = world.courses[enrollment.course_id]
    section = world.sections[enrollment.course_section_id]
    user = world.users[enrollment.user_id]
    role = world.roles[enrollment.role_id]
    account = world.accounts.get(course.account_id)
    data: dict[str, Any] = {
        "id": enrollment.id,
        "user_id": user.id,
        "course_id": course.id,
        "course_section_id": section.id,
        "root_account_id": ROOT_ACCOUNT_ID,
        "type": enrollment.type,
        "role": role.label,
        "role_id": role.id,
        "enrollment_state": enrollment.workflow_state,
        "limit_privileges_to_course_section": enrollment.limit_privileges_to_course_section,
        "associated_user_id": enrollment.associated_user_id,
        "sis_import_id": enrollment.sis_import_id,
        "sis_account_id": account.sis_account_id if account else None,
        "sis_course_id": course.sis_course_id,
        "course_integration_id": course.integration_id,
        "sis_section_id": section.sis_section_id,
        "section_integration_id": section.integration_id,
        "sis_user_id": user.sis_user_id,
        "start_at": enrollment.start_at,
        "end_at": enrollment.end_at,
        "created_at": enrollment.created_at,
        "updated_at": enrollment.updated_at,
        "last_activity_at": None,
        "last_attended_at": None,
        "total_activity_time": 0,
        "html_url": f"{base_url}/courses/{course.id}/users/{user.id}",
    }
    if enrollment.type == "StudentEnrollment":
        data["grades"] = {
            "html_url": f"{base_url}/courses/{course.id}/grades/{user.id}",
            "current_score": None,
            "final_score": None,
            "current_grade": None,
            "final_grade": None,
            "unposted_current_score": None,
            "unposted_final_score": None,
            "unposted_current_grade": None,
            "unposted_final_grade": None,
        }
    if with_user:
        data["user"] = user_json(user)
    return data


def course_json(course: Course) -> dict[str, Any]:
    return {
        "id": course.id,
        "name": course.name,
        "course_code": course.course_code,
        "sis_course_id": course.sis_course_id,
        "integration_id": course.integration_id,
        "sis_import_id": None,
        "account_id": course.account_id,
        "root_account_id": ROOT_ACCOUNT_ID,
        "enrollment_term_id": course.enrollment_term_id,
        "workflow_state": course.workflow_state,
        "start_at": course.start_at,
        "end_at": course.end_at,
        "restrict_enrollments_to_course_dates": course.restrict_enrollments_to_course_dates,
        "default_view": "modules",
        "is_public": False,
        "time_zone": TIME_ZONE,
        "uuid": f"sim{course.id:037d}",
    }


def section_json(world: World, section: Section) -> dict[str, Any]:
    course = world.courses[section.course_id]
    return {
        "id": section.id,
        "name": section.name,
        "sis_section_id": section.sis_section_id,
        "integration_id": section.integration_id,
        "sis_import_id": None,
        "course_id": course.id,
        "sis_course_id": course.sis_course_id,
        "start_at": None,
        "end_at": None,
        "restrict_enrollments_to_section_dates": False,
        "nonxlist_course_id": None,
        "created_at": course.start_at,
    }


def role_json(role: Role, account: Account) -> dict[str, Any]:
    return {
        "id": role.id,
        "role": role.label,
        "label": role.label,
        "base_role_type": role.base_role_type,
        "is_account_role": False,
        "workflow_state": role.workflow_state,
        "created_at": "2026-01-05T09:00:00Z",
        "last_updated_at": "2026-01-05T09:00:00Z",
        "account": {
            "id": account.id,
            "name": account.name,
            "parent_account_id": account.parent_account_id,
            "root_account_id": ROOT_ACCOUNT_ID,
            "sis_account_id": account.sis_account_id,
        },
    }


def account_json(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "parent_account_id": account.parent_account_id,
        "root_account_id": None if account.id == ROOT_ACCOUNT_ID else ROOT_ACCOUNT_ID,
        "sis_account_id": account.sis_account_id,
        "workflow_state": "active",
        "uuid": f"simaccount{account.id:030d}",
    }


# ---- pagination (§4) -----------------------------------------------------------------------

EXCLUDED_FROM_LINKS = frozenset({"page", "per_page", "access_token", "api_key"})


def ruby_to_i(text: str) -> int:
    """Ruby's String#to_i: leading digits (after optional sign), 0 when there are none."""
    text = text.lstrip()
    sign = -1 if text.startswith("-") else 1
    if text[:1] in "+-" and text:
        text = text[1:]
    digits = ""
    for char in text:
        if not (char.isascii() and char.isdigit()):
            break
        digits += char
    return sign * int(digits) if digits else 0


def per_page_of(params: dict[str, Any]) -> int:
    raw = params.get("per_page")
    if raw is None or isinstance(raw, (list, dict)):
        return 10
    return max(1, min(100, ruby_to_i(str(raw))))


@dataclass
class PageRequest:
    """What a list endpoint needs to build Canvas's Link header."""

    base_url: str  # scheme://host
    raw_path: str  # the path as the client sent it, percent-encoding kept
    raw_query: str

    def link(self, page: str, per_page: int) -> str:
        kept = [
            part
            for part in self.raw_query.split("&")
            if part and unquote_plus(part.partition("=")[0]) not in EXCLUDED_FROM_LINKS
        ]
        query = "&".join([*kept, f"page={page}", f"per_page={per_page}"])
        return f"{self.base_url}{self.raw_path}?{query}"


def link_header(links: Sequence[tuple[str, str]]) -> tuple[bytes, bytes]:
    """`<url>; rel="current",<url>; rel="next",...`: bare commas, order as given."""
    value = ",".join(f'<{url}>; rel="{rel}"' for rel, url in links)
    return (b"link", value.encode("utf-8"))


def encode_bookmark(key: Sequence[Any]) -> str:
    raw = json.dumps(list(key), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return "bookmark:" + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_bookmark(page: str | None) -> list[Any] | None:
    """The key after which the page starts; None (= first page) for anything not a valid bookmark."""
    if not page or not page.startswith("bookmark:"):
        return None
    token = page[len("bookmark:") :]
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    if not (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and isinstance(value[1], str)
        and isinstance(value[2], int)
    ):
        return None
    return value


def bookmark_page(
    items: list[Any],
    key: Callable[[Any], tuple[Any, ...]],
    params: dict[str, Any],
    page_request: PageRequest,
) -> tuple[list[Any], tuple[bytes, bytes]]:
    """One page of a bookmarked collection (the enrollments index) and its Link header.

    `items` must already be sorted by `key`. Page 1 carries current, next and first while more
    remain; the final page carries current, first and last; there is never a prev.
    """
    per_page = per_page_of(params)
    page_param = params.get("page")
    after = decode_bookmark(page_param if isinstance(page_param, str) else None)
    start = 0
    if after is not None:
        after_key = tuple(after)
        lo, hi = 0, len(items)
        while lo < hi:  # first item whose key is greater than the bookmark
            mid = (lo + hi) // 2
            if key(items[mid]) <= after_key:
                lo = mid + 1
            else:
                hi = mid
        start = lo
    page_items = items[start : start + per_page]
    current = encode_bookmark(after) if after is not None else "first"
    links = [("current", page_request.link(current, per_page))]
    more = start + per_page < len(items)
    if more:
        links.append(("next", page_request.link(encode_bookmark(key(page_items[-1])), per_page)))
    links.append(("first", page_request.link("first", per_page)))
    if not more:
        links.append(("last", page_request.link(current, per_page)))
    return page_items, link_header(links)


def numbered_page(
    items: list[Any], params: dict[str, Any], page_request: PageRequest
) -> tuple[list[Any], tuple[bytes, bytes]]:
    """Ordinary numeric pagination (sections, roles): past the end is `[]`, not 404."""
    per_page = per_page_of(params)
    raw_page = params.get("page")
    page = max(1, ruby_to_i(raw_page)) if isinstance(raw_page, str) else 1
    last = max(1, math.ceil(len(items) / per_page))
    page_items = items[(page - 1) * per_page : page * per_page]
    links = [("current", page_request.link(str(page), per_page))]
    if page < last:
        links.append(("next", page_request.link(str(page + 1), per_page)))
    if page > 1:
        links.append(("prev", page_request.link(str(page - 1), per_page)))
    links.append(("first", page_request.link("1", per_page)))
    links.append(("last", page_request.link(str(last), per_page)))
    return page_items, link_header(links)
