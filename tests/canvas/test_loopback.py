"""Over a real loopback socket (uvicorn): encoding survives a real server, resets are real socket
drops, and the token never goes to another origin — checked by a second server that records
every request it sees."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any, cast

import httpx
import pytest

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import CanvasError, Category
from canvas_tui.canvas.governor import Governor
from canvas_tui.simulator import ADMIN_TOKEN, FaultRates, Simulator, build_app
from canvas_tui.simulator.testing import asgi_transport, serve_in_thread
from canvas_tui.simulator.world import DOC_COURSE, NON_ASCII_USER, SLASH_SECTION, SLASH_USER
from tests.canvas.conftest import BASE, Sleeps, sim_config, sis_students

pytestmark = pytest.mark.slow


class Recorder:
    """A stranger's server: answers 200 [] and remembers each request's headers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.seen.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"[]"})


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    app = Recorder()
    with serve_in_thread(app) as url:
        yield app, url


@pytest.fixture
def served(app: Simulator) -> Iterator[str]:
    with serve_in_thread(app) as url:
        yield url


def socket_client(url: str, app: Simulator, **kwargs: Any) -> CanvasClient:
    governor = Governor(leak=app.config.leak * app.config.time_scale)
    return CanvasClient(url, ADMIN_TOKEN, governor=governor, sleep=Sleeps(), **kwargs)


async def test_sis_ids_survive_a_real_server(served: str, app: Simulator) -> None:
    async with socket_client(served, app) as client:
        created = await client.create_enrollment(
            user=f"sis_user_id:{SLASH_USER}",
            course=None,
            section=f"sis_section_id:{SLASH_SECTION}",
            enrollment_type="StudentEnrollment",
        )
        user = await client.get_user(f"sis_user_id:{NON_ASCII_USER}")
        found = await client.list_enrollments(section=f"sis_section_id:{SLASH_SECTION}")
    assert created["sis_section_id"] == SLASH_SECTION
    assert user["sis_user_id"] == NON_ASCII_USER
    assert created["id"] in {e["id"] for e in found}


async def test_real_socket_resets_are_retried_without_duplicates(
    served: str, app: Simulator
) -> None:
    app.set_faults(FaultRates(reset_before=0.15, reset_after=0.15, html_503=0.05))
    async with socket_client(served, app) as client:
        for user in sis_students(app.world, 30):
            await client.create_enrollment(
                user=user,
                course=f"sis_course_id:{DOC_COURSE}",
                section=None,
                enrollment_type="StudentEnrollment",
            )
    stats = app.stats()
    assert stats["faults"].get("reset_after", 0) + stats["faults"].get("reset_before", 0) > 0
    assert stats["enrollments_created"] == 30 and stats["duplicates"] == 0


async def test_timeouts_are_network_errors_and_retried(served: str, app: Simulator) -> None:
    app.config.faults = FaultRates(slow=1.0, slow_seconds=1000.0)  # 1 s at time scale 1000
    app.set_faults(app.config.faults)
    sleeps = Sleeps()

    async def calm(seconds: float) -> None:
        await sleeps(seconds)
        app.set_faults(FaultRates())

    events: list[Any] = []
    async with socket_client(served, app, timeout=0.3) as client:
        client.sleep = calm
        me = await client.whoami(observer=events.append)
    assert me["id"] == 1
    assert (
        events[0].category == "network"
        and "timed out" in events[0].message
        and events[0].will_retry
    )


class LinkRewriter:
    """Wraps the simulator and points its Link headers at another server, as a misconfigured
    proxy (or a hostile one) might."""

    def __init__(self, inner: Simulator, target: str) -> None:
        self.inner = inner
        self.target = target

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        async def rewrite(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (
                        k,
                        v.replace(BASE.encode(), self.target.encode())
                        if k.lower() == b"link"
                        else v,
                    )
                    for k, v in message["headers"]
                ]
            await send(message)

        await self.inner(cast(dict[str, Any], scope), receive, rewrite)


async def test_foreign_next_link_is_refused_and_never_sent_the_token(
    app: Simulator, recorder: tuple[Recorder, str]
) -> None:
    stranger, stranger_url = recorder
    course = app.world.find_course(f"sis_course_id:{DOC_COURSE}")
    assert course is not None and len(app.world.enrollments_in_course(course.id)) > 3
    transport = httpx.ASGITransport(app=LinkRewriter(app, stranger_url))
    async with CanvasClient(BASE, ADMIN_TOKEN, transport=transport, sleep=Sleeps()) as client:
        with pytest.raises(CanvasError) as caught:
            async for _page in client.paginate(f"courses/{course.id}/enrollments", {"per_page": 2}):
                pass
    assert caught.value.category is Category.UNSAFE and caught.value.fatal
    assert stranger_url.rsplit(":", 1)[1] in str(caught.value)  # names where it pointed
    assert stranger.seen == []  # not followed at all, so no token went there


@pytest.mark.parametrize(
    "make_url",
    [
        lambda stranger: f"{stranger}/api/v1/users/self",  # same host, another port
        lambda stranger: "https://127.0.0.1:8999/api/v1/users/self",  # another scheme
        lambda stranger: "http://localhost:8999/api/v1/users/self",  # another host name
    ],
)
async def test_no_request_leaves_for_another_origin(
    app: Simulator, recorder: tuple[Recorder, str], make_url: Any
) -> None:
    stranger, stranger_url = recorder
    async with CanvasClient(
        BASE, ADMIN_TOKEN, transport=asgi_transport(app), sleep=Sleeps()
    ) as client:
        with pytest.raises(CanvasError) as caught:
            await client.request("GET", make_url(stranger_url))
    assert caught.value.category is Category.UNSAFE
    assert stranger.seen == [] and app.stats()["requests"] == 0


async def test_the_stranger_does_get_plain_requests(recorder: tuple[Recorder, str]) -> None:
    """The recorder works: a direct request shows up with its headers (so [] above means 'none')."""
    stranger, url = recorder
    async with httpx.AsyncClient() as plain:
        await plain.get(url + "/x", headers={"Authorization": "Bearer visible"})
    assert stranger.seen and stranger.seen[0]["authorization"] == "Bearer visible"


def test_sim_config_is_fast() -> None:
    assert build_app(sim_config()).config.time_scale == 1000.0
