"""httpx's transport interface over our own HTTP/1.1 connections (issue 14).

One asyncio Protocol per connection, a small keep-alive pool, each request written in one
`transport.write`, each answer parsed by llhttp (httptools). Our requests are small bodies known
whole in advance (form or JSON), and Canvas's answers are read whole, so the transport needs no
streaming, no body task and no generic request layers; httpx still builds the request (with the
client's origin-pinned token) and decodes the body.

Failures become httpx's own exceptions with the same meaning for `errors.classify_transport`:
only a failure to connect (refused, DNS, TLS handshake, connect timeout) says "not sent"
(ConnectError, ConnectTimeout); anything once the request bytes may have left may have reached
Canvas (ReadError for a reset, RemoteProtocolError for a close or a broken answer, ReadTimeout),
including a kept-alive connection the server closed while the request was on its way.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any

import httptools
import httpx

# Canvas's Link headers grow with the query they repeat; the whole header block is capped so a
# broken server cannot grow it without end (aiohttp capped each line at 65536 bytes).
MAX_HEADER_BYTES = 1 << 20

_Key = tuple[str, str, int]  # scheme, host, port


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, its answer collected whole."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: _Key) -> None:
        self.key = key
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.reusable = False  # the answer ended cleanly and the server keeps the connection
        self.idle_since = 0.0
        self.head = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.headers_done = False
        self.done = False
        self.delimited = False  # Content-Length or chunked: EOF before the end is a break

    # ---- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.done:
            self._close()  # bytes nobody asked for: the connection cannot be trusted again
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:  # a callback's exception arrives wrapped in one
            if self.done:
                self._close()  # a HEAD answer's headers were all of it, or bytes came after it
            else:
                self._fail(httpx.RemoteProtocolError(f"malformed answer: {exc}"))

    def eof_received(self) -> bool | None:
        self._close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self.waiter is None or self.done:
            return
        if self.headers_done and not self.delimited and exc is None:
            self._complete()  # an answer delimited by the close itself
        elif exc is not None:
            self._fail(httpx.ReadError(str(exc) or type(exc).__name__))
        else:
            self._fail(httpx.RemoteProtocolError("Server disconnected without a complete answer"))

    # ---- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:
            raise _Stop  # a second answer to one request

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise httptools.HttpParserError("header block too large")
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value):
            self.delimited = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200:
            return  # an interim answer (100 Continue): the real one follows
        self.headers_done = True
        if self.head or self.status in (204, 304):
            self.delimited = True
        if self.head:
            self.reusable = False  # llhttp would wait for a body the length names
            self._complete()
            raise _Stop

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.headers_done:  # the end of an interim answer
            self._reset()
            return
        self.reusable = self.parser.should_keep_alive()
        self._complete()

    # ---- the exchange ----------------------------------------------------------------------

    def _complete(self) -> None:
        self.done = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self._close()

    def _close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    async def exchange(self, data: bytes, head: bool, read_timeout: float | None) -> None:
        self._reset()
        self.head = head
        self.reusable = False
        self.waiter = self.loop.create_future()
        assert self.transport is not None
        self.transport.write(data)
        try:
            if read_timeout is None:
                await self.waiter
            else:
                try:
                    async with asyncio.timeout(read_timeout):
                        await self.waiter
                except TimeoutError:
                    raise httpx.ReadTimeout("timed out waiting for the answer") from None
        finally:
            self.waiter = None


class _Stop(Exception):
    """Ends parsing at the end of this request's answer (a HEAD answer's headers)."""


class Http1Transport(httpx.AsyncBaseTransport):
    """A keep-alive pool per event loop, made on first use (connections belong to their loop)."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._max = limits.max_connections or 0  # 0: no bound
        self._expiry = limits.keepalive_expiry if limits.keepalive_expiry is not None else 5.0
        self._ssl: ssl.SSLContext | None = None  # made for the first https request (~20 ms)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: dict[_Key, deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._slots: asyncio.Semaphore | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        """The same verification as httpx's transport: certifi, or SSL_CERT_FILE / SSL_CERT_DIR."""
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            for conn in self._open:
                conn.abort()  # another loop's connections cannot be used from this one
            self._open.clear()
            self._idle.clear()
            self._loop = loop
            self._slots = asyncio.Semaphore(self._max) if self._max else None
        return loop

    def _take_idle(self, key: _Key) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be stale
            if not conn.closed and now - conn.idle_since < self._expiry:
                return conn
            conn._close()
            self._open.discard(conn)
        return None

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, key: _Key, seconds: float | None
    ) -> _Connection:
        scheme, host, port = key
        conn = _Connection(loop, key)
        tls = self._ssl_context() if scheme == "https" else None
        try:
            async with asyncio.timeout(seconds):
                await loop.create_connection(
                    lambda: conn, host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            conn.abort()
            raise httpx.ConnectTimeout(f"connect to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:  # refused, DNS, TLS: nothing was sent
            conn.abort()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        self._open.add(conn)
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.reusable and not conn.closed:
            conn.idle_since = time.monotonic()
            idle = self._idle.get(conn.key)
            if idle is None:
                idle = self._idle[conn.key] = deque()
            idle.append(conn)
        else:
            conn._close()
            self._open.discard(conn)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        loop = self._bind()
        url = request.url
        scheme = url.scheme
        port = url.port or (443 if scheme == "https" else 80)
        key = (scheme, url.host, port)
        timeout: dict[str, Any] = request.extensions.get("timeout", {})
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()
        data = _request_bytes(request, body)
        slots = self._slots
        if slots is not None:
            if timeout.get("pool") is None:
                await slots.acquire()
            else:
                try:
                    async with asyncio.timeout(timeout["pool"]):
                        await slots.acquire()
                except TimeoutError:
                    raise httpx.PoolTimeout("no free connection in time") from None
        conn: _Connection | None = None
        try:
            conn = self._take_idle(key)
            if conn is None:
                conn = await self._connect(loop, key, timeout.get("connect"))
            # From here the request may reach Canvas: any failure is "may have been applied".
            await conn.exchange(data, request.method == "HEAD", timeout.get("read"))
        except BaseException:
            if conn is not None:
                conn.abort()
                self._open.discard(conn)
            raise
        finally:
            if slots is not None:
                slots.release()
        self._release(conn)
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=httpx.ByteStream(b"".join(conn.body)),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": conn.reason},
        )

    async def aclose(self) -> None:
        for conn in self._open:
            conn._close()
        self._open.clear()
        self._idle.clear()


def _request_bytes(request: httpx.Request, body: bytes) -> bytes:
    """The request line, headers and body, as one write. httpx has already set Host and, for a
    body it knew whole, Content-Length. A streamed body came with `Transfer-Encoding: chunked`
    instead; it has been read whole here, so it goes out with its length, not that header."""
    url = request.url
    lines = [request.method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
    has_length = False
    written = 0
    for name, value in request.headers.raw:
        lower = name.lower()
        if lower == b"transfer-encoding":
            continue
        lines += (name, b": ", value, b"\r\n")
        written += 1
        has_length = has_length or lower == b"content-length"
    if body and not has_length:
        lines += (b"Content-Length: ", str(len(body)).encode("ascii"), b"\r\n")
        written += 1
    lines.append(b"\r\n")
    head = b"".join(lines)
    # httpx lets CR, LF and NUL through in header values; none may split or end a header here
    ends = written + 2
    if head.count(b"\n") != ends or head.count(b"\r") != ends or b"\0" in head:
        raise httpx.LocalProtocolError("a request header contains CR, LF or NUL")
    return head + body if body else head
