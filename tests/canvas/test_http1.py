"""The default transport (canvas/http1.py) over real loopback sockets: the simulator under uvicorn
for what Canvas does, and a few lines of asyncio server for the answers uvicorn never gives
(chunked, delimited by the close, interim, truncated, a reset). Whether a failure says "not sent"
or "may have been applied" is the point of most of them."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import (
    CanvasError,
    Category,
    classify_transport,
    may_have_been_applied,
)
from canvas_tui.canvas.governor import Governor
from canvas_tui.canvas.http1 import Http1Transport
from canvas_tui.simulator import ADMIN_TOKEN, FaultRates, Simulator
from canvas_tui.simulator.testing import free_port, serve_in_thread
from canvas_tui.simulator.world import DOC_COURSE
from tests.canvas.conftest import Sleeps, sis_students

pytestmark = pytest.mark.slow

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
def served(app: Simulator) -> Iterator[str]:
    with serve_in_thread(app) as url:
        yield url


def sim_client(url: str, app: Simulator, **kwargs: object) -> CanvasClient:
    governor = Governor(leak=app.config.leak * app.config.time_scale)
    return CanvasClient(url, ADMIN_TOKEN, governor=governor, sleep=Sleeps(), **kwargs)  # type: ignore[arg-type]


def transport_of(client: CanvasClient) -> Http1Transport:
    transport = client._transport
    assert isinstance(transport, Http1Transport)
    return transport


class Raw:
    """A loopback server whose `handler` answers each connection; counts the connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[Raw, str]]:
    raw = Raw(handler)
    server = await asyncio.start_server(raw, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield raw, f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in raw.writers:
            writer.close()  # each handler sees EOF and ends
        async with asyncio.timeout(5):
            await asyncio.gather(*(raw.tasks - {asyncio.current_task()}), return_exceptions=True)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request, head and Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + (await reader.readexactly(length) if length else b"")


def answering(*answers: bytes) -> Handler:
    """Answers each request, on whichever connection, with the next of `answers`; once they are
    all given, waits for EOF."""
    left = list(answers)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while left:
            await read_request(reader)
            writer.write(left.pop(0))
            await writer.drain()
        await reader.read()

    return handler


def ok(body: bytes = b"{}", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def new_transport(**limits: int) -> Http1Transport:
    return Http1Transport(httpx.Limits(**limits))


async def get(transport: Http1Transport, url: str, method: str = "GET") -> httpx.Response:
    response = await transport.handle_async_request(httpx.Request(method, url))
    await response.aread()
    return response


# ---- against the simulator ------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(served: str, app: Simulator) -> None:
    async with sim_client(served, app) as client:
        for _ in range(5):
            assert (await client.whoami())["id"] == 1
        opened = set(transport_of(client)._open)
        assert len(opened) == 1
        await asyncio.gather(*(client.whoami() for _ in range(4)))
        assert opened <= transport_of(client)._open  # the first connection is still in use


async def test_a_refused_connection_is_not_sent() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with CanvasClient(url, ADMIN_TOKEN, max_attempts=1, sleep=Sleeps()) as client:
        with pytest.raises(CanvasError) as caught:
            await client.whoami()
    assert caught.value.category is Category.NETWORK
    assert not may_have_been_applied(caught.value)


async def test_a_reset_after_the_write_may_have_been_applied(served: str, app: Simulator) -> None:
    app.set_faults(FaultRates(reset_after=1.0))
    user = sis_students(app.world, 1)[0]
    async with sim_client(served, app, max_attempts=1) as client:
        with pytest.raises(CanvasError) as caught:
            await client.create_enrollment(
                user=user,
                course=f"sis_course_id:{DOC_COURSE}",
                section=None,
                enrollment_type="StudentEnrollment",
            )
    assert caught.value.category is Category.NETWORK
    assert may_have_been_applied(caught.value)  # and it was:
    assert app.stats()["enrollments_created"] == 1


# ---- answers uvicorn does not give ----------------------------------------------------------


async def test_chunked_answer_with_repeated_link_headers() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
        b'Link: <http://x/a>; rel="current"\r\nLink: <http://x/b>; rel="next"\r\n\r\n'
        b"3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n"
    )
    async with raw_server(answering(chunked, ok(b"[3]"))) as (raw, url):
        transport = new_transport()
        first = await get(transport, url + "/p")
        second = await get(transport, url + "/p")
        await transport.aclose()
    assert first.json() == [1, 2] and second.json() == [3]
    assert first.headers.get_list("link") == [
        '<http://x/a>; rel="current"',
        '<http://x/b>; rel="next"',
    ]
    assert raw.connections == 1  # kept alive after a chunked answer


async def test_connection_close_and_a_body_ended_by_the_close() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b'{"whole": "body"}'

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(closing)  # no Content-Length: the close ends the body

    async with raw_server(handler) as (raw, url):
        transport = new_transport()
        first = await get(transport, url)
        second = await get(transport, url)  # a new connection, not the closed one
        await transport.aclose()
    assert first.json() == second.json() == {"whole": "body"}
    assert raw.connections == 2


async def test_no_content_and_head_answers_have_no_body() -> None:
    no_content = b"HTTP/1.1 204 No Content\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"  # the length GET would have
    async with raw_server(answering(no_content, head, ok())) as (raw, url):
        transport = new_transport()
        deleted = await get(transport, url, "DELETE")
        headed = await get(transport, url, "HEAD")
        after = await get(transport, url)
        await transport.aclose()
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert (headed.status_code, headed.content, headed.headers["content-length"]) == (
        200,
        b"",
        "12",
    )
    assert after.json() == {}
    assert raw.connections == 2  # kept after the 204; not trusted after a HEAD


async def test_an_interim_answer_is_skipped() -> None:
    async with raw_server(answering(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"[]"))) as (_, url):
        transport = new_transport()
        response = await get(transport, url)
        await transport.aclose()
    assert (response.status_code, response.json()) == (200, [])


async def test_an_idle_connection_the_server_closed_is_not_used() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok())  # keep-alive, but the server closes at once

    async with raw_server(handler) as (raw, url):
        transport = new_transport()
        await get(transport, url)
        await asyncio.sleep(0.05)  # the close arrives while the connection is idle
        await get(transport, url)
        await transport.aclose()
    assert raw.connections == 2


async def test_a_truncated_answer_may_have_been_applied() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 201 Created\r\nContent-Length: 64\r\n\r\n{"id"')

    async with raw_server(handler) as (_, url):
        transport = new_transport()
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await get(transport, url, "POST")
        await transport.aclose()
    assert classify_transport(caught.value).request_sent
    assert may_have_been_applied(caught.value)


async def test_a_reset_on_a_kept_alive_connection_may_have_been_applied() -> None:
    """The stale keep-alive race: the server drops the connection as the request arrives."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok())
        await writer.drain()
        await read_request(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # an RST, not a FIN

    async with raw_server(handler) as (raw, url):
        transport = new_transport()
        await get(transport, url)
        with pytest.raises(httpx.TransportError) as caught:
            await get(transport, url, "POST")
        await transport.aclose()
    assert raw.connections == 1
    assert isinstance(caught.value, httpx.ReadError | httpx.RemoteProtocolError)
    assert may_have_been_applied(caught.value)


async def test_a_malformed_answer_is_a_protocol_error() -> None:
    async with raw_server(answering(b"SPDY/9 banana\r\n\r\n")) as (_, url):
        transport = new_transport()
        with pytest.raises(httpx.RemoteProtocolError):
            await get(transport, url)
        await transport.aclose()


async def test_a_cancelled_request_frees_its_connection_slot() -> None:
    """The client's deadline cancels a request mid-answer: the only slot is free again."""
    first = True

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal first
        await read_request(reader)
        if first:
            first = False
            await reader.read()  # never answers
            return
        writer.write(ok())
        await reader.read()

    async with raw_server(handler) as (raw, url):
        transport = new_transport(max_connections=1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await get(transport, url)
        async with asyncio.timeout(5):
            assert (await get(transport, url)).json() == {}
        await transport.aclose()
    assert raw.connections == 2  # the cancelled one was not reused


async def test_connect_timeout_is_not_sent() -> None:
    transport = new_transport()
    # 192.0.2.0/24 is TEST-NET-1: never routed, so the connect hangs (or fails at once)
    request = httpx.Request("GET", "http://192.0.2.1/", extensions={"timeout": {"connect": 0.05}})
    with pytest.raises((httpx.ConnectTimeout, httpx.ConnectError)) as caught:
        await transport.handle_async_request(request)
    assert not may_have_been_applied(caught.value)


async def test_a_header_with_a_line_break_is_never_written() -> None:
    async with raw_server(answering(ok())) as (raw, url):
        transport = new_transport()
        request = httpx.Request("GET", url, headers={"X-Note": "a\r\nInjected: yes"})
        with pytest.raises(httpx.LocalProtocolError):
            await transport.handle_async_request(request)
        await transport.aclose()
    assert raw.connections == 0


async def test_a_streamed_body_goes_out_with_its_length_not_chunked() -> None:
    """httpx marks a body of unknown length `Transfer-Encoding: chunked`; the transport reads it
    whole, so the framing it announces must be the length of what it writes."""
    seen: list[bytes] = []

    async def recording(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(ok())
        await writer.drain()
        await reader.read()

    async def parts() -> AsyncIterator[bytes]:
        yield b"user_id=1&"
        yield b"type=StudentEnrollment"

    async with raw_server(recording) as (_raw, url):
        transport = new_transport()
        request = httpx.Request("POST", url, content=parts())
        assert request.headers["Transfer-Encoding"] == "chunked"
        response = await transport.handle_async_request(request)
        assert response.status_code == 200
        await transport.aclose()
    head, _, body = seen[0].partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert b"Content-Length: 32" in head
    assert body == b"user_id=1&type=StudentEnrollment"
