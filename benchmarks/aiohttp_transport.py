"""httpx's client API over aiohttp's connection pool and C HTTP parser (issue 14).

The default until canvas/http1.py replaced it at ~2/3 of its CPU per request; kept here as
bench_transport.py's `aiohttp` kind, the comparison.

httpx's own transport (httpcore + h11 + anyio) spends ~2 ms of CPU per request on a busy loop:
anyio backend detection and cancel scopes, a checkpoint per socket operation, h11 in pure
Python. This transport hands each request, already built and authorised by httpx, to one
aiohttp session and gives httpx back the answer's status, raw headers and raw body, so httpx
still decodes the body, and the client's auth (the origin-pinned token), timeouts, events and
error classification are unchanged (benchmarks/bench_sync_cpu.py has the figures).

Failures become httpx's own exceptions with the same meaning for `errors.classify_transport`:
only a failure to connect says "not sent" (ConnectError, ConnectTimeout); anything after the
connection was made may have reached Canvas (ReadError, ReadTimeout, RemoteProtocolError).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp
import httpx

# Canvas's Link headers grow with the query they repeat; aiohttp's default cap is 8190 bytes.
MAX_FIELD_SIZE = 65536


def _httpx_error(exc: aiohttp.ClientError) -> httpx.TransportError:
    """The httpx exception that says the same about whether the request left us."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text)
    if isinstance(exc, aiohttp.ClientConnectorError):  # DNS, refused, TLS, proxy: not sent
        return httpx.ConnectError(text)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(text)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(text)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientOSError):
        return httpx.ReadError(text)
    return httpx.RemoteProtocolError(text)  # anything else: it may have been sent


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session per event loop, made on first use (a session belongs to its loop)."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._ssl: ssl.SSLContext | None = None  # made for the first https request (~20 ms)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: dict[tuple[Any, Any, Any], aiohttp.ClientTimeout] = {}

    def _ssl_context(self) -> ssl.SSLContext:
        """The same verification as httpx's transport: certifi, or SSL_CERT_FILE / SSL_CERT_DIR.
        Passed with every https request, so aiohttp's own default context is never used."""
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def _timeout(self, timeout: dict[str, Any]) -> aiohttp.ClientTimeout:
        key = (timeout.get("pool"), timeout.get("connect"), timeout.get("read"))
        found = self._timeouts.get(key)
        if found is None:
            found = aiohttp.ClientTimeout(connect=key[0], sock_connect=key[1], sock_read=key[2])
            self._timeouts[key] = found
        return found

    def _session_now(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                limit_per_host=0,
                keepalive_timeout=self._limits.keepalive_expiry or 5.0,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies, if any
                auto_decompress=False,  # httpx decodes the body, as with its own transport
                trust_env=False,  # no environment proxies, no ~/.netrc
                # httpx sends its own; aiohttp adds only Host and Content-Length when missing
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                max_field_size=MAX_FIELD_SIZE,
                max_line_size=MAX_FIELD_SIZE,
            )
            self._loop = loop
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout: dict[str, Any] = request.extensions.get("timeout", {})
        session = self._session_now()
        url = request.url
        try:
            async with session.request(
                request.method,
                str(url),
                headers=request.headers.multi_items(),
                data=request.content or None,
                allow_redirects=False,
                timeout=self._timeout(timeout),
                # verified as httpx verifies; http (loopback only) needs no context at all
                ssl=self._ssl_context() if url.scheme == "https" else True,
            ) as answer:
                body = await answer.read()
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc) from exc
        return httpx.Response(
            answer.status,
            headers=list(answer.raw_headers),
            stream=httpx.ByteStream(body),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
