"""A real headless Chromium (Debian's `chromium` package), driven over the DevTools protocol with
aiohttp's websocket client: open a page, press keys, read the websocket frames the page received
and sent, take a screenshot. No browser download, no driver: the package and a socket."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


class Browser:
    """One DevTools connection: browser-level commands, and the pages it opened."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._calls = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}

    async def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        call = next(self._calls)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call] = future
        message: dict[str, Any] = {"id": call, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.ws.send_json(message)
        return await asyncio.wait_for(future, 30)

    async def pump(self) -> None:
        async for message in self.ws:
            data = message.json()
            if "id" in data:
                waiting = self._pending.pop(data["id"], None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(data.get("result", data))
            elif (page := self._pages.get(data.get("sessionId", ""))) is not None:
                page.events.append(data)

    async def new_page(self) -> Page:
        """A blank tab whose network events are recorded."""
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        page = Page(self, attached["sessionId"])
        self._pages[page.session] = page
        await page.send("Network.enable")
        await page.send("Page.enable")
        return page


@dataclass
class Page:
    """One tab, attached with a flat session: commands go out, events are kept."""

    browser: Browser
    session: str
    events: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.browser.send(method, self.session, **params)

    def received_text(self) -> str:
        """Every websocket frame the page received from the server, as text."""
        return "".join(
            _payload(e["params"]["response"])
            for e in self.events
            if e.get("method") == "Network.webSocketFrameReceived"
        )

    def sent_text(self) -> str:
        return "".join(
            _payload(e["params"]["response"])
            for e in self.events
            if e.get("method") == "Network.webSocketFrameSent"
        )

    async def click(self, x: float, y: float) -> None:
        """A left click at (x, y), as a mouse would (it also focuses what is there)."""
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    async def press(self, key: str) -> None:
        """A printable key, as a keyboard would type it, to whatever has the focus."""
        await self.send("Input.dispatchKeyEvent", type="keyDown", key=key, text=key)
        await self.send("Input.dispatchKeyEvent", type="keyUp", key=key)

    async def screenshot(self, path: Path) -> bytes:
        shot = await self.send("Page.captureScreenshot", format="png")
        data = base64.b64decode(shot["data"])
        await asyncio.to_thread(path.write_bytes, data)
        return data


def _payload(response: dict[str, Any]) -> str:
    data = str(response.get("payloadData", ""))
    if response.get("opcode") == 2:  # binary frames come base64-encoded
        return base64.b64decode(data).decode("utf-8", "replace")
    return data


@contextlib.asynccontextmanager
async def chromium(width: int = 1280, height: int = 800) -> AsyncIterator[Browser]:
    """A headless Chromium, driven over DevTools."""
    assert CHROMIUM is not None, "no chromium on PATH"
    profile = tempfile.mkdtemp(prefix="canvas-tui-chromium-")
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
        "--disable-gpu",
        "--no-first-run",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    drain: asyncio.Task[bytes] | None = None
    try:
        assert process.stderr is not None
        url = await asyncio.wait_for(_devtools_url(process.stderr), 60)
        drain = asyncio.create_task(process.stderr.read())  # a full pipe would stall it
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
            browser = Browser(ws)
            reader = asyncio.create_task(browser.pump())
            try:
                yield browser
            finally:
                reader.cancel()
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        if drain is not None:
            drain.cancel()
        shutil.rmtree(profile, ignore_errors=True)


async def _devtools_url(stderr: asyncio.StreamReader) -> str:
    while line := await stderr.readline():
        found = _LISTENING.search(line.decode("utf-8", "replace"))
        if found:
            return found.group(1)
    raise RuntimeError("chromium exited before it listened for DevTools")


@contextlib.asynccontextmanager
async def chromium_page(width: int = 1280, height: int = 800) -> AsyncIterator[Page]:
    """A headless Chromium with one blank page whose network events are recorded."""
    async with chromium(width, height) as browser:
        yield await browser.new_page()
