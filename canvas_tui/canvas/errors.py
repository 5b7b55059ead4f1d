"""The error taxonomy: one category per thing an operator can act on.

The same categories drive retry decisions, the failure stepper, "retry all failed in a category"
and the report, so they live here, below both the engine and the UI.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # httpx (with its CLI's click and pygments) costs the console ~0.1 s at start, and only
    # the engine handles responses: the functions that need it at run time import it there
    import httpx


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
    BAD_ANSWER = "bad_answer"  # a success answer of the wrong shape (a proxy's `{}`, `[]`)
    UNSAFE = "unsafe"  # refused by us: foreign Link host, plain http to a remote host
    INVALID_INPUT = "invalid_input"  # the source row itself is wrong; never reached Canvas
    SIS_IMPORT = "sis_import"  # the SIS import carrying the row failed or was aborted as a whole
    CHANGE_THRESHOLD = "change_threshold"  # Canvas refused the import: too many changes


RETRYABLE = frozenset({Category.THROTTLED, Category.SERVER, Category.NETWORK, Category.BAD_ANSWER})
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
    Category.BAD_ANSWER: "Unexpected answer",
    Category.UNSAFE: "Refused for safety",
    Category.INVALID_INPUT: "Invalid source row",
    Category.SIS_IMPORT: "SIS import did not finish",
    Category.CHANGE_THRESHOLD: "Over change_threshold",
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
    Category.NETWORK: (
        "The connection failed or timed out (retried automatically): check base_url and that "
        "Canvas is reachable from this machine (proxy, firewall, VPN)."
    ),
    Category.BAD_ANSWER: (
        "Canvas, or a proxy or gateway in front of it, answered success with a body that is not "
        "what Canvas sends (quoted in the message); it was retried. Check any proxy between here "
        "and Canvas; the roster inspector or `plan` shows whether the change was made."
    ),
    Category.UNSAFE: (
        "canvas-tui refused to send the token there. Check base_url (https, or http only to "
        "loopback) and any proxy rewriting Link headers."
    ),
    Category.INVALID_INPUT: "Fix the row in the source (see the message), then re-run or edit+retry.",
    Category.SIS_IMPORT: (
        "The SIS import that carried this row failed or was aborted, so the row may be applied "
        "or not. Retry it: a retry goes by REST, which reads the enrollment first. Canvas's "
        "Admin > SIS Import page shows the import's own errors."
    ),
    Category.CHANGE_THRESHOLD: (
        "Canvas refused the whole import: it would change more than change_threshold percent "
        "(from [plan] brake_max_share). Review the changes with `canvas-tui plan --out PREFIX`; "
        "if they are meant, raise brake_max_share (or re-run with --via rest), then retry."
    ),
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
    # For NETWORK errors: False when the request never left us (connect failure), so a write can't
    # have happened; see `may_have_been_applied`.
    request_sent: bool = True

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        # the engine process sends errors to the console pickled; Exception's default would
        # call CanvasError(message)
        fields = (self.category, self.message, self.status, self.error_report_id)
        return CanvasError, (*fields, self.method, self.url, self.request_sent)

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


# ---- classification -----------------------------------------------------------------------------
# Every error shape in CANVAS_API.md §5.1 is accepted; HTML and plain-text bodies too (load balancers
# answer 502/503 with HTML, the open-source throttle answers 403 with text).

_ROLE_MESSAGES = (
    "invalid type",
    "invalid role",
    "base type for the role",
    "role because it is inactive",
    "role not found",
    "not valid for the enrollment type",
    "not an available role",
)
_AUTH_MESSAGES = (
    "invalid access token",
    "expired access token",
    "revoked access token",
    "insufficient scopes",  # the token itself must be replaced, so it stops the run like AUTH
    "user authorization required",
)
_TAG = re.compile(r"<[^>]+>")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _texts(value: object) -> list[str]:
    """Collect messages from `message`, `error`, `errors[*].message`, `errors.<f>[*].message`, ..."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    if isinstance(value, dict):
        if "message" in value and isinstance(value["message"], str):
            return [value["message"]]
        found: list[str] = []
        for key in ("errors", "error", "error_message"):
            if key in value and not isinstance(value[key], bool):
                found += _texts(value[key])
        if not found:  # a validation hash: {"errors": {"field": [...]}} reaches here per field
            for item in value.values():
                if isinstance(item, list | dict):
                    found += _texts(item)
        return found
    return []


def _plain(text: str, limit: int = 300) -> str:
    title = _TITLE.search(text)
    if title:
        text = title.group(1)
    text = " ".join(_TAG.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def response_message(response: httpx.Response) -> tuple[str, int | None]:
    """(Canvas's message text, error_report_id) from any body shape."""
    body = response.content
    if not body:
        return f"HTTP {response.status_code} {response.reason_phrase}".strip(), None
    try:
        data = json.loads(body)
    except ValueError:
        return _plain(body.decode("utf-8", "replace")) or f"HTTP {response.status_code}", None
    report = data.get("error_report_id") if isinstance(data, dict) else None
    texts = _texts(data)
    message = "; ".join(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if not message:
        message = _plain(body.decode("utf-8", "replace"))
    return message, report if isinstance(report, int) and not isinstance(report, bool) else None


def is_throttle(response: httpx.Response) -> bool:
    """429 (hosted Canvas since 2025) or 403 whose body says Rate Limit Exceeded (open source)."""
    if response.status_code == 429:
        return True
    return response.status_code == 403 and b"rate limit exceeded" in response.content.lower()


def classify(response: httpx.Response, *, not_found: Category = Category.NOT_FOUND) -> CanvasError:
    """The CanvasError for a non-2xx response.

    `not_found` is what a 404 means for this request: Canvas's 404 body never says which id was
    missing, so the caller, who knows what it asked for, decides (see CanvasClient).
    The URL stored is the request URL, which never carries the token (it travels in a header).
    """
    status = response.status_code
    message, report = response_message(response)
    lowered = message.lower()
    if is_throttle(response):
        category = Category.THROTTLED
    elif status == 401:
        if any(m in lowered for m in _AUTH_MESSAGES):
            category = Category.AUTH
        elif "not authorized" in lowered or b'"unauthorized"' in response.content:
            category = Category.PERMISSION
        else:
            # canvasapi's rule: WWW-Authenticate is only sent when there is no valid user.
            has_challenge = "www-authenticate" in response.headers
            category = Category.AUTH if has_challenge else Category.PERMISSION
    elif status == 403:
        category = Category.PERMISSION
    elif status == 404:
        category = not_found
    elif status >= 500:
        category = Category.SERVER
    elif 300 <= status < 400:
        # Never followed: a redirect could take the token elsewhere (a login page, another host).
        category = Category.BAD_REQUEST
        message = f"unexpected redirect ({status}) to {_redirect_origin(response)}"
    elif any(m in lowered for m in _ROLE_MESSAGES):
        category = Category.INVALID_ROLE
    elif "concluded" in lowered:
        category = Category.CONCLUDED
    else:
        category = Category.BAD_REQUEST
    request = response.request if _has_request(response) else None
    return CanvasError(
        category,
        message,
        status=status,
        error_report_id=report,
        method=request.method if request else "",
        url=str(request.url) if request else "",
    )


def _has_request(response: httpx.Response) -> bool:
    try:
        response.request  # noqa: B018 - raises RuntimeError when the response was built by hand
    except RuntimeError:
        return False
    return True


def _redirect_origin(response: httpx.Response) -> str:
    import httpx

    location = response.headers.get("location", "")
    try:
        url = httpx.URL(location)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "an invalid location"
    return f"{url.scheme}://{url.host}" if url.host else "a relative location"


def classify_transport(
    exc: httpx.TransportError, *, method: str = "", url: str = ""
) -> CanvasError:
    """NETWORK for timeouts, resets, refused connections and protocol breaks."""
    import httpx

    kind = {
        httpx.ConnectTimeout: "connect timed out",
        httpx.ReadTimeout: "timed out waiting for Canvas's answer",
        httpx.WriteTimeout: "timed out sending the request",
        httpx.PoolTimeout: "timed out waiting for a free connection",
        httpx.ConnectError: "could not connect",
        httpx.RemoteProtocolError: "connection closed or reset mid-answer",
        httpx.ReadError: "connection reset while reading the answer",
        httpx.WriteError: "connection reset while sending",
    }
    text = next((v for k, v in kind.items() if isinstance(exc, k)), "network failure")
    detail = str(exc)
    if detail:
        text = f"{text} ({_plain(detail, 160)})"
    unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return CanvasError(Category.NETWORK, text, method=method, url=url, request_sent=not unsent)


def may_have_been_applied(exc: BaseException) -> bool:
    """Could Canvas have executed the request although we got no answer?

    Only failures before the request left us are known not to have run: connect errors and pool
    timeouts. A reset or timeout after sending, or a 502/503/504 from a load balancer, may hide a
    completed write.
    """
    if isinstance(exc, CanvasError):
        if exc.category is Category.NETWORK:
            return exc.request_sent
        if exc.category is Category.BAD_ANSWER:
            return True  # something answered "success": Canvas may have done it
        # A throttle is refused before the app runs; Canvas's own 500 rolls its transaction back.
        return exc.category is Category.SERVER and exc.status != 500
    import httpx

    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return False
    return isinstance(exc, httpx.TransportError)
