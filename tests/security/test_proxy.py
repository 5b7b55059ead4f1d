"""The environment's proxy never sees a request: HTTP_PROXY with a plain-http (loopback) base URL
would hand the proxy every request whole, Authorization header included. A proxy is used only
when the config names one, and only for an https base URL."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import CanvasError, Category
from canvas_tui.config import ConfigError, load_config
from canvas_tui.simulator import SimConfig, World, build_app
from canvas_tui.simulator.testing import serve_in_thread


class RecordingProxy:
    """A loopback socket that accepts connections and keeps every byte that arrives."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.received = b""
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(1.0)
                try:
                    self.received += conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                except OSError:
                    pass

    @contextmanager
    def running(self) -> Iterator[RecordingProxy]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=5)
            self.sock.close()


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
async def test_environment_proxy_never_sees_the_token(
    secret: str, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = build_app(SimConfig(time_scale=1000, tokens=(secret,)), World.generate(3))
    with RecordingProxy().running() as proxy, serve_in_thread(app) as base_url:
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.setenv(variable, proxy.url)
        async with CanvasClient(base_url, secret, max_attempts=1) as client:
            me = await client.whoami()
    assert me["id"]
    assert proxy.connections == 0
    assert secret.encode() not in proxy.received


def test_proxy_is_refused_for_plain_http(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[canvas]\nbase_url = "http://127.0.0.1:9"\nproxy = "http://127.0.0.1:3128"\n'
    )
    with pytest.raises(ConfigError, match=r"proxy.*only for an https base URL"):
        load_config(config, env={})
    with pytest.raises(CanvasError) as caught:
        CanvasClient("http://127.0.0.1:9", "t", proxy="http://127.0.0.1:3128")
    assert caught.value.category is Category.UNSAFE


def test_explicit_proxy_is_accepted_for_https(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[canvas]\nbase_url = "https://canvas.example.edu"\nproxy = "http://proxy.example.edu:3128"\n'
    )
    loaded = load_config(config, env={})
    assert loaded.canvas.proxy == "http://proxy.example.edu:3128"


async def test_explicit_proxy_only_sees_a_tunnel(secret: str) -> None:
    with RecordingProxy().running() as proxy:
        async with CanvasClient(
            "https://canvas.example.edu", secret, proxy=proxy.url, max_attempts=1
        ) as client:
            with pytest.raises(CanvasError):
                await client.whoami()  # this proxy refuses the tunnel
    assert proxy.received.startswith(b"CONNECT canvas.example.edu:443 ")
    assert secret.encode() not in proxy.received
