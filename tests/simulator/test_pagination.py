"""Bookmark pagination and the Link header as Canvas sends them (CANVAS_API.md §4)."""

from __future__ import annotations

import re

import httpx

from canvas_tui.simulator import build_app
from canvas_tui.simulator.world import BUILT_IN_ROLE_IDS, World
from tests.helpers import fast_config
from tests.simulator.conftest import BASE, client_for, roster_world

LINK_ENTRY = re.compile(r'^<(?P<url>[^>]+)>; rel="(?P<rel>[a-z]+)"$')


def parse_links(response: httpx.Response) -> list[tuple[str, str]]:
    header = response.headers["link"]
    entries = header.split(",")
    parsed = []
    for entry in entries:
        match = LINK_ENTRY.match(entry)
        assert match, f"malformed Link entry {entry!r} in {header!r}"
        parsed.append((match["rel"], match["url"]))
    return parsed


async def test_250_enrollments_in_three_pages_each_once() -> None:
    world, path = roster_world(250)
    app = build_app(fast_config(), world)
    seen: list[int] = []
    pages = 0
    async with client_for(app) as client:
        url: str | None = f"{path}?per_page=100"
        while url:
            response = await client.get(url)
            assert response.status_code == 200
            pages += 1
            seen.extend(e["id"] for e in response.json())
            links = dict(parse_links(response))
            url = links.get("next")
    assert pages == 3
    assert len(seen) == 250
    assert len(set(seen)) == 250


async def test_link_header_format_and_rels() -> None:
    world, path = roster_world(25)
    app = build_app(fast_config(), world)
    async with client_for(app) as client:
        first = await client.get(path, params={"per_page": "10", "state[]": "active"})
        first_links = parse_links(first)
        assert ", " not in first.headers["link"]  # bare commas
        assert [rel for rel, _ in first_links] == ["current", "next", "first"]
        for _, url in first_links:
            assert url.startswith(f"{BASE}/api/v1/courses/sis_course_id:BIG-100/enrollments?")
            assert "state%5B%5D=active" in url or "state[]=active" in url
            assert url.endswith("&per_page=10")
        assert dict(first_links)["first"].endswith("page=first&per_page=10")
        second = await client.get(dict(first_links)["next"])
        assert [rel for rel, _ in parse_links(second)] == ["current", "next", "first"]
        third = await client.get(dict(parse_links(second))["next"])
        third_links = parse_links(third)
        assert [rel for rel, _ in third_links] == ["current", "first", "last"]
        assert dict(third_links)["last"] == dict(third_links)["current"]
        assert len(third.json()) == 5


async def test_numeric_page_silently_gives_page_one() -> None:
    world, path = roster_world(30)
    app = build_app(fast_config(), world)
    async with client_for(app) as client:
        first = await client.get(path, params={"per_page": 10})
        numeric = await client.get(path, params={"per_page": 10, "page": 2})
        garbage = await client.get(path, params={"per_page": 10, "page": "bookmark:!!notbase64"})
    ids = [e["id"] for e in first.json()]
    assert [e["id"] for e in numeric.json()] == ids
    assert [e["id"] for e in garbage.json()] == ids


async def test_per_page_default_clamp_and_token_not_copied() -> None:
    world, path = roster_world(150)
    app = build_app(fast_config(), world)
    async with client_for(app, token=None) as client:
        token = "demo-admin-token"
        default = await client.get(path, params={"access_token": token})
        big = await client.get(path, params={"access_token": token, "per_page": 500})
        zero = await client.get(path, params={"access_token": token, "per_page": 0})
    assert len(default.json()) == 10
    assert len(big.json()) == 100
    assert big.headers["link"].count("per_page=100") == 3
    assert len(zero.json()) == 1
    assert "access_token" not in default.headers["link"]


async def test_order_is_type_then_sortable_name_then_id() -> None:
    world, path = roster_world(40)
    teacher = world.roles[BUILT_IN_ROLE_IDS["TeacherEnrollment"]]
    course = world.find_course("sis_course_id:BIG-100")
    assert course is not None
    world.add_enrollment(world.users[1000], world.default_section(course), teacher)
    app = build_app(fast_config(), world)
    async with client_for(app) as client:
        response = await client.get(path, params={"per_page": 100})
    items = response.json()
    keys = [(e["type"], e["user"]["sortable_name"], e["id"]) for e in items]
    assert keys == sorted(keys)
    assert items[0]["type"] == "StudentEnrollment" and items[-1]["type"] == "TeacherEnrollment"


async def test_sections_use_numbered_pages_with_last() -> None:
    world = World.generate(3, users=50, courses=2)
    course = world.add_course("Many Sections", "SEC-1")
    for index in range(25):
        world.add_section(course, f"Section {index:02d}", f"SEC-1-{index:02d}")
    app = build_app(fast_config(), world)
    async with client_for(app) as client:
        response = await client.get(
            "/api/v1/courses/sis_course_id:SEC-1/sections", params={"per_page": 10, "page": 2}
        )
        past_end = await client.get(
            "/api/v1/courses/sis_course_id:SEC-1/sections", params={"per_page": 10, "page": 9}
        )
    rels = [rel for rel, _ in parse_links(response)]
    assert rels == ["current", "next", "prev", "first", "last"]
    assert dict(parse_links(response))["last"].endswith("page=3&per_page=10")
    assert len(response.json()) == 10
    assert past_end.status_code == 200 and past_end.json() == []
