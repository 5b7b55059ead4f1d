"""SIS ids in paths and parameters, `%2F` and `hex:` included (CANVAS_API.md §3)."""

from __future__ import annotations

import httpx
import pytest

from canvas_tui.simulator import ADMIN_TOKEN, build_app
from canvas_tui.simulator.testing import serve_in_thread
from canvas_tui.simulator.world import (
    NON_ASCII_USER,
    SLASH_COURSE,
    SLASH_SECTION,
    SLASH_USER,
    World,
    parse_sis_ref,
)
from tests.helpers import fast_config
from tests.simulator.conftest import USER_AGENT


def hex_ref(kind: str, value: str) -> str:
    return f"hex:{kind}:{value.encode().hex()}"


def test_parse_sis_ref() -> None:
    assert parse_sis_ref("sis_user_id:a:b") == ("sis_user_id", "a:b")
    assert parse_sis_ref(" 42 ") == (None, "42")
    assert parse_sis_ref("hex:sis_course_id:412f31") == ("sis_course_id", "A/1")
    assert parse_sis_ref("bogus:1") == (None, "")
    assert parse_sis_ref("sis_user_id:") == (None, "")
    assert parse_sis_ref("1" * 20) == (None, "")
    assert parse_sis_ref("hex:sis_user_id:zz") == (None, "")


@pytest.mark.parametrize(
    "ref",
    [
        "sis_user_id:EXT%2F2026%2F0042",
        hex_ref("sis_user_id", SLASH_USER),
        "sis_login_id:EXT.2026.0042%40DEMO.example.edu",  # login ids match case-insensitively
        "sis_integration_id:INT-EXT%2F2026%2F0042",
        "16",
    ],
)
async def test_user_path_forms(client: httpx.AsyncClient, ref: str) -> None:
    response = await client.get(f"/api/v1/users/{ref}")
    assert response.status_code == 200, response.text
    assert response.json()["sis_user_id"] == SLASH_USER


async def test_unencoded_slash_is_a_separator(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/users/sis_user_id:EXT/2026/0042")
    assert response.status_code == 404


async def test_course_and_section_with_slashes(client: httpx.AsyncClient) -> None:
    course_path = "/api/v1/courses/sis_course_id:ART%2F210-F26/enrollments"
    created = await client.post(course_path, data={
        "enrollment[user_id]": f"sis_user_id:{SLASH_USER}",  # a form value needs no path encoding
        "enrollment[course_section_id]": f"sis_section_id:{SLASH_SECTION}",
        "enrollment[enrollment_state]": "active"})  # fmt: skip
    assert created.status_code == 200, created.text
    assert created.json()["sis_section_id"] == SLASH_SECTION
    by_hex = await client.get(
        f"/api/v1/sections/{hex_ref('sis_section_id', SLASH_SECTION)}/enrollments",
        params={"sis_user_id[]": SLASH_USER},
    )
    assert [e["user"]["sis_user_id"] for e in by_hex.json()] == [SLASH_USER]
    course = await client.get(f"/api/v1/courses/{hex_ref('sis_course_id', SLASH_COURSE)}")
    assert course.json()["sis_course_id"] == SLASH_COURSE


async def test_non_ascii_name_round_trips(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/v1/users/sis_user_id:{NON_ASCII_USER}")
    assert response.json()["name"] == "Zoë Ångström-Núñez"
    assert response.json()["sortable_name"] == "Ångström-Núñez, Zoë"


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_percent_encoded_slash_survives_a_real_server(http: str) -> None:
    # uvicorn decodes %2F in scope["path"]; the simulator must route on scope["raw_path"].
    app = build_app(fast_config(), World.generate(7, users=100, courses=5))
    headers = {"User-Agent": USER_AGENT, "Authorization": f"Bearer {ADMIN_TOKEN}"}
    with (
        serve_in_thread(app, http=http) as base,
        httpx.Client(base_url=base, headers=headers) as client,
    ):
        user = client.get("/api/v1/users/sis_user_id:EXT%2F2026%2F0042")
        roster = client.get("/api/v1/courses/sis_course_id:ART%2F210-F26/enrollments")
    assert user.status_code == 200 and user.json()["sis_user_id"] == SLASH_USER
    assert roster.status_code == 200
    assert "sis_course_id:ART%2F210-F26/enrollments?" in roster.headers["link"]
