"""Classification of every Canvas error shape (CANVAS_API.md §0, §5) into operator categories.

Hand-built responses pin the rules without HTTP; the simulator tests below check the same rules on
the responses the simulator really sends.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from canvas_tui.canvas.errors import (
    Category,
    classify,
    classify_transport,
    is_throttle,
    may_have_been_applied,
    response_message,
)

REQUEST = httpx.Request("POST", "https://canvas.test/api/v1/courses/1/enrollments")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="canvas-lms"'}


def response(
    status: int, body: Any = None, *, text: str | None = None, **headers: str
) -> httpx.Response:
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=REQUEST)
    return httpx.Response(status, json=body, headers=headers, request=REQUEST)


@pytest.mark.parametrize(
    ("resp", "category", "message"),
    [
        (
            response(429, text="429 Too Many Requests (Rate Limit Exceeded)\n"),
            Category.THROTTLED,
            "Rate Limit",
        ),
        (response(429, {"errors": [{"message": "throttled"}]}), Category.THROTTLED, "throttled"),
        (
            response(403, text="403 Forbidden (Rate Limit Exceeded)\n"),
            Category.THROTTLED,
            "Rate Limit Exceeded",
        ),
        (
            response(403, {"errors": ["SIS imports are not enabled for this account"]}),
            Category.PERMISSION,
            "not enabled",
        ),
        (
            response(401, {"errors": [{"message": "Invalid access token."}]}, **CHALLENGE),
            Category.AUTH,
            "Invalid access token.",
        ),
        (
            response(401, {"errors": [{"message": "Expired access token.", "expired_at": "x"}]}),
            Category.AUTH,
            "Expired",
        ),
        (
            response(401, {"errors": [{"message": "Revoked access token."}]}, **CHALLENGE),
            Category.AUTH,
            "Revoked",
        ),
        (
            response(
                401,
                {
                    "status": "unauthenticated",
                    "errors": [{"message": "user authorization required"}],
                },
                **CHALLENGE,
            ),
            Category.AUTH,
            "authorization required",
        ),
        (
            response(
                401,
                {
                    "status": "unauthorized",
                    "errors": [{"message": "user not authorized to perform that action"}],
                },
            ),
            Category.PERMISSION,
            "not authorized",
        ),
        (response(401, {"errors": "Invalid as_user_id"}), Category.PERMISSION, "as_user_id"),
        (response(401, text="", **CHALLENGE), Category.AUTH, "401"),
        (
            response(404, {"errors": [{"message": "The specified resource does not exist."}]}),
            Category.NOT_FOUND,
            "does not exist",
        ),
        (response(400, {"message": "Invalid type"}), Category.INVALID_ROLE, "Invalid type"),
        (response(400, {"message": "Invalid role"}), Category.INVALID_ROLE, "Invalid role"),
        (
            response(400, {"message": "The specified type must match the base type for the role"}),
            Category.INVALID_ROLE,
            "base type",
        ),
        (
            response(400, {"message": "Can't add an enrollment to a concluded course."}),
            Category.CONCLUDED,
            "concluded course",
        ),
        (
            response(
                400,
                {
                    "errors": {
                        "associated_user_id": [
                            {
                                "attribute": "associated_user_id",
                                "type": "Cannot observe yourself",
                                "message": "Cannot observe yourself",
                            }
                        ]
                    }
                },
            ),
            Category.BAD_REQUEST,
            "Cannot observe yourself",
        ),
        (response(400, {"error": "enrollment not inactive"}), Category.BAD_REQUEST, "not inactive"),
        (
            response(400, {"error": True, "error_message": "Missing attachment"}),
            Category.BAD_REQUEST,
            "Missing attachment",
        ),
        (
            response(
                400,
                {
                    "errors": [
                        {
                            "field": "search_term",
                            "code": "invalid",
                            "message": "2 or more characters is required",
                        }
                    ]
                },
            ),
            Category.BAD_REQUEST,
            "2 or more",
        ),
        (
            response(
                500,
                {
                    "errors": [
                        {"message": "An error occurred.", "error_code": "internal_server_error"}
                    ],
                    "error_report_id": 4242,
                },
            ),
            Category.SERVER,
            "An error occurred.",
        ),
        (
            response(
                503,
                text="<html><head><title>503 Service Unavailable</title></head><body>x</body></html>",
            ),
            Category.SERVER,
            "503 Service Unavailable",
        ),
        (
            response(502, text="<html><body><h1>Bad Gateway</h1></body></html>"),
            Category.SERVER,
            "Bad Gateway",
        ),
        (
            response(302, text="", Location="https://sso.example.edu/login"),
            Category.BAD_REQUEST,
            "https://sso.example.edu",
        ),
    ],
)
def test_every_shape(resp: httpx.Response, category: Category, message: str) -> None:
    error = classify(resp)
    assert error.category is category
    assert message in error.message
    assert error.status == resp.status_code
    assert error.method == "POST" and error.url.endswith("/enrollments")


def test_500_carries_error_report_id() -> None:
    error = classify(
        response(500, {"errors": [{"message": "An error occurred."}], "error_report_id": 77})
    )
    assert error.error_report_id == 77 and error.retryable and "error report 77" in str(error)


def test_404_category_comes_from_the_caller() -> None:
    resp = response(404, {"errors": [{"message": "The specified resource does not exist."}]})
    assert (
        classify(resp, not_found=Category.SECTION_NOT_FOUND).category is Category.SECTION_NOT_FOUND
    )


def test_throttle_detection_and_flags() -> None:
    assert is_throttle(response(403, text="403 Forbidden (Rate Limit Exceeded)\n"))
    assert not is_throttle(response(403, {"errors": ["SIS imports are not enabled"]}))
    throttled = classify(response(429, text=""))
    assert throttled.retryable and not throttled.fatal
    auth = classify(response(401, {"errors": [{"message": "Invalid access token."}]}, **CHALLENGE))
    assert auth.fatal and not auth.retryable


def test_message_from_empty_body() -> None:
    assert response_message(response(502, text=""))[0] == "HTTP 502 Bad Gateway"


def test_hand_built_response_without_request() -> None:
    error = classify(httpx.Response(500, json={"errors": [{"message": "boom"}]}))
    assert error.category is Category.SERVER and error.url == ""


@pytest.mark.parametrize(
    ("exc", "sent"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow connect"), False),
        (httpx.ReadTimeout("slow answer"), True),
        (httpx.RemoteProtocolError("peer closed"), True),
        (httpx.ReadError("reset by peer"), True),
    ],
)
def test_transport_errors(exc: httpx.TransportError, sent: bool) -> None:
    error = classify_transport(exc, method="POST", url="https://canvas.test/x")
    assert error.category is Category.NETWORK and error.retryable
    assert error.request_sent is sent
    assert may_have_been_applied(error) is sent


def test_which_failures_may_hide_a_write() -> None:
    assert not may_have_been_applied(classify(response(429, text="")))
    assert not may_have_been_applied(classify(response(500, {"errors": [{"message": "x"}]})))
    assert may_have_been_applied(classify(response(504, text="gateway timeout")))
