"""Helpers to put the simulator under a client: in process, or on a real loopback socket."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from canvas_tui.simulator.faults import SimulatedConnectionReset


class _QuietResets(logging.Filter):
    """uvicorn logs every exception from the app; simulated resets are on purpose, not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SimulatedConnectionReset)


_QUIET_RESETS = _QuietResets()


def quiet_simulated_resets() -> None:
    logger = logging.getLogger("uvicorn.error")
    if _QUIET_RESETS not in logger.filters:
        logger.addFilter(_QUIET_RESETS)


def asgi_transport(app: Any) -> httpx.ASGITransport:
    """In-process transport; a simulated reset reaches the client as `httpx.RemoteProtocolError`."""
    return httpx.ASGITransport(app=app)


@contextmanager
def serve_in_thread(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    http: str = "auto",
    tls: tuple[str, str] | None = None,
) -> Iterator[str]:
    """Serve `app` with uvicorn in a daemon thread; yields `http://host:port` once it accepts.

    `http` picks uvicorn's HTTP implementation: "auto" (httptools when installed), "h11",
    "httptools". `tls` = (certificate file, key file): serve https instead."""
    quiet_simulated_resets()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    # A slow fault may still be sleeping at exit; do not wait for it longer than a second.
    config = uvicorn.Config(
        app,
        http=http,
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=1,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the simulator did not start")
        time.sleep(0.01)
    try:
        yield f"{'https' if tls else 'http'}://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (another process could take it before it is bound)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def simulator_stats(base_url: str) -> dict[str, Any]:
    """The simulator's own counters (`/__sim__/stats`)."""
    return dict(httpx.get(f"{base_url}/__sim__/stats", timeout=10).json())


@contextmanager
def simulate_process(*options: str, startup: float = 60.0) -> Iterator[str]:
    """`canvas-tui simulate OPTIONS...` in its own process on a free loopback port; yields its
    base URL once `/__sim__/stats` answers, and stops the process on exit."""
    port = free_port()
    command = [sys.executable, "-m", "canvas_tui", "simulate", "--port", str(port), *options]
    with serving_process(command, f"http://127.0.0.1:{port}", startup=startup) as base_url:
        yield base_url


@contextmanager
def serving_process(
    command: Sequence[str],
    base_url: str,
    *,
    startup: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Run `command`, a simulator that will serve at `base_url`; yield `base_url` once its
    `/__sim__/stats` answers, and stop the process on exit. Its output goes to a temporary file,
    quoted in the error when it does not start within `startup` seconds."""
    with tempfile.TemporaryFile("w+") as output:
        # Our own interpreter and arguments, no shell.
        process = subprocess.Popen(  # noqa: S603
            list(command), stdout=output, stderr=subprocess.STDOUT, env=env
        )
        try:
            deadline = time.monotonic() + startup
            while not _answers(base_url):
                if process.poll() is not None or time.monotonic() > deadline:
                    output.seek(0)
                    raise RuntimeError(f"the simulator did not start: {output.read()}")
                time.sleep(0.1)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/__sim__/stats", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
