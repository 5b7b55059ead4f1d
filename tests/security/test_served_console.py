"""`canvas-tui serve` in a real headless Chromium (Debian's package): the dashboard renders, a key
press works, a request without the access token is refused; and the Canvas token is in no served
page, no websocket frame and no process's arguments."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from canvas_tui.engine.attach import socket_path
from canvas_tui.engine.journal import Journal, Outcome
from canvas_tui.records import State
from canvas_tui.simulator import LatencyModel, SimConfig, World, build_app
from canvas_tui.simulator.testing import serve_in_thread
from tests.chromium import CHROMIUM, Page, chromium, chromium_page
from tests.conftest import require_service
from tests.engine.helpers import items
from tests.engine.workload import write_csv
from tests.helpers import eventually, eventually_async, start_sync
from tests.security.conftest import SECRET, leaks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _journal(path: Path) -> Path:
    journal = Journal(path)
    journal.load(items(40, bad_every=9), description="enrollments.csv")
    for record_id in range(1, 25):
        if record_id % 9:  # every ninth row is invalid (failed at load)
            journal.post_outcome(record_id, Outcome(State.DONE, action="create"))
    journal.flush_sync()
    journal.close()
    return path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    """`canvas-tui serve` over a journal, with the Canvas token in its environment (as a
    config's `CANVAS_API_TOKEN` puts it): (base URL, access URL, the server process)."""
    journal = _journal(tmp_path / "run.journal")
    port = _free_port()
    process = _start_serve(journal, port, tmp_path)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        found = re.search(r"Open: (\S+)", "".join(lines))
        assert found, lines
        assert not leaks("".join(lines))
        eventually(lambda: _listening(port), what="the server listening")
        yield f"http://127.0.0.1:{port}", found.group(1), process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start_serve(journal: Path, port: int, cwd: Path) -> subprocess.Popen[str]:
    """`canvas-tui serve` over `journal`, the Canvas token in its environment."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "canvas_tui",
            "serve",
            "--journal",
            str(journal),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "CANVAS_API_TOKEN": SECRET,
            "CANVAS_BASE_URL": "https://canvas.example.edu",
            "XDG_CONFIG_HOME": str(cwd / "config"),
        },
        cwd=cwd,
    )


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tree(pid: int) -> list[int]:
    """`pid` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


def _arguments(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


async def _until(page: Page, text: str, what: str) -> None:
    await eventually_async(lambda: text in page.received_text(), what=what, timeout=60)


def _needs_chromium() -> None:
    require_service("chromium", CHROMIUM is not None, "Debian's chromium package is not installed")


async def test_refused_without_the_access_token(
    served: tuple[str, str, subprocess.Popen[str]],
) -> None:
    base, url, _ = served
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/ws", "/static/js/textual.js", "/?token=wrong"):
            async with http.get(base + path) as response:
                assert response.status == 403, path
        async with http.get(url) as response:
            assert response.status == 200
            assert "HttpOnly" in response.headers.get("Set-Cookie", "")
        with pytest.raises(aiohttp.WSServerHandshakeError):  # no cookie: refused
            async with aiohttp.ClientSession() as stranger:
                await stranger.ws_connect(base.replace("http", "ws") + "/ws")


async def test_the_console_in_chromium(
    served: tuple[str, str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    _needs_chromium()
    base, url, process = served
    async with chromium_page() as page:
        refused = await page.send("Page.navigate", url=base + "/")
        assert refused.get("errorText") is None
        await eventually_async(
            lambda: any(
                e.get("method") == "Network.responseReceived"
                and e["params"]["response"]["status"] == 403
                for e in page.events
            ),
            what="the page without the token refused",
        )

        await page.send("Page.navigate", url=url)
        # the dashboard, drawn by the tab's console and received by the page
        await _until(page, "Records", "the dashboard's panels")
        await _until(page, "READ-ONLY", "the read-only label")
        await _until(page, "sorted by source order", "the queue")
        await _until(page, "U12", "the queue's rows")
        # CANVAS_TUI_SCREENSHOT=docs/serve.png keeps it (docs/serve.png was made so)
        shot_path = Path(os.environ.get("CANVAS_TUI_SCREENSHOT") or tmp_path / "serve.png")
        shot = await page.screenshot(shot_path)
        assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000

        before = len(page.received_text())
        await page.click(640, 400)  # the terminal takes the keyboard's focus, as for a user
        await page.press("?")  # the keys help screen
        await eventually_async(
            lambda: '["stdin","?"]' in page.sent_text(), what="the key sent over the websocket"
        )
        await eventually_async(
            lambda: "Show every key and what it does" in page.received_text()[before:],
            what="the help screen drawn",
            timeout=60,
        )

        # the Canvas token: on no page, in no frame, in no process's arguments
        assert not leaks(page.received_text()) and not leaks(page.sent_text())
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert not leaks(await response.read())
        tabs = _tree(process.pid)
        assert len(tabs) >= 2, "a console process per tab"
        for pid in tabs:
            assert not leaks(_arguments(pid)), pid


def _serve(*argv: str) -> int:
    from canvas_tui.cli import build_parser
    from canvas_tui.tui.serve import main

    return main(build_parser().parse_args(["serve", *argv]))


def test_beyond_loopback_only_when_meant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = _journal(tmp_path / "run.journal")
    assert _serve("--journal", str(journal), "--host", "192.0.2.1") == 2  # TEST-NET-1
    assert "--allow-remote" in capsys.readouterr().err


def test_no_journal_to_serve_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert _serve() == 2  # the test's own (empty) state directory
    assert "no journal to serve" in capsys.readouterr().err


def test_each_tab_is_a_read_only_console_with_no_secret_on_its_command_line(
    tmp_path: Path,
) -> None:
    from canvas_tui.tui.serve import tab_command

    command = tab_command(tmp_path / "run.journal", tmp_path / "canvas-tui.toml")
    assert " console --journal " in command and "--read-only" in command
    assert not leaks(command)


async def test_tabs_attach_to_the_one_engine_of_a_running_sync(tmp_path: Path) -> None:
    """Two tabs while a headless `sync` drives the run: both follow that one engine (attached
    consoles), no tab spawns an engine of its own or runs anything, and the run goes on."""
    _needs_chromium()
    world = World.generate(7)
    app = build_app(
        SimConfig(time_scale=1, latency=LatencyModel.uniform(0.25), cost_jitter=0.0), world
    )
    write_csv(tmp_path / "in.csv", world, 300)
    journal = tmp_path / "run.journal"
    with serve_in_thread(app) as base_url:
        sync = start_sync(tmp_path, base_url, "in.csv", "--journal", str(journal))
        server = None
        try:
            await eventually_async(
                lambda: socket_path(journal).exists(), what="the sync's attach socket"
            )
            port = _free_port()
            server = _start_serve(journal, port, tmp_path)
            assert server.stdout is not None
            found = re.search(r"Open: (\S+)", server.stdout.readline() + server.stdout.readline())
            assert found
            await eventually_async(lambda: _listening(port), what="the server listening")
            async with chromium() as browser:
                tabs = [await browser.new_page(), await browser.new_page()]
                for tab in tabs:
                    await tab.send("Page.navigate", url=found.group(1))
                for tab in tabs:
                    await _until(tab, "attached", "the tab following the sync's run")
                    await _until(tab, "Records", "the dashboard")
                consoles = [  # the tabs' Pythons (each under textual-serve's /bin/sh -c)
                    args
                    for args in map(_arguments, _tree(server.pid))
                    if b"console" in args and not args.startswith(b"/bin/sh")
                ]
                assert len(consoles) == 2 and all(b"--attach" in c for c in consoles)
                assert not any(b"engine" in _arguments(pid) for pid in _tree(server.pid))
                assert sync.poll() is None  # the one run goes on, driven by the sync
                for tab in tabs:
                    assert not leaks(tab.received_text()) and not leaks(tab.sent_text())
        finally:
            if server is not None:
                server.terminate()
                server.wait(15)
            sync.terminate()
            sync.wait(60)
