"""The Canvas REST client: one long-lived httpx.AsyncClient behind the governor and the retry policy.

Security rules enforced here, not left to callers:
- the token goes only to the configured base URL's scheme, host and port (`_OriginBearer` refuses
  to attach it anywhere else, and a foreign pagination link is refused before any request);
- plain http is refused unless the host is loopback (`urls.base_url_problem`);
- the token is never logged, never part of a URL, an event, an exception text or a repr.

404 attribution (Canvas's 404 body never says which id was missing): a request that names one
object blames that one. An enrollment create names two — the course or section in the path, then
the user — and Canvas looks them up in that order (CANVAS_API.md §2.3), so after a 404 the client
GETs the path object once (cached per id): if it is missing the error is COURSE/SECTION_NOT_FOUND,
otherwise USER_NOT_FOUND (which also covers a user with no login in this account, also a 404).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import httpx

from canvas_tui import __version__
from canvas_tui.canvas.errors import (
    CanvasError,
    Category,
    classify,
    classify_transport,
    is_throttle,
    may_have_been_applied,
)
from canvas_tui.canvas.governor import Governor
from canvas_tui.canvas.http1 import Http1Transport
from canvas_tui.canvas.ids import path_segment
from canvas_tui.canvas.retry import RetryPolicy, Sleep, call_with_retry
from canvas_tui.canvas.shapes import Check, enrollment_problem, list_of, object_problem
from canvas_tui.canvas.urls import base_url_problem, next_link, origin, proxy_problem
from canvas_tui.config import Config, ConfigError, check_base_url

log = logging.getLogger(__name__)
# httpx.AsyncClient's own request line, which `-v` documents (logs.py); the client sends through
# the transport directly, so it writes that line itself, under httpx's logger and in its format
http_log = logging.getLogger("httpx")

PER_PAGE = 100
USER_AGENT = f"canvas-tui/{__version__}"
JsonObject = dict[str, Any]
_DECODED = "canvas_tui.json"  # a response's extensions key: its body, decoded once


@dataclass(frozen=True, slots=True)
class AttemptEvent:
    """One HTTP attempt as the journal and the UI record it. Never carries the token."""

    number: int  # 1-based attempt number within the call
    method: str
    url: str
    request_body: str | None  # JSON text as sent
    status: int | None  # None for transport failures
    category: str | None  # None on success
    message: str | None
    error_report_id: int | None
    cost: float | None  # X-Request-Cost
    remaining: float | None  # X-Rate-Limit-Remaining
    started_at: float  # wall clock, seconds since the epoch
    finished_at: float
    will_retry: bool
    wait: float | None  # seconds until the retry, when will_retry


Observer = Callable[[AttemptEvent], None]


class _OriginBearer(httpx.Auth):
    """Bearer auth that only ever attaches the token to the base URL's origin."""

    def __init__(self, token: str, allowed: tuple[str, str, int]) -> None:
        self.__token = token
        self._allowed = allowed

    def __repr__(self) -> str:
        return f"_OriginBearer(token=<redacted>, origin={self._allowed!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if origin(request.url) != self._allowed:
            raise CanvasError(
                Category.UNSAFE,
                f"refused to send the token to {_origin_text(request.url)}; only "
                f"{self._allowed[0]}://{self._allowed[1]}:{self._allowed[2]} may receive it",
                method=request.method,
                url=_origin_text(request.url),
            )
        request.headers["Authorization"] = f"Bearer {self.__token}"
        yield request


def _origin_text(url: httpx.URL) -> str:
    scheme, host, port = origin(url)
    return f"{scheme}://{host}:{port}"


def _float_header(headers: httpx.Headers, name: str) -> float | None:
    try:
        value = headers.get(name)
        return float(value) if value is not None else None
    except ValueError:
        return None


class CanvasClient:
    """Async Canvas API client. Use `async with CanvasClient(...)` or call `aclose()`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        governor: Governor | None = None,
        timeout: float = 30.0,
        max_attempts: int = 8,
        sleep: Sleep | None = None,
        retry_policy: RetryPolicy | None = None,
        max_connections: int = 100,
        proxy: str | None = None,
    ) -> None:
        problem = base_url_problem(base_url)
        if problem:
            raise CanvasError(Category.UNSAFE, f"base URL refused: {problem}")
        problem = proxy_problem(base_url, proxy)
        if problem:
            raise CanvasError(Category.UNSAFE, f"proxy refused: {problem}")
        if not token or token != token.strip() or any(c in token for c in "\r\n\0"):
            raise CanvasError(
                Category.AUTH, "the API token is empty or contains invalid characters"
            )
        self.base_url = httpx.URL(base_url.rstrip("/"))
        self._origin = origin(self.base_url)
        self.governor = governor or Governor()
        self.retry_policy = retry_policy or RetryPolicy(max_attempts=max_attempts)
        self.sleep = sleep
        self._exists: dict[str, bool] = {}  # 404 attribution cache: path -> exists
        self._reached = False  # Canvas has answered (with any status) at least once
        # One attempt's whole life (connect, send, every byte of the answer): httpx's timeouts
        # are per read, so a server dripping one byte at a time would never trip them.
        self.deadline = timeout
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        if transport is None:
            # Proxies only when configured: HTTP_PROXY / ALL_PROXY from the environment would see
            # a plain-http request whole, Authorization header included. (Either transport still
            # reads SSL_CERT_FILE / SSL_CERT_DIR, which a site's own CA bundle needs.) Our own
            # HTTP/1.1 (http1.py) carries the requests at a ninth of httpcore's CPU; a proxy, rare,
            # keeps httpx's own transport, whose proxy handling the security rules were checked on.
            if proxy is None:
                transport = Http1Transport(limits)
            else:
                transport = httpx.AsyncHTTPTransport(limits=limits, proxy=proxy)
        self.requests_sent = 0  # every attempt that went out, retries and page reads included
        # httpx's Request/Response and transports, without AsyncClient's per-request layers
        # (a second URL parse, the auth/redirect/cookie machinery): ~0.5 ms a request (issue 14).
        # Redirects are never followed and no cookie is kept, as the token is the only credential.
        self._transport = transport
        self._auth = _OriginBearer(token, self._origin)
        self._api = str(self.base_url) + "/api/v1/"
        # built once: a Request copies a Headers cheaply but normalises a dict each time. The
        # same headers httpx.AsyncClient sent: its defaults (the decoders httpx has without
        # extras, keep-alive) under ours.
        self._headers = httpx.Headers(
            {
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
                "Connection": "keep-alive",
                "User-Agent": USER_AGENT,
            }
        )
        self._json_headers = httpx.Headers({**self._headers, "Content-Type": "application/json"})
        # Only the connect timeout is the transport's: it says "not sent" sooner than the
        # deadline. Read, write and pool timeouts of `timeout` seconds could never fire before
        # the deadline of the same length (started earlier), so none is set: no timer per read
        # chunk (issue 14).
        self._timeout = httpx.Timeout(None, connect=min(timeout, 10.0)).as_dict()
        self._urls: dict[str, httpx.URL] = {}  # path -> URL: a POST's path repeats per course

    @classmethod
    def from_config(
        cls,
        config: Config,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        governor: Governor | None = None,
        sleep: Sleep | None = None,
        max_attempts: int = 8,
    ) -> CanvasClient:
        """The client of `[canvas]`: its base URL, token, timeout and proxy. The one place a
        client is made from a config (a run's session, `plan`, `check`).

        Raises ConfigError for no base URL or token, an unsafe URL or proxy, or a token the
        client refuses; that refusal (a CanvasError) is the ConfigError's `__cause__`."""
        canvas = config.canvas
        check_base_url(canvas.base_url)
        if canvas.token is None or not canvas.token.reveal():
            raise ConfigError(
                "no API token: set CANVAS_API_TOKEN, or [canvas] token_file or token_command"
            )
        try:
            return cls(
                canvas.base_url,
                canvas.token.reveal(),
                transport=transport,
                governor=governor,
                timeout=canvas.timeout,
                max_attempts=max_attempts,
                sleep=sleep,
                proxy=canvas.proxy,
            )
        except CanvasError as exc:
            raise ConfigError(str(exc)) from exc

    def __repr__(self) -> str:
        return f"CanvasClient({str(self.base_url)!r}, token=<redacted>)"

    async def __aenter__(self) -> CanvasClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    # ---- one request, with governor, retry and events -------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        body: JsonObject | None = None,
        not_found: Category = Category.NOT_FOUND,
        observer: Observer | None = None,
        recover: Callable[[CanvasError], Awaitable[Any]] | None = None,
        validate: Check | None = None,
        upload: tuple[bytes, str] | None = None,
        raw_answer: bool = False,
        once: bool = False,
    ) -> httpx.Response:
        """Send `method path` (relative to /api/v1/, or an absolute same-origin URL) with retries.

        `validate(json)` says what is wrong with a success answer's body (shapes.py); a wrong
        shape is a retryable BAD_ANSWER, never a success.

        `recover(error)` runs when the call failed after an attempt that may have been applied
        (a reset after sending, a gateway error); a non-None result replaces the error.

        `once`: a request that must not be repeated once it may have been applied (it is not
        idempotent); only refusals that prove it was not (a throttle, a failed connect) are
        retried. `upload`: (bytes, Content-Type) as the body. `raw_answer`: a success answer is
        returned as it is, not read as JSON.
        """
        content: str | bytes | None = (
            None if body is None else json.dumps(body, separators=(",", ":"))
        )
        content_type = None
        if upload is not None:  # a file (a SIS import): bytes with their own Content-Type
            content, content_type = upload
        maybe_applied = False
        pending: dict[int, AttemptEvent] = {}

        def on_failure(
            error: CanvasError, number: int, will_retry: bool, wait: float | None
        ) -> None:
            nonlocal maybe_applied
            maybe_applied = maybe_applied or may_have_been_applied(error)
            draft = pending.pop(number, None)
            if draft is not None and observer is not None:
                observer(_with_retry(draft, will_retry, wait))
            if will_retry:
                log.info(
                    "retrying %s %s after %s (attempt %d, wait %.2fs)",
                    error.method,
                    error.url,
                    error.category,
                    number,
                    wait or 0.0,
                )

        async def attempt(number: int) -> httpx.Response:
            response, draft, error = await self._send_once(
                method, path, params, content, not_found, number, validate, content_type, raw_answer
            )
            if error is None and response is not None:
                if observer is not None:
                    observer(draft)
                return response
            assert error is not None
            pending[number] = draft
            throttled = error.category is Category.THROTTLED
            if once and error.retryable and may_have_been_applied(error) and not throttled:
                raise _NotRepeated(error, number)
            raise error

        try:
            return await call_with_retry(
                attempt,
                policy=self.retry_policy,
                on_failure=on_failure,
                sleep=self.sleep,
                refill_wait=self.governor.refill_wait,
                reached=lambda: self._reached,
            )
        except _NotRepeated as stop:
            on_failure(stop.error, stop.number, False, None)
            raise stop.error from None
        except CanvasError as error:
            if recover is not None and maybe_applied and not error.fatal:
                recovered = await recover(error)
                if recovered is not None:
                    return httpx.Response(200, json=recovered)
            raise

    async def _send_once(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None,
        content: str | bytes | None,
        not_found: Category,
        number: int,
        validate: Check | None = None,
        content_type: str | None = None,
        raw_answer: bool = False,
    ) -> tuple[httpx.Response | None, AttemptEvent, CanvasError | None]:
        url = self._url(path, params, method)
        headers = self._headers if content is None else self._json_headers
        if content_type is not None:
            headers = httpx.Headers({**self._headers, "Content-Type": content_type})
        request = httpx.Request(
            method,
            url,
            headers=headers,
            content=content,
            extensions={"timeout": self._timeout},
        )
        if isinstance(content, bytes):  # an upload: its events name it, never carry it
            content = f"<{content_type or 'upload'}: {len(content)} bytes>"
        request = next(self._auth.auth_flow(request))  # the token, for this origin only
        async with self.governor.slot() as slot:
            started = time.time()
            self.requests_sent += 1
            try:
                async with asyncio.timeout(self.deadline):
                    response = await self._exchange(request)
            except TimeoutError:
                error = CanvasError(
                    Category.NETWORK,
                    f"timed out: no complete answer within {self.deadline:g}s (the request deadline)",
                    method=method,
                    url=str(url),
                )
                return None, _event(number, method, url, content, started, error=error), error
            except httpx.TransportError as exc:
                error = classify_transport(exc, method=method, url=str(url))
                return None, _event(number, method, url, content, started, error=error), error
            except httpx.InvalidURL as exc:
                raise CanvasError(
                    Category.BAD_REQUEST, f"invalid URL: {exc}", method=method
                ) from exc
            slot.report(response.headers, throttled=is_throttle(response))
        self._reached = True
        log.debug("%s %s -> %d", method, url, response.status_code)
        if response.is_success and raw_answer:
            return response, _event(number, method, url, content, started, response), None
        if response.is_success:
            try:
                data = response.json()
            except ValueError:
                problem: str | None = (
                    "a body that is not JSON "
                    f"({response.headers.get('content-type', 'no content type')})"
                )
            else:
                problem = validate(data) if validate is not None else None
                response.extensions[_DECODED] = data
            if problem is None:
                return response, _event(number, method, url, content, started, response), None
            error = CanvasError(
                Category.BAD_ANSWER,
                f"{response.status_code} with {problem}; body: {_excerpt(response.content)}",
                status=response.status_code,
                method=method,
                url=str(url),
            )
            return response, _event(number, method, url, content, started, response, error), error
        error = classify(response, not_found=not_found)
        return response, _event(number, method, url, content, started, response, error), error

    def _url(
        self, path: str, params: Mapping[str, Any] | list[tuple[str, Any]] | None, method: str
    ) -> httpx.URL:
        """`path` relative to /api/v1/ (or an absolute URL, kept as it is), with `params` added
        to its query, as httpx's base_url merging makes it. Raises UNSAFE for a URL outside the
        configured Canvas; only URLs that passed that check are kept (params never change the
        origin)."""
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(path)
            relative = url.is_relative_url
            if relative:
                url = httpx.URL(self._api + path.lstrip("/"))
            if origin(url) != self._origin:
                raise CanvasError(
                    Category.UNSAFE,
                    f"refused a request to {_origin_text(url)}: not the configured Canvas "
                    f"({_origin_text(self.base_url)})",
                    method=method,
                    url=_origin_text(url),
                )
            # An API path repeats (a POST's, per course); an absolute URL is a page link, each
            # used once: kept, thousands of them would stay scattered in memory (issue 14).
            if relative:
                if len(self._urls) >= 4096:
                    self._urls.clear()
                self._urls[path] = url
        return url.copy_merge_params(params) if params else url

    async def _exchange(self, request: httpx.Request) -> httpx.Response:
        """One request through the transport, its answer read whole (the connection is free
        again either way)."""
        response = await self._transport.handle_async_request(request)
        response.request = request
        try:
            if isinstance(response.stream, httpx.ByteStream):
                response.read()  # a body read whole already (ours): no async iteration
            else:
                await response.aread()
        except BaseException:
            await response.aclose()
            raise
        if http_log.isEnabledFor(logging.INFO):
            http_log.info(
                'HTTP Request: %s %s "%s %d %s"',
                request.method,
                request.url,
                response.http_version,
                response.status_code,
                response.reason_phrase,
            )
        return response

    async def _json(
        self, method: str, path: str, *, validate: Check = object_problem, **kwargs: Any
    ) -> Any:
        return _decoded(await self.request(method, path, validate=validate, **kwargs))

    # ---- pagination -----------------------------------------------------------------------------

    async def paginate(
        self,
        path: str,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        *,
        not_found: Category = Category.NOT_FOUND,
        observer: Observer | None = None,
        item: Check = object_problem,
    ) -> AsyncIterator[list[JsonObject]]:
        """Yield each page of a list endpoint, following only rel="next", same origin only.
        Every item on a page must pass `item` (shapes.py)."""
        validate = list_of(item)
        items = list(params.items()) if isinstance(params, Mapping) else list(params or [])
        if not any(key == "per_page" for key, _ in items):
            items.append(("per_page", PER_PAGE))
        target: str = path
        query: list[tuple[str, Any]] | None = items
        seen: set[str] = set()
        while True:
            response = await self.request(
                "GET",
                target,
                params=query,
                not_found=not_found,
                observer=observer,
                validate=validate,
            )
            link = next_link(response.headers)
            page = _decoded(response)
            # Neither the answer (its body) nor the page stays referenced here while the
            # consumer works and the next page is awaited: a plan reads ~100 rosters at once,
            # and each would otherwise hold a page and its body the whole time (issue 14).
            del response
            yield page
            del page
            if link is None:
                return
            next_url = httpx.URL(link)
            if origin(next_url) != self._origin:
                log.warning(
                    "refused to follow a pagination link to %s (not the configured Canvas)",
                    _origin_text(next_url),
                )
                raise CanvasError(
                    Category.UNSAFE,
                    f"Canvas's next-page link points to {_origin_text(next_url)}, not "
                    f"{_origin_text(self.base_url)}; not followed (the token would go there)",
                    method="GET",
                    url=_origin_text(next_url),
                )
            if link in seen:  # a server that repeats a page must not loop us forever
                raise CanvasError(Category.SERVER, "Canvas repeated a pagination link", url=link)
            seen.add(link)
            target, query = link, None

    async def list_all(
        self,
        path: str,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        *,
        not_found: Category = Category.NOT_FOUND,
        on_page: Callable[[int, int], None] | None = None,
        observer: Observer | None = None,
        item: Check = object_problem,
        keep: Callable[[JsonObject], JsonObject] | None = None,
        each_page: Callable[[list[JsonObject]], None] | None = None,
    ) -> list[JsonObject]:
        """Every page's objects; `keep` makes what is kept of each, page by page (the rest of
        a page is freed before the next one is read). `each_page` takes each page's kept
        objects as it arrives, and then none is kept here (the list returned is empty)."""
        results: list[JsonObject] = []
        pages = 0
        count = 0
        async for page in self.paginate(
            path, params, not_found=not_found, observer=observer, item=item
        ):
            pages += 1
            objects = page if keep is None else list(map(keep, page))
            count += len(objects)
            if each_page is not None:
                each_page(objects)
            else:
                results.extend(objects)
            if on_page is not None:
                on_page(pages, count)
            del page, objects  # not held while the next page is awaited (see `paginate`)
        return results

    # ---- enrollments ----------------------------------------------------------------------------

    async def create_enrollment(
        self,
        *,
        user: str,
        course: str | None,
        section: str | None,
        enrollment_type: str | None,
        role_id: str | None = None,
        role: str | None = None,
        state: str = "active",
        notify: bool = False,
        limit_section_privileges: bool = False,
        start_at: str | None = None,
        end_at: str | None = None,
        associated_user: str | None = None,
        observer: Observer | None = None,
    ) -> JsonObject:
        """Create (or, idempotently, re-find) an enrollment; returns Canvas's Enrollment JSON.

        Re-sending is safe: Canvas matches user + type + role + section + associated user and
        returns the same row (CANVAS_API.md §2.4), so a retry after a reset creates no duplicate.
        """
        # With both ids, the course route + course_section_id makes Canvas look the section up
        # among that course's sections, so a section of another course is a 404 instead of an
        # enrollment silently made in the wrong course (the section route ignores the course).
        if course:
            context_path = f"courses/{path_segment(course)}"
        elif section:
            context_path = f"sections/{path_segment(section)}"
        else:
            raise ValueError("create_enrollment needs a course or a section")
        fields: JsonObject = {
            "user_id": user,
            "enrollment_state": state,
            "notify": notify,
            "limit_privileges_to_course_section": limit_section_privileges,
        }
        optional = {
            "type": enrollment_type,
            "role_id": role_id,
            "role": role,
            "start_at": start_at,
            "end_at": end_at,
            "associated_user_id": associated_user,
            "course_section_id": section if course else None,
        }
        fields.update({k: v for k, v in optional.items() if v is not None})
        try:
            return dict(
                await self._json(
                    "POST",
                    f"{context_path}/enrollments",
                    body={"enrollment": fields},
                    observer=observer,
                    validate=enrollment_problem,
                )
            )
        except CanvasError as error:
            if error.status == 404 and error.category is Category.NOT_FOUND:
                error.category = await self._which_missing(course, section, observer)
            raise

    async def _which_missing(
        self, course: str | None, section: str | None, observer: Observer | None = None
    ) -> Category:
        """Canvas's 404 body never names the missing id: look the course, then the section up.

        Canvas resolves the context first, then the section, then the user, so the first of them
        that does not exist is the culprit; when both do, it was the user.
        """
        checks: list[tuple[str, Category]] = []
        if course:
            checks.append((f"courses/{path_segment(course)}", Category.COURSE_NOT_FOUND))
            if section:
                checks.append(
                    (
                        f"courses/{path_segment(course)}/sections/{path_segment(section)}",
                        Category.SECTION_NOT_FOUND,
                    )
                )
        elif section:
            checks.append((f"sections/{path_segment(section)}", Category.SECTION_NOT_FOUND))
        for path, missing in checks:
            if path not in self._exists:
                try:
                    # The caller sees this request too: it explains the category it gets.
                    await self.request("GET", path, not_found=missing, observer=observer)
                    self._exists[path] = True
                except CanvasError as error:
                    if error.status != 404:
                        return Category.NOT_FOUND  # cannot tell; say so rather than guess
                    self._exists[path] = False
            if not self._exists[path]:
                return missing
        return Category.USER_NOT_FOUND

    async def list_enrollments(
        self,
        *,
        course: str | None = None,
        section: str | None = None,
        user: str | None = None,
        types: Iterable[str] = (),
        roles: Iterable[str] = (),
        states: Iterable[str] = (),
        user_filter: str | None = None,
        on_page: Callable[[int, int], None] | None = None,
        observer: Observer | None = None,
        keep: Callable[[JsonObject], JsonObject] | None = None,
        each_page: Callable[[list[JsonObject]], None] | None = None,
    ) -> list[JsonObject]:
        """Every enrollment of a section, a course, or a user (in that order of preference).
        `keep`, `each_page`: what is kept of each enrollment, and where each page goes
        (see `list_all`)."""
        if section:
            path, missing = (
                f"sections/{path_segment(section)}/enrollments",
                Category.SECTION_NOT_FOUND,
            )
        elif course:
            path, missing = f"courses/{path_segment(course)}/enrollments", Category.COURSE_NOT_FOUND
        elif user:
            path, missing = f"users/{path_segment(user)}/enrollments", Category.USER_NOT_FOUND
        else:
            raise ValueError("list_enrollments needs a course, a section or a user")
        params: list[tuple[str, Any]] = [("type[]", t) for t in types]
        params += [("role[]", r) for r in roles]
        params += [("state[]", s) for s in states]
        if user_filter:
            params.append(("user_id", user_filter))
            if not user:
                missing = Category.NOT_FOUND  # the context's or the user's: the 404 names no id
        try:
            return await self.list_all(
                path,
                params,
                not_found=missing,
                on_page=on_page,
                observer=observer,
                item=enrollment_problem,
                keep=keep,
                each_page=each_page,
            )
        except CanvasError as error:
            if error.status == 404 and error.category is Category.NOT_FOUND:
                # the filtered user is the one missing when the context exists (as for a POST)
                error.category = await self._which_missing(
                    None if section else course, section, observer
                )
            raise

    async def get_enrollment(
        self, enrollment_id: int | str, *, account: str = "self", observer: Observer | None = None
    ) -> JsonObject:
        """One enrollment by id, deleted ones included (the account-level show endpoint)."""
        return dict(
            await self._json(
                "GET",
                f"accounts/{path_segment(account)}/enrollments/{path_segment(str(enrollment_id))}",
                observer=observer,
                validate=enrollment_problem,
            )
        )

    async def delete_enrollment(
        self,
        course: str,
        enrollment_id: int | str,
        task: str = "conclude",
        *,
        observer: Observer | None = None,
    ) -> JsonObject:
        """DELETE with task conclude / delete / inactivate / deactivate.

        conclude and inactivate repeat harmlessly, but a repeated `delete` answers 404 (Canvas
        hides deleted rows from this lookup). So when an earlier attempt may have been applied
        (reset after sending, gateway error) and the call then fails, the enrollment is re-read:
        if it is already in the requested state, that is success.
        """
        wanted = {"delete": "deleted", "inactivate": "inactive", "deactivate": "inactive"}.get(
            task, "completed"
        )

        async def recover(_error: CanvasError) -> JsonObject | None:
            return await self._reread(course, enrollment_id, wanted)

        return dict(
            await self._json(
                "DELETE",
                f"courses/{path_segment(course)}/enrollments/{path_segment(str(enrollment_id))}",
                params={"task": task},
                observer=observer,
                recover=recover,
                validate=enrollment_problem,
            )
        )

    async def reactivate_enrollment(
        self, course: str, enrollment_id: int | str, *, observer: Observer | None = None
    ) -> JsonObject:
        """PUT …/reactivate. A retry after an applied-but-unanswered attempt gets 400 "enrollment
        not inactive"; re-reading tells that apart from a real refusal."""

        async def recover(_error: CanvasError) -> JsonObject | None:
            return await self._reread(course, enrollment_id, "active")

        return dict(
            await self._json(
                "PUT",
                f"courses/{path_segment(course)}/enrollments/{path_segment(str(enrollment_id))}/reactivate",
                observer=observer,
                recover=recover,
                validate=enrollment_problem,
            )
        )

    async def _reread(
        self, course: str, enrollment_id: int | str, wanted: str
    ) -> JsonObject | None:
        """The enrollment if it is now in state `wanted`, else None.

        The account-level show endpoint sees deleted rows too; where it is unavailable, the
        course's enrollments in that state are listed instead (rare: only after a lost answer).
        """
        try:
            current = await self.get_enrollment(enrollment_id)
        except CanvasError as error:
            if error.fatal:
                raise
            if error.status not in (404, 401):
                return None
            listed = await self.list_enrollments(course=course, states=[wanted])
            current = next((e for e in listed if str(e.get("id")) == str(enrollment_id)), {})
        return current if current.get("enrollment_state") == wanted else None

    # ---- SIS imports (CANVAS_API.md §6) ----------------------------------------------------------

    async def create_sis_import(
        self,
        body: bytes,
        *,
        filename: str,
        account: str = "self",
        options: Mapping[str, str] | None = None,
    ) -> JsonObject:
        """POST accounts/:account/sis_imports with `body` as the multipart `attachment` (the
        file name is how a resumed run finds an upload whose answer it never saw). Never
        retried once it may have reached Canvas: a second POST is a second import, so an
        ambiguous failure is left to the caller, which looks the upload up by name."""
        fields = {"import_type": "instructure_csv", **(options or {})}
        multipart = httpx.Request(
            "POST",
            "http://localhost/",
            data=fields,
            files={"attachment": (filename, body, "text/csv")},
        )
        content = multipart.read()
        content_type = multipart.headers["Content-Type"]
        return dict(
            await self._json(
                "POST",
                f"accounts/{path_segment(account)}/sis_imports",
                upload=(content, content_type),
                once=True,
            )
        )

    async def get_sis_import(self, sis_import_id: int, *, account: str = "self") -> JsonObject:
        return dict(
            await self._json(
                "GET", f"accounts/{path_segment(account)}/sis_imports/{int(sis_import_id)}"
            )
        )

    async def abort_sis_import(self, sis_import_id: int, *, account: str = "self") -> JsonObject:
        return dict(
            await self._json(
                "PUT", f"accounts/{path_segment(account)}/sis_imports/{int(sis_import_id)}/abort"
            )
        )

    async def list_sis_imports(
        self, *, account: str = "self", created_since: str | None = None, pages: int = 5
    ) -> list[JsonObject]:
        """The account's imports, newest first (`{"sis_imports": [...]}` pages, no `last`)."""
        params: list[tuple[str, Any]] = [("per_page", PER_PAGE)]
        if created_since is not None:
            params.append(("created_since", created_since))
        target: str = f"accounts/{path_segment(account)}/sis_imports"
        query: list[tuple[str, Any]] | None = params
        found: list[JsonObject] = []
        for _ in range(pages):
            response = await self.request("GET", target, params=query, validate=_wrapped_imports)
            found.extend(_decoded(response)["sis_imports"])
            link = next_link(response.headers)
            if link is None or origin(httpx.URL(link)) != self._origin:
                break
            target, query = link, None
        return found

    async def download(self, url: str) -> bytes:
        """A file Canvas links to (an import's errors_attachment), on the configured origin
        only: the token goes nowhere else."""
        response = await self.request("GET", url, raw_answer=True)
        return response.content

    # ---- other objects --------------------------------------------------------------------------

    async def _get_object(
        self, path: str, not_found: Category, observer: Observer | None
    ) -> JsonObject:
        return dict(await self._json("GET", path, not_found=not_found, observer=observer))

    async def get_course(self, course: str, *, observer: Observer | None = None) -> JsonObject:
        path = f"courses/{path_segment(course)}"
        return await self._get_object(path, Category.COURSE_NOT_FOUND, observer)

    async def get_section(self, section: str, *, observer: Observer | None = None) -> JsonObject:
        path = f"sections/{path_segment(section)}"
        return await self._get_object(path, Category.SECTION_NOT_FOUND, observer)

    async def get_user(self, user: str, *, observer: Observer | None = None) -> JsonObject:
        path = f"users/{path_segment(user)}"
        return await self._get_object(path, Category.USER_NOT_FOUND, observer)

    async def whoami(self, *, observer: Observer | None = None) -> JsonObject:
        """The token's own user; a cheap way to validate the token before a run."""
        return dict(await self._json("GET", "users/self", observer=observer))

    async def list_course_sections(
        self, course: str, *, observer: Observer | None = None
    ) -> list[JsonObject]:
        return await self.list_all(
            f"courses/{path_segment(course)}/sections",
            not_found=Category.COURSE_NOT_FOUND,
            observer=observer,
        )

    async def list_roles(
        self, account: str = "self", *, observer: Observer | None = None
    ) -> list[JsonObject]:
        return await self.list_all(f"accounts/{path_segment(account)}/roles", observer=observer)


# ---- helpers ------------------------------------------------------------------------------------


def _event(
    number: int,
    method: str,
    url: httpx.URL,
    content: str | None,
    started: float,
    response: httpx.Response | None = None,
    error: CanvasError | None = None,
) -> AttemptEvent:
    headers = response.headers if response is not None else httpx.Headers()
    return AttemptEvent(
        number=number,
        method=method,
        url=str(url),
        request_body=content,
        status=response.status_code if response is not None else None,
        category=str(error.category) if error else None,
        message=error.message if error else None,
        error_report_id=error.error_report_id if error else None,
        cost=_float_header(headers, "x-request-cost"),
        remaining=_float_header(headers, "x-rate-limit-remaining"),
        started_at=started,
        finished_at=time.time(),
        will_retry=False,
        wait=None,
    )


class _NotRepeated(Exception):
    """An attempt of a `once` request that may have been applied: not retried."""

    def __init__(self, error: CanvasError, number: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.number = number


def _wrapped_imports(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("sis_imports"), list):
        return 'expected {"sis_imports": [...]}'
    return None


def _decoded(response: httpx.Response) -> Any:
    """The answer's JSON: the value `_send_once` decoded to validate it, not decoded again."""
    if _DECODED in response.extensions:
        return response.extensions[_DECODED]
    return response.json()


def _excerpt(body: bytes, limit: int = 300) -> str:
    """The start of an answer's body, kept in the failure so the stepper can show it."""
    text = body[: limit * 4].decode("utf-8", "replace")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _with_retry(event: AttemptEvent, will_retry: bool, wait: float | None) -> AttemptEvent:
    return replace(event, will_retry=will_retry, wait=wait if will_retry else None)
