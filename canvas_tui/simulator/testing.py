"""Helpers to put the simulator under a client: in process, or on a real loopback socket."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
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
    app: Any, host: str = "127.0.0.1", port: int = 0, *, http: str = "auto"
) -> Iterator[str]:
    """Serve `app` with uvicorn in a daemon thread; yields `http://host:port` once it accepts.

    `http` picks uvicorn's HTTP implementation: "auto" (httptools when installed), "h11",
    "httptools"."""
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
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
