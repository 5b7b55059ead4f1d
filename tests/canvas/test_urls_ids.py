"""Pure rules: base-URL safety, Link parsing, SIS id path segments (no HTTP)."""

from __future__ import annotations

import httpx
import pytest

from canvas_tui.canvas.ids import hex_form, path_segment
from canvas_tui.canvas.urls import base_url_problem, is_loopback_host, next_link, parse_link_header


@pytest.mark.parametrize(
    "url",
    [
        "https://canvas.example.edu",
        "https://canvas.example.edu/",
        "https://canvas.example.edu:8443/prefix",
        "http://127.0.0.1:8900",
        "http://127.5.6.7",
        "http://localhost:3000",
        "http://[::1]:8900",
    ],
)
def test_safe_base_urls(url: str) -> None:
    assert base_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://canvas.example.edu", "plain http"),
        ("http://10.0.0.5:8900", "plain http"),
        ("http://localhost.evil.example", "plain http"),
        ("http://127.0.0.1.nip.io", "plain http"),
        ("ftp://canvas.example.edu", "scheme"),
        ("canvas.example.edu", "scheme"),
        ("https://user:pw@canvas.example.edu", "user name"),
        ("https://canvas.example.edu/?x=1", "query"),
    ],
)
def test_unsafe_base_urls(url: str, why: str) -> None:
    problem = base_url_problem(url)
    assert problem is not None and why in problem


def test_loopback_hosts() -> None:
    assert (
        is_loopback_host("127.0.0.1")
        and is_loopback_host("[::1]")
        and is_loopback_host("LOCALHOST")
    )
    assert not is_loopback_host("128.0.0.1") and not is_loopback_host("example.com")


def test_canvas_link_header_bare_commas_any_case() -> None:
    value = (
        '<https://c.test/api/v1/courses/1/enrollments?page=first&per_page=100>; rel="current",'
        '<https://c.test/api/v1/courses/1/enrollments?page=bookmark:WyJhIiwxXQ&per_page=100>; REL="Next",'
        '<https://c.test/api/v1/courses/1/enrollments?page=first&per_page=100>; rel="first"'
    )
    links = parse_link_header(value)
    assert links["next"].endswith("page=bookmark:WyJhIiwxXQ&per_page=100")
    assert set(links) == {"current", "next", "first"}
    headers = httpx.Headers({"LINK": value})
    assert next_link(headers) == links["next"]


def test_link_header_unquoted_and_multi_rel() -> None:
    links = parse_link_header('<https://a/2>; rel=next, <https://a/9>; rel="last prev"')
    assert links == {"next": "https://a/2", "last": "https://a/9", "prev": "https://a/9"}
    assert next_link(httpx.Headers({"Link": '<https://a/1>; rel="current"'})) is None
    assert next_link(httpx.Headers()) is None


@pytest.mark.parametrize(
    ("ref", "segment"),
    [
        ("42", "42"),
        ("self", "self"),
        ("sis_course_id:BIO-101", "sis_course_id:BIO-101"),
        ("sis_course_id:ART/210-F26", "sis_course_id:ART%2F210-F26"),
        ("sis_user_id:Zoë Ø", "sis_user_id:Zo%C3%AB%20%C3%98"),
        ("sis_course_id:A#1%", "sis_course_id:A%231%25"),
        ("sis_course_id:a.b", "sis_course_id:a.b"),
        # Canvas's route cannot carry these, so the hex form is used
        ("sis_course_id:A?1", "hex:sis_course_id:413f31"),
        ("sis_course_id:notes.json", "hex:sis_course_id:" + b"notes.json".hex()),
        ("sis_course_id:x.json/y", "hex:sis_course_id:" + b"x.json/y".hex()),
        ("sis_user_id: padded ", "hex:sis_user_id:" + b" padded ".hex()),
    ],
)
def test_path_segment(ref: str, segment: str) -> None:
    assert path_segment(ref) == segment


def test_hex_form_matches_canvas_doc_example() -> None:
    assert hex_form("sis_course_id", "A/1") == "hex:sis_course_id:412f31"
