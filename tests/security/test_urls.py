"""The token goes only to the configured origin: a `next` link to another host is refused, and
plain http is refused unless the base URL is loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import CanvasError, Category
from canvas_tui.config import CanvasConfig, Config, ConfigError, Secret, check_base_url, load_config
from canvas_tui.engine.session import open_session
from canvas_tui.simulator import SimConfig, World, build_app
from canvas_tui.simulator.testing import asgi_transport
from tests.security.conftest import run_sync


class HostRewritingProxy:
    """A misconfigured reverse proxy in front of the real simulator: it rewrites the Host header,
    so every Link the simulator builds points at another host."""

    def __init__(self, app: Any, host: bytes) -> None:
        self.app = app
        self.host = host

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
            scope = {**scope, "headers": [*headers, (b"host", self.host)]}
        await self.app(scope, receive, send)


class Recording(httpx.AsyncBaseTransport):
    """Remembers where each request went and whether it carried credentials."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[tuple[str, bool]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.url.host, "authorization" in request.headers))
        return await self.inner.handle_async_request(request)


async def test_foreign_next_link_is_not_followed_with_the_token(secret: str) -> None:
    world = World.generate(7)
    course = next(c for c in world.courses.values() if c.workflow_state == "available")
    section = world.default_section(course)
    student = world.built_in_role("StudentEnrollment")
    assert student is not None
    for user in list(world.users.values())[20:170]:  # more than one page of 100
        world.add_enrollment(user, section, student)
    app = build_app(SimConfig(time_scale=1000, tokens=(secret,)), world)
    transport = Recording(asgi_transport(HostRewritingProxy(app, b"evil.example:443")))
    async with CanvasClient("http://127.0.0.1", secret, transport=transport) as client:
        with pytest.raises(CanvasError) as caught:
            await client.list_enrollments(course=str(course.id))
    assert caught.value.category is Category.UNSAFE
    assert "evil.example" in str(caught.value)
    assert transport.sent == [("127.0.0.1", True)]  # the first page only; nothing to evil.example


@pytest.mark.parametrize(
    "url",
    ["http://canvas.example.edu", "http://10.0.0.5:8080", "http://127.0.0.1.nip.io", "ftp://x"],
)
def test_plain_http_to_a_remote_host_is_refused(url: str, secret: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        check_base_url(url)
    with pytest.raises(ConfigError):
        load_config(None, env={"CANVAS_BASE_URL": url, "CANVAS_API_TOKEN": secret})
    config = Config(canvas=CanvasConfig(base_url=url, token=Secret(secret)))
    with pytest.raises(ConfigError):
        open_session(config, journal_path=tmp_path / "j.journal")
    assert not (tmp_path / "j.journal").exists()  # refused before anything was created
    with pytest.raises(CanvasError) as caught:
        CanvasClient(url, secret)
    assert caught.value.category is Category.UNSAFE


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8900", "http://localhost:8900", "http://[::1]:8900", "https://x.edu"]
)
async def test_loopback_http_and_https_are_accepted(url: str, secret: str) -> None:
    check_base_url(url)
    await CanvasClient(url, secret).aclose()


def test_sync_refuses_plain_http_with_exit_2(
    tmp_path: Path,
    secret: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text(
        "course_id,user_id,role,section_id,status\nC,U,student,,active\n"
    )
    monkeypatch.setenv("CANVAS_BASE_URL", "http://canvas.example.edu")
    monkeypatch.setenv("CANVAS_API_TOKEN", secret)
    assert run_sync(["in.csv", "--log-format", "json"]) == 2
    out = capsys.readouterr().out
    assert "plain http" in out
    assert not (tmp_path / "runs").exists()
